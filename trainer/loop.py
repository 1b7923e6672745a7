"""The training loop: batches in the data order, one GAN step each, then what the step count or a
request says is due (a metrics line, validation, checkpoint), until the target or a stop.

A checkpoint holds every piece of state the loop reads (networks, optimisers, schedulers, grad
scaler, step, epoch, position in the epoch, RNG states), and the data order is a pure function of
the seed, the epoch and the position, so k steps + stop + resume to N equals N steps straight, bit
for bit. A non-finite loss rolls the networks back to the last checkpoint and skips the batch.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

import psutil
import torch

from trainer import checkpoint as ckpt
from trainer.artifacts import Artifacts
from trainer.config import Config
from trainer.data import VocoderData
from trainer.distributed import World
from trainer.errors import UserError
from trainer.gan import Gan
from trainer.records import LOSSES, Crashed, Finished, Metrics, Milestone, NanRollback, SkippedBatch, Stopped, Stopping
from trainer.requests import Requests
from trainer.rundir import RunPaths
from trainer.step_clock import StepClock

log = logging.getLogger("trainer")

MAX_NAN_STRIKES = 3


class NonFiniteLoss(UserError):
    """Training diverged: non-finite losses on consecutive batches even after rolling back."""


class Trainer:
    def __init__(self, cfg: Config, run: RunPaths, data: VocoderData, gan: Gan, world: World = World()):
        self.cfg, self.run, self.data, self.gan, self.world = cfg, run, data, gan, world
        self.target_step = cfg.training.target_step
        self.step = self.epoch = self.batch_in_epoch = 0
        self.checkpointed_step = -1
        self.nan_strikes = 0
        self.artifacts = Artifacts(cfg, run, world)
        self.requests = Requests(world, gan.device, on_stop=lambda name: self.artifacts.event(Stopping, self.step, reason=name))
        self.interval = torch.zeros(len(LOSSES), device=gan.device)  # loss sums since the last metrics line
        self.interval_steps, self.interval_start = 0, time.perf_counter()
        self.clock = StepClock(gan.device)  # where the interval's time went
        self.process = psutil.Process()

    def fit(self) -> str:
        """Train until the target step or a stop request; returns 'finished' or 'stopped'."""
        s = self.cfg.schedule
        with self.requests.installed():
            self.clock.waiting()
            while not self.done():
                for mel, audio in self.data.loader(self.epoch, self.batch_in_epoch, self.world.rank, self.world.size):
                    self.clock.batch_ready()
                    logs_now = (self.step + 1) % s.log_every == 0
                    out = self.gan.step(mel, audio, measure_grads=logs_now, step=self.step, epoch=self.epoch, clock=self.clock)
                    out.losses = self.requests.take(out.losses)
                    finite = bool(torch.isfinite(out.losses).all())  # the host waits for the step here
                    self.clock.step_done()
                    if not finite:
                        self.roll_back()
                        self.clock.waiting()
                        continue
                    self.advance(out.losses)
                    if logs_now:
                        self.write_metrics(out)
                    self.validate_and_checkpoint_when_due()
                    if self.done():
                        break
                    self.clock.waiting()
                if self.batch_in_epoch >= self.data.batches_per_epoch:
                    self.end_epoch()
        return self.finish()

    def done(self) -> bool:
        return self.step >= self.target_step or self.requests.stop_reason is not None

    def advance(self, losses: torch.Tensor) -> None:
        self.nan_strikes = 0
        self.step += 1
        self.batch_in_epoch += 1
        self.interval += losses
        self.interval_steps += 1

    def end_epoch(self) -> None:
        self.gan.end_epoch()
        self.epoch += 1
        self.batch_in_epoch = 0

    def validate_and_checkpoint_when_due(self) -> None:
        s, asked = self.cfg.schedule, self.requests.asked
        milestone = self.step in s.milestones
        scheduled = self.step % s.checkpoint_every == 0 or milestone
        validating = self.step % s.validate_every == 0 or scheduled or asked.validation
        scoring = s.quality_due(self.step, validating, checkpointing=scheduled or asked.checkpoint)
        if validating or scoring:
            asked.validation = False
            self.artifacts.validate(self.gan, self.data, self.step, score=scoring)
        if scheduled or asked.checkpoint:
            self.save_checkpoint("milestone" if milestone else "requested" if asked.checkpoint else "scheduled")
            asked.checkpoint = False
            if milestone:
                self.artifacts.event(Milestone, self.step, milestone=self.step)

    def finish(self) -> str:
        stop_reason = self.requests.stop_reason
        if self.checkpointed_step != self.step:
            self.save_checkpoint("stop" if stop_reason else "final")
        if stop_reason is not None and self.step < self.target_step:
            self.artifacts.event(Stopped, self.step, reason=stop_reason)
            log.info("stopped at step %d (%s)", self.step, stop_reason)
            return "stopped"
        self.artifacts.event(Finished, self.step, target_step=self.target_step)
        log.info("finished: reached step %d", self.step)
        return "finished"

    # ----------------------------------------------------------------------------- metrics

    def start_interval(self) -> None:
        self.interval.zero_()
        self.interval_steps, self.interval_start = 0, time.perf_counter()
        self.clock.reset()

    def write_metrics(self, out) -> None:
        elapsed = time.perf_counter() - self.interval_start
        means = {name: mean for name, mean in zip(LOSSES, (self.interval / self.interval_steps).tolist())
                 if name in self.gan.trained_losses}
        record = Metrics(time=time.time(), step=self.step, epoch=self.epoch, **means, lr=self.gan.lr,
                         steps_per_s=self.interval_steps / elapsed if elapsed > 0 else None,
                         grad_norm_g=out.grad_norm_g.item(), grad_norm_d=out.grad_norm_d.item(),
                         **self.clock.per_step(self.interval_steps, elapsed), rss_bytes=self.process.memory_info().rss)
        self.artifacts.write_metrics(record)
        log.info("step %d/%d  epoch %d  loss_g %.3f  loss_d %.3f  mel %.4f  %.2f steps/s",
                 self.step, self.target_step, self.epoch, record.loss_g, record.loss_d, record.loss_mel,
                 record.steps_per_s or 0.0)
        self.start_interval()

    # ------------------------------------------------------------------ state and rollback

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "time": time.time(),
            "val_mel": self.artifacts.val_at(self.step),
            "quality": self.artifacts.quality_at(self.step),
            **self.gan.state_dict(),
            "rng": ckpt.rng_state(),
            "config": self.cfg.to_dict(),
            "signature": self.cfg.model_signature(),
        }

    def save_checkpoint(self, reason: str) -> None:
        self.checkpointed_step = self.step
        self.artifacts.save_checkpoint(self.state_dict() if self.world.is_main else {}, reason)

    def load_state(self, state: dict[str, Any], source: Path) -> None:
        """Continue from ``state``: one of our checkpoints, or a jik876 g_/do_ pair."""
        try:
            self.gan.load_weights(state)
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"cannot resume from {source}: its weights do not fit this config ({first[:200]})") from None
        self.step = self.checkpointed_step = int(state.get("step", 0))
        self.epoch = int(state.get("epoch", 0))
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        if ckpt.is_ours(state):
            self.gan.load_schedule(state)
            ckpt.restore_rng_state(state["rng"])
            if state.get("val_mel") is not None:
                self.artifacts.last_validation = (self.step, state["val_mel"])
            if state.get("quality") is not None:
                self.artifacts.last_quality = (self.step, state["quality"])
        else:
            self.gan.continue_schedule_at(self.epoch)

    def roll_back(self) -> None:
        """After a non-finite loss: weights and optimiser moments from the last good checkpoint, the
        offending batch skipped, the data order and the learning-rate schedule going on."""
        self.nan_strikes += 1
        bad_epoch, bad_batch = self.epoch, self.batch_in_epoch
        self.batch_in_epoch += 1
        if self.nan_strikes >= MAX_NAN_STRIKES:
            raise NonFiniteLoss(f"non-finite loss on {self.nan_strikes} batches in a row (last: epoch {bad_epoch}, batch {bad_batch})")
        found = ckpt.latest_valid(self.run)
        if found is None:
            raise NonFiniteLoss(f"non-finite loss at step {self.step + 1}, before any checkpoint to roll back to")
        path, state = found
        self.gan.load_weights(state, keep_lr=True)
        self.gan.scaler.load_state_dict(state["scaler"])
        failed_step = self.step + 1
        self.step = int(state["step"])
        self.artifacts.event(NanRollback, self.step, failed_step=failed_step, checkpoint=str(path.relative_to(self.run.root)),
                             skipped_batch=SkippedBatch(epoch=bad_epoch, batch=bad_batch), strikes=self.nan_strikes)
        log.warning("non-finite loss at step %d: rolled back to %s, skipped batch %d of epoch %d",
                    failed_step, path.name, bad_batch, bad_epoch)
        self.start_interval()

    def crashed(self, exc: BaseException) -> None:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        self.artifacts.event(Crashed, self.step, reason=reason, traceback=traceback.format_exc())
        log.error("crashed at step %d: %s\n%s", self.step, reason, traceback.format_exc())

    def close(self) -> None:
        self.artifacts.close()
