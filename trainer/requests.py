"""Requests from outside the loop: stop (SIGINT, SIGTERM), checkpoint (SIGUSR1), validate (SIGUSR2).

The handlers only count what arrived; ``take`` turns the counts into decisions at a step boundary.
Under torchrun one all-reduce per step averages the losses and makes any rank's request every
rank's (rank 0 receives the signals), so that all ranks stop, checkpoint and validate on the same
step.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from trainer.distributed import World


@dataclass
class Asked:
    """What the loop has been asked to do and has not done yet (it clears a flag when it acts)."""

    checkpoint: bool = False
    validation: bool = False


class Requests:
    def __init__(self, world: World, device: torch.device, on_stop: Callable[[str], None]):
        self.world = world
        self.device = device
        self.on_stop = on_stop  # called from the signal handler, once, with the signal's name
        self.stop_signal: Optional[str] = None
        self.stop_reason: Optional[str] = None  # decided: the loop stops after this step
        self.checkpoints = self.checkpoints_taken = 0
        self.validations = self.validations_taken = 0
        self.asked = Asked()

    @contextlib.contextmanager
    def installed(self):
        """The handlers in place for the block; the previous ones back afterwards."""

        def stop(signum, _frame):
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops without the checkpoint
            if self.stop_signal is None:
                self.stop_signal = signal.Signals(signum).name
                self.on_stop(self.stop_signal)

        def want_checkpoint(_signum, _frame):
            self.checkpoints += 1

        def want_validation(_signum, _frame):
            self.validations += 1

        handlers = {signal.SIGINT: stop, signal.SIGTERM: stop, signal.SIGUSR1: want_checkpoint,
                    signal.SIGUSR2: want_validation}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def take(self, losses: torch.Tensor) -> torch.Tensor:
        """The step's losses (averaged over the ranks); the requests received since the last call
        are added to ``asked`` and ``stop_reason``."""
        checkpoints, validations = self.checkpoints, self.validations
        flags = [self.stop_signal is not None, checkpoints > self.checkpoints_taken, validations > self.validations_taken]
        self.checkpoints_taken, self.validations_taken = checkpoints, validations
        if self.world.distributed:
            local = torch.tensor(flags, dtype=torch.float32, device=self.device)
            synced = self.world.all_reduce_sum(torch.cat([losses, local]))
            losses = synced[: len(losses)] / self.world.size
            flags = (synced[len(losses):] > 0).tolist()
        stop, checkpoint, validation = flags
        if stop and self.stop_reason is None:
            self.stop_reason = self.stop_signal or "stop on rank 0"
        self.asked.checkpoint |= bool(checkpoint)
        self.asked.validation |= bool(validation)
        return losses
