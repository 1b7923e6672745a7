"""Loss curves for display: smoothing, trends and downsampling of (step, value) series. numpy only."""

from __future__ import annotations

from typing import Optional

import numpy as np

SMOOTHINGS = ("raw", "ema", "mean")  # the order the smoothing key cycles through
EMA_ALPHA = 0.1
MOVING_WINDOW = 20
TREND_WINDOW = 100
FLAT_RELATIVE = 0.01


def ema(values: np.ndarray, alpha: float = EMA_ALPHA) -> np.ndarray:
    """Exponential moving average y[t] = (1-alpha) y[t-1] + alpha x[t], y[0] = x[0], NaNs skipped.

    The recurrence is linear, so a log2(n)-step prefix scan computes it without a Python loop.
    """
    x = _fill_nan(values)
    if len(x) == 0:
        return x
    y = alpha * x
    y[0] = x[0]
    decay, shift = 1.0 - alpha, 1
    while shift < len(y) and decay > 0.0:
        y[shift:] = y[shift:] + decay * y[:-shift]
        decay, shift = decay * decay, shift * 2
    return y


def moving_mean(values: np.ndarray, window: int = MOVING_WINDOW) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start), NaNs skipped."""
    x = _fill_nan(values)
    if len(x) == 0:
        return x
    total = np.cumsum(np.insert(x, 0, 0.0))
    lo = np.maximum(np.arange(1, len(x) + 1) - window, 0)
    return (total[1:] - total[lo]) / (np.arange(1, len(x) + 1) - lo)


def _fill_nan(values: np.ndarray) -> np.ndarray:
    """NaNs (null losses) replaced by the previous finite value, so smoothing carries over them."""
    x = np.asarray(values, dtype=np.float64).copy()
    bad = ~np.isfinite(x)
    if bad.all():
        return x[:0]
    if bad.any():
        idx = np.where(~bad, np.arange(len(x)), 0)
        np.maximum.accumulate(idx, out=idx)
        x = x[idx]
        x[: np.argmax(~bad)] = x[np.argmax(~bad)]
    return x


def smooth(values: np.ndarray, how: str) -> np.ndarray:
    if how == "ema":
        return ema(values)
    if how == "mean":
        return moving_mean(values)
    return np.asarray(values, dtype=np.float64)


def trend(values: np.ndarray, window: int = TREND_WINDOW) -> Optional[str]:
    """'down', 'up' or 'flat': the mean of the last ``window`` values against the ``window`` before."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2 * window:
        return None
    before, last = x[-2 * window:-window].mean(), x[-window:].mean()
    if abs(last - before) <= FLAT_RELATIVE * max(abs(before), 1e-12):
        return "flat"
    return "down" if last < before else "up"


def downsample(steps: np.ndarray, values: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` points: the mean of each of ``points`` equal runs of samples (steps too)."""
    if len(steps) <= points:
        return steps, values
    edges = np.linspace(0, len(steps), points + 1).astype(np.int64)
    counts = np.diff(edges)
    keep = counts > 0
    step_sums = np.add.reduceat(steps.astype(np.float64), edges[:-1][keep])
    value_sums = np.add.reduceat(values, edges[:-1][keep])
    return step_sums / counts[keep], value_sums / counts[keep]
