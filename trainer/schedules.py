"""The learning rate over training (``training.lr_schedule``, ``warmup_steps``).

The reference's schedule, ``exponential_per_epoch`` without warm-up, is torch's ``ExponentialLR``
stepped after each epoch, as jik876 steps it, so that its learning rates match to the bit. Every
other schedule is a closed form of the step (and epoch) the trainer is at, set before each update:
it needs no state of its own, so a resume or a rollback lands on the same value.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from trainer.config import TrainingConfig


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear from 1 / warmup_steps at the first update to 1 at update ``warmup_steps``."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 1 else 1.0


class LearningRateSchedule:
    """One optimiser's learning rate: ``before_step(step, epoch)`` ahead of each update (``step``
    updates done before it), ``end_epoch()`` after each epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, t: TrainingConfig):
        self.optimizer, self.t = optimizer, t
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.reference: Optional[torch.optim.lr_scheduler.ExponentialLR] = None
        if t.lr_schedule == "exponential_per_epoch" and t.warmup_steps <= 1:
            self.reference = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=t.lr_decay)

    def lr(self, base: float, step: int, epoch: int) -> float:
        t = self.t
        warm = warmup_factor(step, t.warmup_steps)
        if t.lr_schedule == "exponential_per_epoch":
            return base * warm * t.lr_decay**epoch
        if t.lr_schedule == "exponential_per_step":
            return base * warm * t.lr_decay**step
        if t.lr_schedule == "cosine":
            floor = min(t.min_learning_rate, base)
            progress = min(1.0, max(0.0, (step - t.warmup_steps) / max(1, t.target_step - t.warmup_steps)))
            return warm * (floor + (base - floor) * (1 + math.cos(math.pi * progress)) / 2)
        return base * warm  # constant

    def before_step(self, step: int, epoch: int) -> None:
        if self.reference is not None:
            return
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr(base, step, epoch)

    def end_epoch(self) -> None:
        if self.reference is not None:
            self.reference.step()

    def continue_at(self, epoch: int) -> None:
        """A jik876 checkpoint has no scheduler state: its optimiser state already holds the learning
        rate decayed once per finished epoch, so the reference's scheduler only learns the epoch."""
        if self.reference is not None:
            self.reference.last_epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        return self.reference.state_dict() if self.reference is not None else {"closed_form": self.t.lr_schedule}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.reference is not None:
            self.reference.load_state_dict(state)
