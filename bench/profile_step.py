"""Where a training step's time goes: torch.profiler over one step, ours and (optionally) the reference's.

    python bench/profile_step.py --config v2 --batch 16 [--segment 8192] [--reference PATH] [--top 12]

One warm-up step, then one profiled step on a random batch; prints, per side, the seconds spent in
convolution forward, convolution backward (input and weight gradients), weight norm, the other
element-wise and reduction ops, and (inclusive) the two optimiser steps, then the heaviest convolution shapes.
With ``--reference`` (a jik876/hifi-gan checkout, see compare_reference.py) its train.py step is
profiled first, in the same process, before ours changes process-wide settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.config import load_config  # noqa: E402
from trainer.gan import Gan  # noqa: E402
from trainer.launch import setup_process  # noqa: E402
from trainer.mel import input_mel  # noqa: E402

CONV_FORWARD = {"aten::mkldnn_convolution", "aten::_convolution", "aten::convolution"}
CONV_BACKWARD = {"aten::convolution_backward"}


def category(op: str) -> str:
    if op in CONV_FORWARD:
        return "conv forward"
    if op in CONV_BACKWARD:
        return "conv backward"
    if "weight_norm" in op:
        return "weight norm"
    return "element-wise, reductions, copies, optimiser, other"


def profile_step(step, top: int) -> dict:
    step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    by_category: dict[str, float] = defaultdict(float)
    for e in events:
        by_category[category(e.key)] += e.self_cpu_time_total / 1e6
    convs = [e for e in prof.key_averages(group_by_input_shape=True) if e.key in CONV_FORWARD | CONV_BACKWARD]
    convs.sort(key=lambda e: -e.self_cpu_time_total)
    optimiser = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step")) / 1e6
    return {
        "profiled_s": round(total, 2),
        "optimiser_steps_s": round(optimiser, 2),
        "by_category_s": {k: round(v, 2) for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
        "heaviest_convs": [
            {"op": e.key, "calls": e.count, "s": round(e.self_cpu_time_total / 1e6, 2),
             "input, weight": [e.input_shapes[0], e.input_shapes[2] if e.key in CONV_BACKWARD else e.input_shapes[1]]}
            for e in convs[:top] if e.self_cpu_time_total > 0
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="v2", choices=["v1", "v2", "v3"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--segment", type=int, default=8192)
    parser.add_argument("--reference", type=Path, default=None, help="a jik876/hifi-gan checkout")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()

    audio = (torch.rand(args.batch, args.segment, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    if args.reference is not None:
        from compare_reference import Reference, import_reference

        R, M, env = import_reference(args.reference.resolve())
        h = env.AttrDict(json.loads((args.reference / f"config_{args.config}.json").read_text()))
        ref = Reference(R, M, h)
        batch = ref.batch(audio)
        print(json.dumps({"side": "reference", "config": args.config, "batch": args.batch, "segment": args.segment,
                          **profile_step(lambda: ref.train_step(*batch), args.top)}), flush=True)
        del ref, batch

    cfg = load_config(f"hifigan_{args.config}")
    cfg.training.batch_size = args.batch
    cfg.training.segment_size = args.segment
    gan = Gan(cfg, setup_process(cfg))
    mel = input_mel(cfg.audio)(audio)
    print(json.dumps({"side": "ours", "config": args.config, "batch": args.batch, "segment": args.segment,
                      **profile_step(lambda: gan.step(mel, audio, measure_grads=False), args.top)}), flush=True)

if __name__ == "__main__":
    main()
