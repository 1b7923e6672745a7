"""Warnings that a run is going wrong, computed from its run directory alone.

``vocodertui status`` and the dashboard both call ``for_run``, so they agree, and a user without the
dashboard sees the same warnings. ``warnings`` itself is a pure function of an ``Evidence``: the
newest metrics lines of the current start or resume, the events, the newest checkpoint's size, the
disk free, the run's config (thresholds in its ``alerts:`` section) and the clock. Each alert is
raised only on evidence in that data and clears when the evidence leaves it (a spike older than
``alerts.recent_logs`` lines, a validation that improves, memory that stops growing). No torch, no
textual; the metrics are the tail of the file (``TAIL_BYTES``), never the whole of it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from trainer.config import ALERT_KINDS, AlertsConfig, Config
from trainer.records import SEGMENTS, Event, Metrics, NanRollback, Validation, supersede
from trainer.rundir import RunPaths, decode_lines
from vocodertui.units import format_bytes, format_duration

if TYPE_CHECKING:
    from vocodertui.runstate import RunStatus

TAIL_BYTES = 1 << 20  # the end of metrics.jsonl the alerts read: 2,000-3,000 lines, the dashboard's tail too
MIN_BASELINE = 20  # metrics lines a loss is compared with before a spike can be called one
MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation is 1.4826 times its median absolute deviation
RSS_MIN_POINTS = 10
RSS_SLOPE_POINTS = 200  # Theil-Sen looks at pairs of at most this many evenly spaced lines
CONFIG_PROBLEM = "config"  # the kind of the warning that the run's config.yaml does not load


@dataclass(frozen=True)
class Alert:
    kind: str  # one of trainer.config.ALERT_KINDS, or "config"
    since_step: int
    since_time: Optional[float]  # Unix time, when known
    message: str  # one line: what, since when, why, and what to do


@dataclass(frozen=True)
class Evidence:
    """What the alerts are computed from."""

    state: str  # runstate's: running, stalled, stopped, finished, ...
    step: int
    metrics: Sequence[Metrics]  # the newest lines written since the last start or resume, file order
    events: Sequence[Event]  # all of them
    checkpoint_size: Optional[int]  # bytes of the newest checkpoint file
    disk_free: Optional[int]  # bytes free on the run directory's file system
    now: float
    thresholds: AlertsConfig = field(default_factory=AlertsConfig)
    config: Optional[Config] = None  # the run's, for the learning-rate schedule; None when unreadable
    start_lr: Optional[float] = None  # the generator's learning rate the schedule starts from
    stalled_since: Optional[float] = None  # the last write of a stalled trainer
    stall_reason: str = ""


def warnings(e: Evidence) -> list[Alert]:
    """Every alert the evidence supports, in ``ALERT_KINDS`` order, less those ``alerts.ignore`` names."""
    checks = {"stalled": _stalled, "nan_rollback": _nan_rollback, "loss_spike": _loss_spike, "d_collapse": _d_collapse,
              "lr_floor": _lr_floor, "rss_growth": _rss_growth, "disk_low": _disk_low, "val_worsening": _val_worsening}
    found = []
    for kind in ALERT_KINDS:
        if kind not in e.thresholds.ignore:
            alert = checks[kind](e)
            if alert is not None:
                found.append(alert)
    return found


def for_run(run: RunPaths, status: RunStatus, events: Sequence[Event], metrics: Sequence[Metrics], disk_free: Optional[int],
            config: Optional[Config], config_problem: Optional[str], now: float) -> list[Alert]:
    """The alerts of a run from what has been read of it: its events, the newest metrics lines (any
    timeline; ``TAIL_BYTES`` of the file is plenty), and its config as ``runstate.run_config`` loads it."""
    begun = _segment_time(events)
    current = [m for m in metrics if m.time >= begun]
    evidence = Evidence(
        state=status.state, step=status.step, metrics=current, events=events,
        checkpoint_size=status.last_checkpoint.size if status.last_checkpoint else None, disk_free=disk_free, now=now,
        thresholds=config.alerts if config else AlertsConfig(), config=config,
        start_lr=config.training.learning_rate_g if config else first_lr(run),
        stalled_since=status.stalled_since, stall_reason=status.reason,
    )
    found = warnings(evidence)
    if config_problem:
        found.append(Alert(CONFIG_PROBLEM, status.step, None, f"{config_problem}: the alerts use their default thresholds"))
    return found


def first_lr(run: RunPaths) -> Optional[float]:
    """The learning rate of the run's first metrics line (read from the file's first 64 kB)."""
    try:
        with open(run.metrics, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    first = decode_lines(head.splitlines(keepends=True)[:50], Metrics).records[:1]
    return first[0].lr if first else None


# ----------------------------------------------------------------------------- the alerts


def _stalled(e: Evidence) -> Optional[Alert]:
    if e.state != "stalled":
        return None
    return Alert("stalled", e.step, e.stalled_since,
                 f"stalled at step {e.step:,}: {e.stall_reason}; look at the end of trainer.log (a hung data "
                 "loader, a full disk, a stuck GPU); vocodertui stop, then start --resume latest")


def _nan_rollback(e: Evidence) -> Optional[Alert]:
    """NaN rollbacks of this start or resume with fewer than ``recent_logs`` metrics lines written since."""
    window = e.thresholds.recent_logs
    begun = _segment_time(e.events)
    recent = [ev for ev in e.events if isinstance(ev, NanRollback) and ev.time >= begun
              and sum(m.time > ev.time for m in e.metrics[-window:]) < window]
    if not recent:
        return None
    last = recent[-1]
    count = f"{len(recent)} NaN rollbacks" if len(recent) > 1 else "a NaN rollback"
    return Alert("nan_rollback", recent[0].step, recent[0].time,
                 f"{count} in the last {window} logs: step {last.failed_step:,} gave a non-finite loss, so the trainer "
                 f"went back to {last.checkpoint} and skipped a batch (strike {last.strikes} of 3 in a row ends the run); "
                 "if it recurs, lower the learning rate or set training.grad_clip")


def _segment_time(events: Sequence[Event]) -> float:
    segment = next((ev for ev in reversed(events) if isinstance(ev, SEGMENTS)), None)
    return segment.time if segment else -math.inf


def _recent(e: Evidence) -> Sequence[Metrics]:
    """The lines the trend alerts (d_collapse, lr_floor) look back over: a collapse or a decayed learning
    rate older than this is dated from the first of them."""
    return e.metrics[-max(2 * e.thresholds.recent_logs, e.thresholds.collapse_logs):]


def _values(metrics: Sequence[Metrics], name: str) -> np.ndarray:
    """A field of each line as floats; null is NaN."""
    return np.array([getattr(m, name, None) for m in metrics], dtype=np.float64)


def row_nanmedian(rows: np.ndarray) -> np.ndarray:
    """The median of each row's non-NaN values (NaN where there are none): ``np.nanmedian(rows, axis=1)``
    without its masked-array path, which took most of a dashboard tick on a 50 x 50 window."""
    ordered = np.sort(rows, axis=1)  # NaNs sort last
    count = np.sum(~np.isnan(rows), axis=1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, np.minimum(count // 2, rows.shape[1] - 1)[:, None], axis=1)[:, 0]
    return np.where(count > 0, (low + high) / 2, np.nan)


def _loss_spike(e: Evidence) -> Optional[Alert]:
    """loss_g or loss_mel of a line among the last ``recent_logs`` more than ``spike_z`` robust deviations
    above the median of the ``recent_logs`` lines before it.

    Only upward jumps count and each line is judged against the lines before it, so a falling loss
    (fast early training) never looks like a spike. loss_g is compared only with lines of its own
    phase: the adversarial terms join it at ``training.discriminator_start_step``.
    """
    window = e.thresholds.recent_logs
    lines = list(e.metrics[-2 * window:])
    first = max(len(lines) - window, MIN_BASELINE)
    if first >= len(lines):
        return None
    adversarial = _values(lines, "loss_adv") != 0  # NaN counts as True: a null loss_adv says nothing of the phase
    tested = np.arange(first, len(lines))
    behind = tested[:, None] - window + np.arange(window)[None, :]  # the indices of the window before each tested line
    valid = behind >= 0
    behind = np.maximum(behind, 0)
    spikes = []  # (line index, loss, value, median, z)
    for name in ("loss_g", "loss_mel"):
        values = _values(lines, name)
        base = np.where(valid, values[behind], np.nan)
        if name == "loss_g":
            base = np.where(adversarial[behind] == adversarial[tested][:, None], base, np.nan)
        enough = np.sum(np.isfinite(base), axis=1) >= MIN_BASELINE
        if not enough.any():
            continue
        median = row_nanmedian(base)
        mad = row_nanmedian(np.abs(base - median[:, None]))
        scale = np.maximum(MAD_TO_SIGMA * mad, 1e-3 * np.abs(median)) + 1e-12
        z = (values[tested] - median) / scale
        for k in np.flatnonzero(enough & np.isfinite(z) & (z > e.thresholds.spike_z)):
            spikes.append((int(tested[k]), name, float(values[tested[k]]), float(median[k]), float(z[k])))
    if not spikes:
        return None
    start = min(spikes)
    index, name, value, median, z = max(spikes, key=lambda s: s[4])
    lines_with = len({s[0] for s in spikes})
    return Alert("loss_spike", lines[start[0]].step, lines[start[0]].time,
                 f"{name} jumped to {value:.4g} at step {lines[index].step:,}, {z:.0f} robust deviations above the median "
                 f"{median:.4g} of the logs before it ({lines_with} spiking log{'s' if lines_with > 1 else ''} in the last "
                 f"{window}): a bad batch or a too-high learning rate; if it recurs, lower the learning rate or set "
                 "training.grad_clip")


def _d_collapse(e: Evidence) -> Optional[Alert]:
    """loss_d below ``collapse_loss_d`` for the last ``collapse_logs`` lines or more, while loss_adv rises over them."""
    needed, limit = e.thresholds.collapse_logs, e.thresholds.collapse_loss_d
    lines = _recent(e)
    loss_d, loss_adv = _values(lines, "loss_d"), _values(lines, "loss_adv")
    low = (loss_d < limit) & (loss_adv > 0)  # before the discriminators start, both are 0
    run = len(low) - (np.flatnonzero(~low)[-1] + 1 if (~low).any() else 0)
    if run < needed:
        return None
    adv = loss_adv[-needed:]
    slope = np.polyfit(np.arange(needed), adv, 1)[0] if needed > 1 else 0.0
    if not (slope > 0 and adv[-1] > adv[0]):
        return None
    since = lines[-run]
    return Alert("d_collapse", since.step, since.time,
                 f"the discriminators won: loss_d under {limit:g} for {run} logs since step {since.step:,} while the "
                 f"adversarial loss rose from {adv[0]:.3g} to {adv[-1]:.3g}, so the generator gets no useful gradient; "
                 "resume from a checkpoint from before it with a lower training.learning_rate_d")


def _lr_floor(e: Evidence) -> Optional[Alert]:
    """The generator's learning rate below ``lr_floor_fraction`` of where the schedule starts.

    Not during a warm-up (it rises from 0), and under a cosine schedule only below the floor the config
    gives it (``min_learning_rate``): falling to it is what was asked for.
    """
    lines = _recent(e)
    lrs = _values(lines, "lr")
    if not len(lrs) or not np.isfinite(lrs[-1]) or not (e.start_lr and 0 < e.start_lr < math.inf):
        return None
    fraction = e.thresholds.lr_floor_fraction
    floor = fraction * e.start_lr
    training = e.config.training if e.config else None
    if training is not None:
        if lines[-1].step < training.warmup_steps:
            return None
        if training.lr_schedule == "cosine":
            floor = min(floor, training.min_learning_rate)
    if lrs[-1] >= floor:
        return None
    above = np.flatnonzero(~(lrs < floor))
    since = lines[above[-1] + 1 if len(above) else 0]
    why = ""
    if training is not None and training.lr_schedule.startswith("exponential"):
        per = "epoch" if training.lr_schedule == "exponential_per_epoch" else "step"
        why = f"training.lr_decay {training.lr_decay:g} per {per} took it there; "
    return Alert("lr_floor", since.step, since.time,
                 f"learning rate {lrs[-1]:.3g} is below {100 * fraction:g} % of its start {e.start_lr:.3g} since step "
                 f"{since.step:,}, too small to learn from: {why}resume with a slower decay, or a cosine schedule "
                 "with min_learning_rate")


def _theil_sen(t: np.ndarray, y: np.ndarray) -> float:
    """The median of the slopes between every pair of points: one jump does not make a trend."""
    pick = np.unique(np.linspace(0, len(t) - 1, min(len(t), RSS_SLOPE_POINTS)).astype(np.int64))
    t, y = t[pick], y[pick]
    i, j = np.triu_indices(len(t), k=1)
    dt = t[j] - t[i]
    ok = dt > 0
    return float(np.median((y[j] - y[i])[ok] / dt[ok])) if ok.any() else 0.0


def _rss_growth(e: Evidence) -> Optional[Alert]:
    """The trainer's memory (``rss_bytes``, absent in older runs) rising steadily: a Theil-Sen slope over
    the last ``rss_window_minutes`` worth more than ``rss_growth_percent_per_hour``, once the first
    ``rss_warmup_minutes`` of the start or resume are over (allocators and caches fill up then), and
    only when the lines span at least half the window."""
    th = e.thresholds
    if not e.metrics:
        return None
    begin = max(e.metrics[-1].time - 60 * th.rss_window_minutes, _segment_time(e.events) + 60 * th.rss_warmup_minutes)
    lines = e.metrics[bisect.bisect_left(e.metrics, begin, key=lambda m: m.time):]  # file order is time order
    rss, times = _values(lines, "rss_bytes"), _values(lines, "time")
    keep = np.isfinite(rss) & np.isfinite(times)
    t, y = times[keep], rss[keep]
    if len(t) < RSS_MIN_POINTS or t[-1] - t[0] < 30 * th.rss_window_minutes:
        return None
    slope = _theil_sen(t, y)
    level = float(np.median(y))
    per_hour = 100 * slope * 3600 / level if level > 0 else 0.0
    if per_hour <= th.rss_growth_percent_per_hour:
        return None
    since = lines[int(np.flatnonzero(keep)[0])]
    return Alert("rss_growth", since.step, since.time,
                 f"trainer memory grows {per_hour:.0f} % per hour ({format_bytes(y[0])} → {format_bytes(y[-1])} in "
                 f"{format_duration(t[-1] - t[0])}): something keeps references (a leak); it frees on a restart "
                 "(vocodertui stop, then start --resume latest)")


def _disk_low(e: Evidence) -> Optional[Alert]:
    """Disk free below (``disk_checkpoints`` + 1) newest checkpoints, while more checkpoints may come."""
    if e.state in ("finished", "not started") or e.disk_free is None or not e.checkpoint_size:
        return None
    count = e.thresholds.disk_checkpoints
    needed = (count + 1) * e.checkpoint_size
    if e.disk_free >= needed:
        return None
    return Alert("disk_low", e.step, e.now,
                 f"{format_bytes(e.disk_free)} free where the run lives, under the {format_bytes(needed)} that the next "
                 f"{count} checkpoints of {format_bytes(e.checkpoint_size)} need (one more is written before an old one "
                 "is deleted): free space, or lower schedule.keep_last")


def _val_worsening(e: Evidence) -> Optional[Alert]:
    """The validation mel-L1 of the current timeline worse than the one before it ``val_worsening`` times in a row."""
    vals = [v for v in supersede(list(e.events))
            if isinstance(v, Validation) and v.val_mel is not None and math.isfinite(v.val_mel)]
    worse = 0
    while worse + 1 < len(vals) and vals[-worse - 1].val_mel > vals[-worse - 2].val_mel:
        worse += 1
    if worse < e.thresholds.val_worsening:
        return None
    best, first_worse, last = vals[-worse - 1], vals[-worse], vals[-1]
    return Alert("val_worsening", first_worse.step, first_worse.time,
                 f"validation mel-L1 worse {worse} times in a row: {best.val_mel:.4f} at step {best.step:,} → "
                 f"{last.val_mel:.4f} at step {last.step:,} (overfitting or an unstable GAN); the best checkpoint is "
                 "kept: compare the samples, and consider stopping or a lower learning rate")

