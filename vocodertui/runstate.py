"""What state a run is in, read from its run directory and its verified PID file alone.

Used by ``vocodertui status`` / ``checkpoints`` and by the dashboard; imports neither torch nor textual.
"""

from __future__ import annotations

import functools
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from trainer import pidfile
from trainer.config import AlertsConfig, Config, load_config
from trainer.errors import UserError
from trainer.records import (CONTROLS, ENDINGS, QUALITY_METRICS, RANKINGS, REWINDS, SEGMENTS, VAL_MEL_L1, Checkpoint, Crashed, Event, Metrics,
                             QualityMetric, Stopped, Stopping, best_checkpoint, checkpoint_scores, kind_of)
from trainer.rundir import RunPaths, read_records, tail_records
from vocodertui import alerts


@dataclass
class CheckpointInfo:
    step: int
    path: str
    time: float
    size: int
    val_mel: Optional[float]
    quality: Optional[dict[str, float]] = None  # quality means at this step (metric -> mean)
    best: bool = False


def scored_metrics(checkpoints: list[CheckpointInfo]) -> list[QualityMetric]:
    """The quality metrics any of these checkpoints has a score for, in the contract's order."""
    return [m for m in QUALITY_METRICS.values() if any(c.quality and m.name in c.quality for c in checkpoints)]


def quality_cells(checkpoint: CheckpointInfo, metrics: list[QualityMetric]) -> tuple[str, ...]:
    q = checkpoint.quality or {}
    return tuple(f"{q[m.name]:.4g}" if m.name in q else "-" for m in metrics)


@dataclass
class RunStatus:
    name: str
    path: str
    state: str  # running, stopping, stopped, finished, crashed, stalled, not started
    reason: str
    step: int
    target_step: Optional[int]
    steps_per_s: Optional[float]
    eta_s: Optional[float]
    last_metric_age_s: Optional[float]
    last_checkpoint: Optional[CheckpointInfo]
    pid: Optional[int]
    uptime_s: Optional[float]  # since the live trainer process started
    rss_bytes: Optional[int]
    stale_pid_file: Optional[str]  # why a PID file present on disk is not trusted
    skipped_records: int = 0  # lines of events.jsonl and metrics.jsonl (its tail) that did not decode
    stalled_since: Optional[float] = None  # the last write of a stalled trainer
    warnings: list[alerts.Alert] = field(default_factory=list)  # what is going wrong (vocodertui/alerts.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_runs(logs_dir: Path) -> list[RunPaths]:
    """Run directories under ``logs_dir`` (folders starting with '.' hold caches, not runs), newest activity first."""
    if not logs_dir.is_dir():
        return []
    runs = [RunPaths(p) for p in logs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    runs = [r for r in runs if r.events.exists() or r.pid.exists() or r.config.exists()]
    return sorted(runs, key=last_activity, reverse=True)


def last_activity(run: RunPaths) -> float:
    times = [p.stat().st_mtime for p in (run.metrics, run.events, run.pid) if p.exists()]
    return max(times, default=0.0)


def run_config(run: RunPaths) -> tuple[Optional[Config], Optional[str]]:
    """The run's config.yaml, or None and why not (None and no reason when it does not exist).

    Loaded again only when the file changes, so the dashboard may ask every second."""
    try:
        st = run.config.stat()
    except OSError:
        return None, None
    return _load_run_config(str(run.config), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _load_run_config(path: str, _mtime_ns: int, _size: int) -> tuple[Optional[Config], Optional[str]]:
    try:
        return load_config(path), None
    except UserError as exc:
        return None, str(exc)


def best_by(run: RunPaths) -> QualityMetric:
    """What the run ranks its checkpoints by (``schedule.best_by`` of its config)."""
    config, _ = run_config(run)
    return RANKINGS[config.schedule.best_by] if config else VAL_MEL_L1  # no readable config: the default


def checkpoint_table(run: RunPaths, events: Optional[list[Event]] = None) -> list[CheckpointInfo]:
    """Checkpoints on disk, oldest first, with their validation mel-L1 and quality from the events
    log; the best by the run's ``schedule.best_by`` is marked."""
    events = read_records(run.events, Event).records if events is None else events
    saved = {e.step: e for e in events if isinstance(e, Checkpoint)}
    rows = []
    for step, path in run.checkpoint_files():
        try:
            st = path.stat()
        except FileNotFoundError:  # pruned while we looked
            continue
        event = saved.get(step)
        rows.append(CheckpointInfo(step, str(path), st.st_mtime, st.st_size, event.val_mel if event else None,
                                   event.quality if event else None))
    best = best_checkpoint({r.step: checkpoint_scores(r.val_mel, r.quality) for r in rows}, best_by(run))
    for r in rows:
        r.best = r.step == best
    return rows


def recent_rate(metrics: list[Metrics]) -> Optional[float]:
    """Steps per second over the last 20 metrics lines of the current start/resume."""
    window = metrics[-20:]
    if len(window) >= 2 and window[-1].time > window[0].time:
        return (window[-1].step - window[0].step) / (window[-1].time - window[0].time)
    if window and window[-1].steps_per_s:
        return window[-1].steps_per_s
    return None


def run_status(run: RunPaths, now: Optional[float] = None) -> RunStatus:
    """The run's state and its warnings, from all its events and the last ``alerts.TAIL_BYTES`` of its metrics."""
    now = time.time() if now is None else now
    events, metrics = read_records(run.events, Event), tail_records(run.metrics, Metrics, alerts.TAIL_BYTES)
    config, problem = run_config(run)
    status = derive_status(run, events.records, metrics.records, pidfile.check(run), now,
                           skipped=events.skipped + metrics.skipped, thresholds=config.alerts if config else AlertsConfig())
    status.warnings = alerts.for_run(run, status, events.records, metrics.records, disk_free(run), config, problem, now)
    return status


def disk_free(run: RunPaths) -> Optional[int]:
    """Bytes free on the file system of the run directory."""
    try:
        return shutil.disk_usage(run.root).free
    except OSError:
        return None


def derive_status(run: RunPaths, events: list[Event], metrics: list[Metrics], liveness: pidfile.Liveness,
                  now: float, skipped: int = 0, thresholds: Optional[AlertsConfig] = None) -> RunStatus:
    """The state of a run from what has been read of it: all its events, its latest metrics lines
    (the last few dozen are enough), the verdict on its PID file, and how many lines did not decode.
    ``thresholds`` says when a live trainer that writes nothing counts as stalled (``alerts.stall_*``)."""
    thresholds = thresholds or AlertsConfig()
    segment = next((e for e in reversed(events) if isinstance(e, SEGMENTS)), None)
    last_control = next((e for e in reversed(events) if isinstance(e, CONTROLS)), None)
    rewind = next((e for e in reversed(events) if isinstance(e, REWINDS)), None)
    if rewind is not None:  # lines from before a resume or rollback describe an abandoned timeline
        metrics = [m for m in metrics if m.time >= rewind.time]
    last_metric = metrics[-1] if metrics else None
    step = max([e.step for e in events[-1:]] + [last_metric.step if last_metric else 0])
    target = segment.target_step if segment else None
    rate = recent_rate(metrics)
    checkpoints = checkpoint_table(run, events)

    reason, stalled_since = "", None
    if liveness.alive:
        started = liveness.record.start_time  # this trainer's own writes only
        activity = max([e.time for e in events[-1:]] + [last_metric.time if last_metric else 0.0, started])
        # the trainer writes a metrics line this often
        expected = metrics[-1].time - metrics[-2].time if len(metrics) >= 2 else 0.0
        if isinstance(last_control, Stopping) and last_control.time >= started:
            state, reason = "stopping", f"{last_control.reason} received; finishing the step and checkpointing"
        elif now - activity > max(thresholds.stall_intervals * expected, thresholds.stall_min_seconds):
            state, reason = "stalled", f"nothing written for {now - activity:.0f} s while the process lives"
            stalled_since = activity
        else:
            state = "running"
    elif not events:
        state = "not started"
    elif isinstance(last_control, ENDINGS):
        state = kind_of(type(last_control))
        reason = (f"stopped on {last_control.reason}" if isinstance(last_control, Stopped)
                  else last_control.reason if isinstance(last_control, Crashed) else "")
    else:
        state, reason = "crashed", f"the trainer died without a word ({liveness.reason}): killed, or the machine went down"

    stale = None if liveness.alive or liveness.reason == "no PID file" else liveness.reason
    rss = None
    if liveness.process is not None:
        try:
            rss = liveness.process.memory_info().rss
        except Exception:  # the process ended between the two looks
            rss = None
    eta = (target - step) / rate if (rate and target and state in ("running", "stalled") and target > step) else None
    return RunStatus(
        name=run.name, path=str(run.root), state=state, reason=reason, step=step, target_step=target,
        steps_per_s=rate, eta_s=eta,
        last_metric_age_s=(now - last_metric.time) if last_metric else None,
        last_checkpoint=checkpoints[-1] if checkpoints else None,
        pid=liveness.record.pid if liveness.alive and liveness.record else None,
        uptime_s=now - liveness.record.create_time if liveness.alive and liveness.record else None,
        rss_bytes=rss, stale_pid_file=stale, skipped_records=skipped, stalled_since=stalled_since,
    )
