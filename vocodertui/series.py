"""Loss curves for display: smoothing, trends and downsampling of (step, value) series. numpy only."""

from __future__ import annotations

from typing import Optional

import numpy as np

SMOOTHINGS = ("raw", "ema", "mean")  # the order the smoothing key cycles through
EMA_WEIGHTS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)  # the steps the +/- keys move through
EMA_WEIGHT = 0.9
MOVING_WINDOW = 20
TREND_WINDOW = 100
FLAT_RELATIVE = 0.01


def ema(values: np.ndarray, weight: float = EMA_WEIGHT) -> np.ndarray:
    """Debiased exponential moving average, as wandb and TensorBoard draw it, NaNs skipped.

    m[t] = weight m[t-1] + (1-weight) x[t] from m[-1] = 0, shown as m[t] / (1 - weight^(t+1)): the
    division undoes the pull towards the zero start, so the first point is the first value and the
    early points are means of what was seen so far. The recurrence is linear, so a log2(n)-step
    prefix scan computes it without a Python loop.
    """
    x = _fill_nan(values)
    if len(x) == 0 or weight == 0.0:
        return x
    m = (1.0 - weight) * x
    decay, shift = weight, 1
    while shift < len(m) and decay > 0.0:
        m[shift:] = m[shift:] + decay * m[:-shift]
        decay, shift = decay * decay, shift * 2
    return m / -np.expm1(np.arange(1, len(x) + 1) * np.log(weight))


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


def smooth(values: np.ndarray, how: str, weight: float = EMA_WEIGHT) -> np.ndarray:
    if how == "ema":
        return ema(values, weight)
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


def positive_for_log(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Values a log axis can draw: those at or below 0 raised to the smallest positive one (and
    whether any were); without any positive value they are left as they are."""
    x = np.asarray(values, dtype=np.float64)
    low = x <= 0
    positive = x[x > 0]
    if not low.any() or len(positive) == 0:
        return x, False
    return np.where(low, positive.min(), x), True
