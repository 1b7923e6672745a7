"""Everything the dashboard shows about one run, read from its run directory.

``RunFeed`` lives in the dashboard's I/O worker thread. Each ``view()`` reads only what the trainer
appended since the previous call, checks the PID file, and returns an immutable ``RunView`` that the
widgets render on the UI thread. No torch, no textual.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import psutil

from trainer import pidfile
from trainer.records import SEGMENTS, Event, Metrics, Quality, Start, Validation, supersede
from trainer.rundir import RunPaths
from vocodertui import alerts
from vocodertui.follow import METRIC_COLUMNS, JsonlFollower, MetricsFollower, current_timeline, effective, rewinds_of
from vocodertui.runstate import CheckpointInfo, RunStatus, checkpoint_table, derive_status, run_config

HEAD_SAMPLE = 4000  # older lines parsed for whole-run plots
COLUMN = {name: i for i, name in enumerate(METRIC_COLUMNS)}
VERSIONS = itertools.count(1)  # one sequence for every feed, so two runs' curves never compare equal
# The warnings are computed again after new records at most once a second, at once when the run's state
# changes, every second while it is stalled, and every 10 s anyway (the disk fills without a record).
ALERTS_EVERY_S = 1.0
ALERTS_IDLE_S = 10.0
ALERT_RECORDS = 4096  # newest metrics lines kept as records: at least what status reads (alerts.TAIL_BYTES), so both agree


@dataclass(frozen=True)
class SystemStats:
    cpu_percent: float
    ram_used: int
    ram_total: int
    disk_free: Optional[int]
    trainer_rss: Optional[int]


@dataclass(frozen=True)
class Curves:
    """One run's current timeline: metrics rows and validations; equal while neither has changed."""

    name: str  # the run's
    version: int  # a new one whenever ``rows`` changes
    validations: tuple[tuple[int, float, float], ...]  # (step, time, val mel-L1)
    started: Optional[float]  # when the current timeline's start event was written (else its first line)
    rows: np.ndarray = field(compare=False, repr=False)  # METRIC_COLUMNS, step order

    def column(self, name: str) -> np.ndarray:
        return self.rows[:, COLUMN[name]]

    def recorded(self, name: str) -> bool:
        """Whether any line of the timeline has a value for ``name`` (older trainers lack some fields)."""
        return bool(np.isfinite(self.column(name)).any())


@dataclass(frozen=True)
class SampleSet:
    """The latest validation's samples, their references, and the quality scored at that step."""

    step: int
    generated: tuple[Path, ...]  # the sample WAVs, by id
    references: Path  # the folder of each id's reference WAV
    quality: Optional[Quality]  # the quality record at ``step``, if it was scored

    def reference(self, generated: Path) -> Path:
        return self.references / generated.name


@dataclass(frozen=True, eq=False)
class RunView:
    run: RunPaths
    status: RunStatus
    curves: Curves
    latest: Optional[Metrics]  # the newest metrics line of the current timeline
    events: tuple[Event, ...]
    checkpoints: tuple[CheckpointInfo, ...]
    milestones: tuple[int, ...]
    samples: Optional[SampleSet]  # the latest validation's, if it wrote any
    quality: tuple[Quality, ...]  # the current timeline's quality records, step order
    system: SystemStats
    indexing: bool  # older metrics lines are still being indexed (whole-run plots are partial)


def read_system(run: RunPaths, trainer_rss: Optional[int]) -> SystemStats:
    memory = psutil.virtual_memory()
    try:
        disk_free = shutil.disk_usage(run.root).free
    except OSError:
        disk_free = None
    return SystemStats(psutil.cpu_percent(interval=None), memory.total - memory.available, memory.total,
                       disk_free, trainer_rss)


class RunFeed:
    def __init__(self, run: RunPaths, clock: Callable[[], float] = time.time,
                 system: Callable[[RunPaths, Optional[int]], SystemStats] = read_system):
        self.run = run
        self.clock = clock
        self.system = system
        self.metrics = MetricsFollower(run.metrics, keep_records=ALERT_RECORDS)
        self.event_reader = JsonlFollower(run.events, Event)
        self.events: list[Event] = []
        self.rows = np.zeros((0, len(METRIC_COLUMNS)))
        self.rows_version = next(VERSIONS)
        self._rows_stale = True
        self.alerts: list[alerts.Alert] = []
        self._alerts_for: tuple[float, str] = (-float("inf"), "")  # (monotonic time, state) of the last computation
        self._alerts_stale = True  # records arrived since

    def index_some(self) -> bool:
        """Index a chunk of older metrics lines; True while there is more to index."""
        if self.metrics.head_indexed:
            return False
        more = self.metrics.index_some()
        if not more:
            self._rows_stale = True  # whole-run plots can now include the older lines
        return more

    def view(self, warnings: bool = True) -> RunView:
        """What the run looks like now; ``warnings=False`` leaves the warnings as they were (none, at first):
        the reader's first view, so the newest step is on screen before the alerts are computed."""
        new_events, reset = self.event_reader.read_new()
        if reset:
            self.events = []
        self.events.extend(new_events)
        rewinds = rewinds_of(new_events)
        polled = self.metrics.poll()
        if polled or rewinds or reset:
            self._rows_stale = True
        self._alerts_stale |= polled or bool(new_events) or reset
        if self._rows_stale:
            sample = self.metrics.head_sample(HEAD_SAMPLE)
            self.rows = effective(np.concatenate([sample, self.metrics.recent]), rewinds_of(self.events))
            self.rows_version = next(VERSIONS)
            self._rows_stale = False

        liveness = pidfile.check(self.run)
        config, config_problem = run_config(self.run)
        now, recent = self.clock(), list(self.metrics.last_records)
        status = derive_status(self.run, self.events, recent, liveness, now,
                               skipped=self.event_reader.skipped + self.metrics.skipped,
                               thresholds=config.alerts if config else None)
        system = self.system(self.run, status.rss_bytes)
        computed_at, state = self._alerts_for
        waited = time.monotonic() - computed_at
        if warnings and (status.state != state or waited >= ALERTS_IDLE_S or (self._alerts_stale and waited >= ALERTS_EVERY_S)
                or (status.state == "stalled" and waited >= ALERTS_EVERY_S)):  # its message counts the seconds
            self.alerts = alerts.for_run(self.run, status, self.events, recent, system.disk_free, config, config_problem, now)
            self._alerts_for, self._alerts_stale = (time.monotonic(), status.state), False
        status.warnings = self.alerts
        timeline = supersede(self.events)
        validations = tuple((e.step, e.time, e.val_mel) for e in timeline if isinstance(e, Validation) and e.val_mel is not None)
        segment = next((e for e in reversed(self.events) if isinstance(e, SEGMENTS)), None)
        rewinds = rewinds_of(self.events)
        latest = self.metrics.last_records[-1] if self.metrics.last_records else None
        if latest is not None and rewinds and latest.time < rewinds[-1][0]:
            latest = None  # written before the last resume or rollback: another timeline
        quality = tuple(sorted(current_timeline(self.metrics.quality, rewinds), key=lambda q: q.step))
        return RunView(
            run=self.run, status=status, latest=latest,
            curves=Curves(self.run.name, self.rows_version, validations, self._started(), self.rows),
            events=tuple(self.events),
            checkpoints=tuple(checkpoint_table(self.run, self.events)),
            milestones=tuple(segment.milestones) if segment else (),
            samples=self._latest_samples(timeline, quality),
            quality=quality,
            system=system,
            indexing=not self.metrics.head_indexed,
        )

    def with_fresh_system(self, view: RunView) -> RunView:
        """``view`` with the machine figures read again: all that moves while nothing in the run folder
        changes and no trainer lives (the reader asks this instead of a ``view()``, which reads files)."""
        return dataclasses.replace(view, system=self.system(self.run, view.status.rss_bytes))

    def _started(self) -> Optional[float]:
        start = next((e for e in reversed(self.events) if isinstance(e, Start)), None)
        if start is not None:
            return start.time
        return float(self.rows[0, 0]) if len(self.rows) else None

    def _latest_samples(self, timeline: list[Event], quality: tuple[Quality, ...]) -> Optional[SampleSet]:
        for e in reversed(timeline):
            if isinstance(e, Validation) and e.samples is not None:
                folder = self.run.root / e.samples
                if folder.resolve().is_relative_to(self.run.samples.resolve()) and folder.is_dir():  # never outside the run
                    scored = [q for q in quality if q.step == e.step]
                    return SampleSet(e.step, tuple(sorted(folder.glob("*.wav"))), self.run.references,
                                     scored[-1] if scored else None)
        return None
