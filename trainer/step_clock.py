"""Where a training step's time goes: waiting for the batch, the discriminator's forward and
backward, the generator's, the optimiser steps; summed over a log interval.

The loop and ``Gan.step`` mark the boundaries between phases; a mark charges the time since the
previous one to a phase. On a CPU the host's clock is the truth. On a GPU the host only queues
kernels, so its clock would charge the work to whoever waits for it; there each mark records a
CUDA event on the stream instead (a few microseconds, no synchronisation), and ``step_done`` reads
the events' elapsed times. The loop already waits for every step's losses on the host (its
finiteness check), so by then the events have completed and reading them costs no extra wait; a
synchronising timer on the logging step alone would measure one step, not the interval's mean.
"""

from __future__ import annotations

import time

import torch

PHASES = ("data", "d", "g", "optim")


class StepClock:
    def __init__(self, device: torch.device):
        self.on_gpu = device.type == "cuda"
        self.sums = dict.fromkeys(PHASES, 0.0)  # seconds per phase since reset()
        self._last = time.perf_counter()
        self._events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        self._last_event = None

    def reset(self) -> None:
        self.sums = dict.fromkeys(PHASES, 0.0)

    def waiting(self) -> None:
        """The loop is done with a step (or about to ask for the first batch): waiting for data starts."""
        self._last = time.perf_counter()

    def batch_ready(self) -> None:
        """The loader handed over a batch: the wait for it is data time, measured on the host."""
        now = time.perf_counter()
        self.sums["data"] += now - self._last
        self._last = now
        if self.on_gpu:
            self._last_event = self._record()

    def mark(self, phase: str) -> None:
        """The time since the previous mark was spent in ``phase``."""
        if self.on_gpu:
            event = self._record()
            self._events.append((phase, self._last_event, event))
            self._last_event = event
        else:
            now = time.perf_counter()
            self.sums[phase] += now - self._last
            self._last = now

    def step_done(self) -> None:
        """After the host has waited for the step's results: add up the GPU phases."""
        for phase, start, end in self._events:
            self.sums[phase] += start.elapsed_time(end) / 1000
        self._events.clear()

    @staticmethod
    def _record() -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def per_step(self, steps: int, wall: float) -> dict[str, float]:
        """``time_data``, ``time_d``, ``time_g``, ``time_optim`` and ``time_other``: seconds per step
        over ``steps`` steps that took ``wall`` seconds; ``time_other`` is what the phases leave of it."""
        times = {f"time_{phase}": total / steps for phase, total in self.sums.items()}
        times["time_other"] = max(0.0, wall / steps - sum(times.values()))
        return times
