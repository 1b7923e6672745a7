"""What the plot keys choose (smoothing, EMA weight, window, x axis, log scale) and turning the
compared runs' curves into coloured lines under those choices. numpy, no textual."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from vocodertui.dashboard.feed import Curves
from vocodertui.dashboard.widgets import RUN_COLOURS, Trace
from vocodertui.series import EMA_WEIGHT, EMA_WEIGHTS, SMOOTHINGS, positive_for_log, smooth

WINDOWS = (None, 10_000, 1_000)  # plot windows in steps; None is the whole run
X_AXES = ("step", "hours")  # hours: wall-clock hours since each run's start
SMOOTHING_NAMES = {"raw": "raw", "ema": "EMA", "mean": "moving mean"}


def _next(options: tuple, current):
    return options[(options.index(current) + 1) % len(options)]


@dataclass(frozen=True)
class PlotSettings:
    smoothing: str = SMOOTHINGS[0]
    ema_weight: float = EMA_WEIGHT
    window: Optional[int] = WINDOWS[0]
    x: str = X_AXES[0]
    log_y: bool = False  # the loss plots'

    def next_smoothing(self) -> PlotSettings:
        return replace(self, smoothing=_next(SMOOTHINGS, self.smoothing))

    def next_window(self) -> PlotSettings:
        return replace(self, window=_next(WINDOWS, self.window))

    def next_x(self) -> PlotSettings:
        return replace(self, x=_next(X_AXES, self.x))

    def toggle_log(self) -> PlotSettings:
        return replace(self, log_y=not self.log_y)

    def ema_step(self, by: int) -> PlotSettings:
        """The next heavier (1) or lighter (-1) EMA weight; the smoothing becomes EMA, so the key shows."""
        i = min(max(EMA_WEIGHTS.index(self.ema_weight) + by, 0), len(EMA_WEIGHTS) - 1)
        return replace(self, smoothing="ema", ema_weight=EMA_WEIGHTS[i])

    @property
    def smoothing_name(self) -> str:
        return f"EMA {self.ema_weight:g}" if self.smoothing == "ema" else SMOOTHING_NAMES[self.smoothing]

    @property
    def window_name(self) -> str:
        return "all steps" if self.window is None else f"last {self.window:,} steps"

    @property
    def x_name(self) -> str:
        return "step" if self.x == "step" else "hours since each run's start"


def window_start(runs: tuple[Curves, ...], window: Optional[int]) -> float:
    """Steps above this are shown: the last ``window`` steps of the furthest run, so runs share the axis."""
    last = max((c.rows[-1, 1] for c in runs if len(c.rows)), default=None)
    return -np.inf if window is None or last is None else last - window


def x_axis(started: Optional[float], steps: np.ndarray, times: np.ndarray, x: str) -> np.ndarray:
    if x == "step":
        return steps
    origin = started if started is not None else (times[0] if len(times) else 0.0)
    return (times - origin) / 3600.0


def traces(runs: tuple[Curves, ...], column: str, settings: PlotSettings, smoothed: bool = True,
           log_y: bool = False, scale: float = 1.0) -> tuple[tuple[Trace, ...], bool]:
    """One line per run of ``column`` (times ``scale``) in the window, in the run's colour; and
    whether a log axis made values at or below 0 the smallest positive one."""
    first = window_start(runs, settings.window)
    lines, clipped = [], False
    for i, curves in enumerate(runs):
        steps = curves.column("step")
        values = curves.column(column) * scale
        keep = (steps > first) & np.isfinite(values)
        y = smooth(values[keep], settings.smoothing, settings.ema_weight) if smoothed else values[keep]
        if log_y:
            y, clip = positive_for_log(y)
            clipped |= clip
        lines.append(Trace(x_axis(curves.started, steps[keep], curves.column("time")[keep], settings.x), y, RUN_COLOURS[i]))
    return tuple(lines), clipped


def validation_traces(runs: tuple[Curves, ...], settings: PlotSettings, log_y: bool = False) -> tuple[tuple[Trace, ...], bool]:
    first = window_start(runs, settings.window)
    lines, clipped = [], False
    for i, curves in enumerate(runs):
        v = np.array(curves.validations, dtype=np.float64).reshape(-1, 3)
        v = v[v[:, 0] > first]
        y = v[:, 2]
        if log_y:
            y, clip = positive_for_log(y)
            clipped |= clip
        lines.append(Trace(x_axis(curves.started, v[:, 0], v[:, 1], settings.x), y, RUN_COLOURS[i]))
    return tuple(lines), clipped
