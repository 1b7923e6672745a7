"""Every recipe on a CUDA GPU: a few training steps in fp32, bf16 and fp16 (finite losses or not),
the step time, and the peak memory against the estimate ``vocodertui check`` gives.

    python bench/gpu_recipes.py [--steps 4] [--out results.jsonl]

Runs ``Gan.step`` (the trainer's step) on random batches, so it needs the engine and torch, not the
data path. Prints one JSON line per recipe and precision.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trainer.config import load_config  # noqa: E402
from trainer.gan import Gan  # noqa: E402
from trainer.mel import input_mel  # noqa: E402
from trainer.plan import _training_memory  # noqa: E402

# (config, batch in one process, segment): the demo recipes as shipped, and the full-size ones at a
# batch one GPU of the original papers' setups held
RECIPES = [
    ("demo", None, None), ("demo_bigvgan", None, None), ("demo_bigvgan_44k", None, None),
    ("demo_hifigan_48k_mrstft", None, None),
    ("hifigan_v1", 16, 8192), ("hifigan_48k_mrstft", 16, 16384),
    ("bigvgan_22k_80band", 8, 8192), ("bigvgan_44k_128band", 4, 65536),
]


def run(name: str, batch, segment, precision: str, steps: int) -> dict:
    cfg = load_config(name)
    t = cfg.training
    t.batch_size, t.segment_size, t.precision = batch or t.batch_size, segment or t.segment_size, precision
    state, activations = _training_memory(cfg)
    torch.manual_seed(0)
    device = torch.device("cuda")
    gan = Gan(cfg, device)
    audio = ((torch.rand(t.batch_size, t.segment_size, device=device) * 2 - 1) * 0.5)
    mel = input_mel(cfg.audio).to(device)(audio)
    torch.cuda.reset_peak_memory_stats()
    times, losses = [], None
    for i in range(steps + 2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = gan.step(mel, audio, measure_grads=True, step=1000)
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
        losses = out.losses.tolist()
    times.sort()
    return {"config": name, "precision": precision, "batch": t.batch_size, "segment": t.segment_size,
            "step_s": round(times[len(times) // 2], 4), "finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
            "loss_g": round(losses[0], 3), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "estimate_gib": round((state + activations) / 2**30, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32
    for name, batch, segment in RECIPES:
        for precision in ("fp32", "bf16", "fp16"):
            try:
                result = run(name, batch, segment, precision, args.steps)
            except Exception as exc:  # noqa: BLE001 - a failing recipe is a result to report, not a stop
                result = {"config": name, "precision": precision, "error": f"{type(exc).__name__}: {exc}"[:300]}
            torch.cuda.empty_cache()
            print(json.dumps(result), flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
