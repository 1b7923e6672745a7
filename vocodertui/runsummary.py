"""A row per run for comparing runs: state, best scores, recipe, time, and the config keys that differ.

Read from the run directory alone (events, the tail of the metrics, the PID file, ``config.yaml``);
used by the dashboard's Runs tab. No torch, no textual.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from trainer import pidfile
from trainer.config import Config, load_config
from trainer.errors import UserError
from trainer.records import SEGMENTS, Event, Metrics, Start, Validation, supersede
from trainer.rundir import RunPaths, read_records, tail_records
from vocodertui.runstate import CheckpointInfo, RunStatus, checkpoint_table, derive_status, list_runs


@dataclass(frozen=True)
class RunSummary:
    status: RunStatus
    best_val: Optional[float]  # the lowest validation mel-L1 of the current timeline
    best: Optional[CheckpointInfo]  # the best checkpoint on disk (by the run's schedule.best_by), with its quality
    started: Optional[float]  # the first start event
    wall_s: Optional[float]  # wall time trained, summed over the start and each resume
    config: Optional[Config]
    config_problem: str  # why there is no config, else ""

    @property
    def name(self) -> str:
        return self.status.name

    @property
    def recipe(self) -> str:
        return recipe(self.config) if self.config else "no readable config"


def summarize(run: RunPaths, now: Optional[float] = None) -> RunSummary:
    now = time.time() if now is None else now
    events = read_records(run.events, Event)
    metrics = tail_records(run.metrics, Metrics)
    status = derive_status(run, events.records, metrics.records, pidfile.check(run), now,
                           skipped=events.skipped + metrics.skipped)
    vals = [e.val_mel for e in supersede(events.records) if isinstance(e, Validation) and e.val_mel is not None]
    best = next((c for c in checkpoint_table(run, events.records) if c.best), None)
    started = next((e.time for e in events.records if isinstance(e, Start)), None)
    last_metric = metrics.records[-1].time if metrics.records else None
    try:
        config, problem = load_config(run.config), ""
    except UserError as exc:
        config, problem = None, str(exc)
    return RunSummary(status, min(vals, default=None), best, started,
                      wall_time(events.records, last_metric, now, status.pid is not None), config, problem)


def wall_time(events: list[Event], last_metric: Optional[float], now: float, alive: bool) -> Optional[float]:
    """Seconds trained: from each start or resume to the last event before the next one; the last
    segment to now while its trainer lives, else to its last event or metrics line."""
    total, begun, last = 0.0, None, None
    for e in events:
        if isinstance(e, SEGMENTS):
            if begun is not None:
                total += last - begun
            begun = e.time
        last = e.time
    if begun is None:
        return None
    end = now if alive else max(last, last_metric or last)
    return total + end - begun


def recipe(config: Config) -> str:
    """Generator, discriminators and losses in a few words: 'bigvgan · mpd+mrd · lsgan, mel multi_scale, stft'."""
    losses = [config.loss.gan, f"mel {config.loss.mel}"] + (["stft"] if config.loss.stft != "none" else [])
    return f"{config.generator.type} · {'+'.join(config.discriminator.kinds) or 'no D'} · {', '.join(losses)}"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A config as dotted keys: {'training.batch_size': 16, ...}."""
    if isinstance(value, Config):
        value = value.to_dict()
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


MISSING = "-"


def config_diff(configs: dict[str, Optional[Config]]) -> list[tuple[str, tuple[Any, ...]]]:
    """The dotted keys whose values differ between the configs (in the config's own order), with
    each run's value; a run without a readable config takes no part."""
    flat = [flatten(c) for c in configs.values() if c is not None]
    if len(flat) < 2:
        return []
    keys = list(dict.fromkeys(k for f in flat for k in f))
    values = {k: tuple(f.get(k, MISSING) for f in flat) for k in keys}
    return [(k, v) for k, v in values.items() if any(x != v[0] for x in v[1:])]


def summaries(logs_dir: Path, now: Optional[float] = None) -> list[RunSummary]:
    """Every run under ``logs_dir``, most recently active first."""
    return [summarize(run, now) for run in list_runs(logs_dir)]
