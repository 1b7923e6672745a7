"""Training-step speed of our engine: seconds per D+G step and audio seconds per wall second.

    python bench/step_speed.py --config hifigan_v2 --batch 16 [--device cuda] [--precision bf16] [--tf32]

Synthetic batches (random audio and its mel), the real Gan.step; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.config import load_config  # noqa: E402
from trainer.gan import Gan  # noqa: E402
from trainer.launch import setup_process  # noqa: E402
from trainer.mel import input_mel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hifigan_v2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--segment", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls and convolutions on CUDA")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    cfg = load_config(args.config)
    cfg.training.batch_size = args.batch
    cfg.training.segment_size = args.segment or cfg.training.segment_size
    cfg.training.device = args.device
    cfg.training.precision = args.precision
    cfg.training.threads = args.threads
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True

    gan = Gan(cfg, setup_process(cfg))
    g = torch.Generator().manual_seed(0)
    audio = (torch.rand(args.batch, cfg.training.segment_size, generator=g) * 2 - 1) * 0.5
    mel = input_mel(cfg.audio)(audio)
    sync = torch.cuda.synchronize if gan.device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        gan.step(mel, audio, measure_grads=False)
    sync()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        out = gan.step(mel, audio, measure_grads=False)
        sync()
        times.append(time.perf_counter() - started)
    times.sort()
    median = times[len(times) // 2]
    audio_seconds = args.batch * cfg.training.segment_size / cfg.audio.sampling_rate
    device_name = torch.cuda.get_device_name() if gan.device.type == "cuda" else platform.processor() or "cpu"
    print(json.dumps({
        "config": cfg.name, "batch": args.batch, "segment": cfg.training.segment_size, "device": device_name,
        "precision": args.precision, "tf32": args.tf32, "threads": torch.get_num_threads(),
        "s_per_step": round(median, 4), "steps_per_s": round(1 / median, 3),
        "audio_s_per_s": round(audio_seconds / median, 2), "loss_g": round(out.losses[0].item(), 3),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
