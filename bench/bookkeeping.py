"""Trainer bookkeeping overhead: the share of wall time spent in logging, validation and checkpoints.

    python bench/bookkeeping.py [--config demo] [--data @demo] [--steps 500]
        [--log-every N] [--validate-every N] [--checkpoint-every N]

Runs the real ``Trainer.fit`` (default: the demo config and its schedule: metrics every 10 steps,
validation every 250, a checkpoint every 500) and times each kind of work it does. "data and loop"
is the rest: waiting for batches, the per-step request check, the loop itself. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.config import load_config  # noqa: E402
from trainer.data import VocoderData  # noqa: E402
from trainer.demo_corpus import ensure_demo_corpus  # noqa: E402
from trainer.gan import Gan  # noqa: E402
from trainer.launch import setup_process  # noqa: E402
from trainer.loop import Trainer  # noqa: E402
from trainer.rundir import RunPaths  # noqa: E402

# what is timed: (the object's path from the trainer, its method) -> label
TIMED = {("gan", "step"): "training steps", ("", "write_metrics"): "metrics logging",
         ("artifacts", "validate"): "validation", ("", "save_checkpoint"): "checkpoints"}


def time_calls(trainer: Trainer, seconds: dict[str, float], calls: dict[str, int]) -> None:
    """Wrap each timed method on the instance that owns it (the trainer, its gan, its artifacts),
    so the loop's own calls (``self.gan.step``, ``self.artifacts.validate``, ...) go through the wrapper."""
    for (owner_name, method), label in TIMED.items():
        owner = getattr(trainer, owner_name) if owner_name else trainer
        original = getattr(owner, method)

        def wrapper(*args, _original=original, _label=label, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_label] += time.perf_counter() - started
                calls[_label] += 1

        setattr(owner, method, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--data", default="@demo", help="a dataset folder, or @demo")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=None)
    parser.add_argument("--validate-every", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    cfg = load_config(args.config)
    s = cfg.schedule
    s.log_every = args.log_every or s.log_every
    s.validate_every = args.validate_every or s.validate_every
    s.checkpoint_every = args.checkpoint_every or s.checkpoint_every
    s.milestones = []
    scratch = Path(tempfile.mkdtemp())
    data_dir = ensure_demo_corpus(scratch / "corpus") if args.data == "@demo" else Path(args.data)
    data = VocoderData(cfg, data_dir, scratch / "cache")
    run = RunPaths(scratch / "run")
    run.root.mkdir()
    cfg.training.target_step = args.steps
    trainer = Trainer(cfg, run, data, Gan(cfg, setup_process(cfg)))
    seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    time_calls(trainer, seconds, calls)

    started = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - started
    trainer.close()
    seconds["data and loop"] = wall - sum(seconds.values())
    print(json.dumps({
        "config": cfg.name, "steps": args.steps, "log_every": s.log_every, "validate_every": s.validate_every,
        "checkpoint_every": s.checkpoint_every, "val_files": len(data.val), "val_samples": s.val_samples,
        "wall_s": round(wall, 2), "calls": dict(calls),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "share": {k: round(v / wall, 4) for k, v in seconds.items()},
        "bookkeeping_share": round(sum(seconds[label] for key, label in TIMED.items() if key != ("gan", "step")) / wall, 4),
    }))


if __name__ == "__main__":
    main()
