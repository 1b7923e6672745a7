"""Inference real-time factor of our synthesis path (wall seconds per second of audio; below 1 is faster than real time).

    python bench/infer_speed.py [--configs v1,v2,v3] [--seconds 5,60] [--repeats 3] [--threads N] [--precision bf16]

Randomly initialised generators (speed does not depend on the weights), a noise-like waveform of
each length; timed from waveform to waveform: input mel, then ``trainer.inference.vocode``, the function
``vocodertui synth`` runs. Median of ``--repeats`` runs after one warm-up; one JSON line per figure,
with the generator's FLOPs (``torch.utils.flop_counter``: its convolutions) and the rate they ran at,
to hold against ``bench/flops.py``'s peak rates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import median

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.config import load_config  # noqa: E402
from trainer.mel import input_mel  # noqa: E402
from trainer.models import Generator  # noqa: E402
from trainer.inference import build_generator, vocode  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="v1,v2,v3")
    parser.add_argument("--seconds", default="5,60")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.configs.split(","):
        cfg = load_config(f"hifigan_{name}")
        torch.manual_seed(0)
        generator = build_generator(Generator(cfg.generator, cfg.audio.num_mels).state_dict(), cfg, Path(name))
        mel_fn = input_mel(cfg.audio)
        for seconds in (float(s) for s in args.seconds.split(",")):
            g = torch.Generator().manual_seed(1)
            wav = (torch.rand(1, int(seconds * cfg.audio.sampling_rate), generator=g) * 2 - 1) * 0.5
            with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                vocode(generator, mel_fn(wav), args.precision)
            times = []
            for _ in range(1 + args.repeats):
                started = time.perf_counter()
                with torch.inference_mode():
                    vocode(generator, mel_fn(wav), args.precision)
                times.append(time.perf_counter() - started)
            wall = median(times[1:])
            print(json.dumps({
                "config": name, "audio_s": seconds, "precision": args.precision, "threads": torch.get_num_threads(), "wall_s": round(wall, 3),
                "rtf": round(wall / seconds, 4), "x_real_time": round(seconds / wall, 2),
                "gflop": round(counter.get_total_flops() / 1e9, 1),
                "gflops_achieved": round(counter.get_total_flops() / wall / 1e9, 1),
            }), flush=True)


if __name__ == "__main__":
    main()
