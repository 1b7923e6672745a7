"""Trainer bookkeeping overhead: the share of wall time spent in logging, validation and checkpoints.

    python bench/bookkeeping.py [--config demo] [--data @demo] [--steps 500]
        [--log-every N] [--validate-every N] [--checkpoint-every N] [--quality-every N] [--val-count N]

Runs the real ``Trainer.fit`` (default: the demo config and its schedule: metrics every 10 steps,
validation every 250, a checkpoint every 500) and times each kind of work it does. "data and loop"
is the rest: waiting for batches, the per-step request check, the loop itself. Quality scoring is
timed inside validation and reported apart from it. Prints one JSON line.

A schedule too slow to run here (the 48 kHz config's 53 s steps, validation every 1,000 steps)
is measured on a shorter one (``--validate-every 1``) and ``projected`` onto the config's own:
the mean cost of each kind of work, times how often the config's schedule does it over one
checkpoint interval (validation scaled to the config's ``val_count`` files), over that interval's
wall time. The first scoring also computes the references' pitch tracks, later ones reuse them:
the projection takes the last scoring's cost (scaled to ``quality_files`` if fewer files were
scored) and reports the first one's extra, paid once per trainer process, apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import cpu_name  # noqa: E402
from trainer.config import ScheduleConfig, load_config  # noqa: E402
from trainer.data import VocoderData  # noqa: E402
from trainer.demo_corpus import ensure_demo_corpus  # noqa: E402
from trainer.gan import Gan  # noqa: E402
from trainer.launch import setup_process  # noqa: E402
from trainer.loop import Trainer  # noqa: E402
from trainer.rundir import RunPaths  # noqa: E402

# what is timed: (the object's path from the trainer, its method) -> label
TIMED = {("gan", "step"): "training steps", ("", "write_metrics"): "metrics logging",
         ("artifacts", "validate"): "validation", ("artifacts", "_score"): "quality scoring",
         ("", "save_checkpoint"): "checkpoints"}


def time_calls(trainer: Trainer, seconds: dict[str, float], calls: dict[str, int], last: dict[str, float]) -> None:
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
                last[_label] = time.perf_counter() - started
                seconds[_label] += last[_label]
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
    parser.add_argument("--quality-every", type=int, default=None)
    parser.add_argument("--val-count", type=int, default=None, help="validation files (default: the config's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    cfg = load_config(args.config)
    own = dataclasses.replace(cfg.schedule)
    own_val_count = cfg.data.val_count
    cfg.data.val_count = args.val_count or cfg.data.val_count
    s = cfg.schedule
    s.log_every = args.log_every or s.log_every
    s.validate_every = args.validate_every or s.validate_every
    s.checkpoint_every = args.checkpoint_every or s.checkpoint_every
    s.quality_every = s.quality_every if args.quality_every is None else args.quality_every
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
    last: dict[str, float] = {}
    time_calls(trainer, seconds, calls, last)

    started = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - started
    trainer.close()
    seconds["validation"] -= seconds["quality scoring"]  # scoring runs inside validate
    seconds["data and loop"] = wall - sum(seconds.values())
    bookkeeping = [label for key, label in TIMED.items() if key != ("gan", "step")]
    print(json.dumps({
        "cpu": cpu_name(), "config": cfg.name, "steps": args.steps, "log_every": s.log_every,
        "validate_every": s.validate_every, "checkpoint_every": s.checkpoint_every, "val_files": len(data.val),
        "val_samples": s.val_samples, "quality_files": s.quality_files, "pitch_model": s.pitch_model,
        "wall_s": round(wall, 2), "calls": dict(calls), "last_s": {k: round(v, 3) for k, v in last.items()},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "share": {k: round(v / wall, 4) for k, v in seconds.items()},
        "bookkeeping_share": round(sum(seconds[label] for label in bookkeeping) / wall, 4),
        "projected": project(own, own_val_count, len(data.val), seconds, calls, last),
    }))


def project(own: ScheduleConfig, val_count: int, val_files: int, seconds: dict[str, float],
            calls: dict[str, int], last: dict[str, float]) -> dict:
    """Seconds of each kind of work over one of the config's checkpoint intervals, and the shares."""
    mean = {label: seconds[label] / calls[label] for label in seconds if calls.get(label)}
    interval = own.checkpoint_every
    validations = interval // own.validate_every
    scorings = 0 if own.quality_every == 0 else (validations if own.quality_every is None else interval // own.quality_every)
    work = {
        "training steps": mean["training steps"] * interval,
        "data and loop": seconds["data and loop"] / calls["training steps"] * interval,
        "metrics logging": mean.get("metrics logging", 0.0) * (interval // own.log_every),
        "validation": mean.get("validation", 0.0) * val_count / val_files * validations,
        "quality scoring": last.get("quality scoring", 0.0) * own.quality_files / min(own.quality_files, val_files) * scorings,
        "checkpoints": mean.get("checkpoints", 0.0),
    }
    wall = sum(work.values())
    first_scoring = seconds.get("quality scoring", 0.0) - last.get("quality scoring", 0.0) * (calls.get("quality scoring", 1) - 1)
    return {"interval_steps": interval, "validations": validations, "scorings": scorings, "val_files": val_count,
            "reference_pitch_once_s": round(max(first_scoring - last.get("quality scoring", 0.0), 0.0), 1),
            "seconds": {k: round(v, 1) for k, v in work.items()},
            "share": {k: round(v / wall, 4) for k, v in work.items()},
            "bookkeeping_share": round(sum(v for k, v in work.items() if k not in ("training steps", "data and loop")) / wall, 4)}

if __name__ == "__main__":
    main()
