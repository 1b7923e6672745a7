"""The training loop: the reference's update order (D step, then G step), logging, validation,
checkpoints and signals.

A checkpoint holds every piece of state the loop reads (models, optimisers, schedulers, grad scaler,
step, epoch, position in the epoch, RNG states), and the data order is a pure function of the seed,
the epoch and the position, so k steps + stop + resume to N equals N steps straight, bit for bit.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import shutil
import signal
import time
import traceback
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from trainer import checkpoint as ckpt
from trainer.allocator import keep_freed_memory
from trainer.audio import write_wav
from trainer.config import Config, signature_mismatch
from trainer.data import VocoderData
from trainer.distributed import World
from trainer.errors import UserError
from trainer.losses import discriminator_loss, feature_loss, generator_loss
from trainer.mel import loss_mel
from trainer.models import Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator
from trainer.spectrogram_png import write_comparison
from vocodertui.rundir import JsonlWriter, RunPaths, checkpoint_name, read_jsonl, sample_dir_name

log = logging.getLogger("trainer")

METRIC_NAMES = ("loss_g", "loss_d", "loss_mel", "loss_adv", "loss_fm")
MAX_NAN_STRIKES = 3


class NonFiniteLoss(UserError):
    """Training diverged: non-finite losses on consecutive batches even after rolling back."""


@contextlib.contextmanager
def frozen(*modules: torch.nn.Module):
    """Parameters of ``modules`` need no gradient inside the block."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("training.device is 'cuda' but torch sees no CUDA device (CPU build or no GPU)")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: Config, run: RunPaths, data: VocoderData, target_step: int, world: World = World()):
        self.cfg = cfg
        self.run = run
        self.data = data
        self.target_step = target_step
        self.world = world
        t = cfg.training
        self.device = pick_device(t.device)
        if self.device.type == "cuda" and world.distributed:
            self.device = torch.device("cuda", world.local_rank)
        if t.precision == "fp16" and self.device.type != "cuda":
            raise UserError("training.precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        threads = t.threads or torch.get_num_threads()
        if world.distributed and self.device.type == "cpu":
            # the processes on this machine share its cores
            threads = max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
        torch.set_num_threads(threads)
        keep_freed_memory()

        torch.manual_seed(t.seed)
        self.generator = Generator(cfg.generator, cfg.audio.num_mels).to(self.device)
        self.mpd = MultiPeriodDiscriminator(cfg.discriminator).to(self.device)
        self.msd = MultiScaleDiscriminator(cfg.discriminator).to(self.device)
        # what the training step calls: the modules themselves, or their DDP wrappers under torchrun
        self.train_g, self.train_mpd, self.train_msd = self.generator, self.mpd, self.msd
        if world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_g, self.train_mpd, self.train_msd = (
                DistributedDataParallel(m, device_ids=ids) for m in (self.generator, self.mpd, self.msd)
            )
        betas = (t.adam_b1, t.adam_b2)
        self.optim_g = torch.optim.AdamW(self.generator.parameters(), t.learning_rate_g, betas=betas)
        # same parameter order as the reference (MSD, then MPD), so its optimiser states load
        self.optim_d = torch.optim.AdamW(
            itertools.chain(self.msd.parameters(), self.mpd.parameters()), t.learning_rate_d, betas=betas
        )
        self.scheduler_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=t.lr_decay)
        self.scheduler_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=t.lr_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self.loss_mel = loss_mel(cfg.audio).to(self.device)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.last_validation: Optional[tuple[int, float]] = None
        self.checkpoint_vals: dict[int, Optional[float]] = {}
        # What the signal handlers record, and what the loop has decided from it after a step
        # (under torchrun, decided together by all ranks, so that they act on the same step).
        self.stop_signal: Optional[str] = None
        self.checkpoint_signals = self.checkpoint_signals_taken = 0
        self.validation_signals = self.validation_signals_taken = 0
        self.stop_reason: Optional[str] = None
        self.checkpoint_requested = False
        self.validation_requested = False
        self.checkpointed_step = -1
        self.nan_strikes = 0
        # rank 0 alone writes the run directory
        self.metrics = JsonlWriter(run.metrics) if world.is_main else None
        self.events = JsonlWriter(run.events) if world.is_main else None

    # ----------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "time": time.time(),
            "val_mel": self._val_at(self.step),
            "generator": self.generator.state_dict(),
            "mpd": self.mpd.state_dict(),
            "msd": self.msd.state_dict(),
            "optim_g": self.optim_g.state_dict(),
            "optim_d": self.optim_d.state_dict(),
            "scheduler_g": self.scheduler_g.state_dict(),
            "scheduler_d": self.scheduler_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "config": self.cfg.to_dict(),
            "signature": self.cfg.model_signature(),
        }

    def load_state(self, state: dict[str, Any], source: Path) -> None:
        """Continue from ``state``: one of our checkpoints, or a jik876 g_/do_ pair."""
        if "signature" in state:
            mismatch = signature_mismatch(state["signature"], self.cfg.model_signature())
            if mismatch:
                raise UserError(f"cannot resume from {source}: {mismatch}")
        try:
            self.generator.load_state_dict(state["generator"])
            if "mpd" in state:
                self.mpd.load_state_dict(state["mpd"])
                self.msd.load_state_dict(state["msd"])
                self.optim_g.load_state_dict(state["optim_g"])
                self.optim_d.load_state_dict(state["optim_d"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"cannot resume from {source}: its weights do not fit this config ({first[:200]})") from None
        self.step = int(state.get("step", 0))
        self.checkpointed_step = self.step
        self.epoch = int(state.get("epoch", 0))
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        if ckpt.is_ours(state):
            self.scheduler_g.load_state_dict(state["scheduler_g"])
            self.scheduler_d.load_state_dict(state["scheduler_d"])
            self.scaler.load_state_dict(state["scaler"])
            ckpt.restore_rng_state(state["rng"])
            if state.get("val_mel") is not None:
                self.last_validation = (self.step, state["val_mel"])
        else:
            # jik876's optimiser state already holds the lr decayed once per finished epoch
            for sched in (self.scheduler_g, self.scheduler_d):
                sched.last_epoch = self.epoch

    def load_checkpoint_table(self) -> None:
        """Validation scores of the checkpoints already on disk, from the events log."""
        on_disk = {step for step, _ in self.run.checkpoint_files()}
        for record in read_jsonl(self.run.events):
            if record.get("event") == "checkpoint" and record.get("step") in on_disk:
                self.checkpoint_vals[record["step"]] = record.get("val_mel")

    # ------------------------------------------------------------------------------- training

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, mel: torch.Tensor, audio: torch.Tensor, measure_grads: bool) -> dict[str, torch.Tensor]:
        """One D update then one G update on a batch; returns detached losses (and grad norms if asked)."""
        lam = self.cfg.training
        mel = mel.to(self.device, non_blocking=True)
        audio = audio.to(self.device, non_blocking=True)
        y = audio.unsqueeze(1)
        with self.autocast():
            y_g_hat = self.train_g(mel)
        y_mel = self.loss_mel(audio)
        y_g_hat_mel = self.loss_mel(y_g_hat.squeeze(1))

        self.optim_d.zero_grad(set_to_none=True)
        with self.autocast():
            p_real, p_fake, _, _ = self.train_mpd(y, y_g_hat.detach())
            s_real, s_fake, _, _ = self.train_msd(y, y_g_hat.detach())
            loss_d = discriminator_loss(s_real, s_fake) + discriminator_loss(p_real, p_fake)
        self.scaler.scale(loss_d).backward()
        grad_norm_d = self._unscale_and_clip(self.optim_d, measure_grads)
        self.scaler.step(self.optim_d)

        self.optim_g.zero_grad(set_to_none=True)
        mel_l1 = F.l1_loss(y_mel, y_g_hat_mel)
        with self.autocast(), frozen(self.mpd, self.msd):
            # Frozen discriminators: autograd records no graph for the real branch and computes no
            # weight gradients (the reference computes both and discards them). The plain modules,
            # not their DDP wrappers, because there are no gradients here for DDP to reduce.
            _, p_fake, p_fmap_r, p_fmap_g = self.mpd(y, y_g_hat)
            _, s_fake, s_fmap_r, s_fmap_g = self.msd(y, y_g_hat)
            adv_s = generator_loss(s_fake) * lam.lambda_adv
            adv_p = generator_loss(p_fake) * lam.lambda_adv
            fm_s = feature_loss(s_fmap_r, s_fmap_g) * lam.lambda_fm
            fm_p = feature_loss(p_fmap_r, p_fmap_g) * lam.lambda_fm
            # summed in the reference's order, so fp32 results match it bit for bit
            loss_g = adv_s + adv_p + fm_s + fm_p + mel_l1 * lam.lambda_mel
        self.scaler.scale(loss_g).backward()
        grad_norm_g = self._unscale_and_clip(self.optim_g, measure_grads)
        self.scaler.step(self.optim_g)
        self.scaler.update()

        losses = torch.stack([loss_g, loss_d, mel_l1, adv_s + adv_p, fm_s + fm_p]).detach().float()
        out = {"losses": losses}
        if measure_grads:
            out["grad_norm_g"] = grad_norm_g
            out["grad_norm_d"] = grad_norm_d
        return out

    def _unscale_and_clip(self, optimizer: torch.optim.Optimizer, measure: bool) -> Optional[torch.Tensor]:
        clip = self.cfg.training.grad_clip
        if clip is None and not measure:
            return None
        self.scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if clip is not None:
            return torch.nn.utils.clip_grad_norm_(params, clip)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))

    def end_epoch(self) -> None:
        self.scheduler_g.step()
        self.scheduler_d.step()
        self.epoch += 1
        self.batch_in_epoch = 0

    # ------------------------------------------------------------------------------ bookkeeping

    def event(self, name: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.write({"time": time.time(), "event": name, "step": self.step, **fields})

    def _val_at(self, step: int) -> Optional[float]:
        if self.last_validation and self.last_validation[0] == step:
            return self.last_validation[1]
        return None

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
        lrs = [self.optim_g.param_groups[0]["lr"], self.optim_d.param_groups[0]["lr"]]
        self.generator.load_state_dict(state["generator"])
        self.mpd.load_state_dict(state["mpd"])
        self.msd.load_state_dict(state["msd"])
        for optimizer, lr in zip((self.optim_g, self.optim_d), lrs):
            optimizer.load_state_dict(state["optim_g" if optimizer is self.optim_g else "optim_d"])
            for group in optimizer.param_groups:
                group["lr"] = lr
        self.scaler.load_state_dict(state["scaler"])
        failed_step = self.step + 1
        self.step = int(state["step"])
        self.event("nan_rollback", failed_step=failed_step, checkpoint=str(path.relative_to(self.run.root)),
                   skipped_batch={"epoch": bad_epoch, "batch": bad_batch}, strikes=self.nan_strikes)
        log.warning("non-finite loss at step %d: rolled back to %s, skipped batch %d of epoch %d",
                    failed_step, path.name, bad_batch, bad_epoch)

    def validate(self) -> None:
        if self.world.is_main:
            self._validate()
        self.world.barrier()

    @torch.no_grad()
    def _validate(self) -> float:
        started = time.time()
        self.generator.eval()
        errors = []
        n_samples = self.cfg.schedule.val_samples
        final_dir = self.run.samples / sample_dir_name(self.step)
        tmp_dir = self.run.samples / f".{final_dir.name}.tmp"
        if n_samples:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            tmp_dir.mkdir(parents=True)
        for i, utt in enumerate(self.data.val):
            mel, audio = self.data.validation_item(utt)
            y_g_hat = self.generator(mel.to(self.device)).squeeze(1).float()
            real = self.loss_mel(audio.to(self.device))
            fake = self.loss_mel(y_g_hat)
            errors.append(F.l1_loss(real, fake).item())
            if i < n_samples:
                write_wav(tmp_dir / f"{utt.id}.wav", y_g_hat[0].cpu().numpy(), self.cfg.audio.sampling_rate)
                write_comparison(tmp_dir / f"{utt.id}.png", real[0].cpu().numpy(), fake[0].cpu().numpy())
        self.generator.train()
        if n_samples:
            shutil.rmtree(final_dir, ignore_errors=True)
            os.replace(tmp_dir, final_dir)
        val_mel = sum(errors) / len(errors)
        self.last_validation = (self.step, val_mel)
        self.event(
            "validation", val_mel=val_mel, seconds=round(time.time() - started, 3),
            samples=str(final_dir.relative_to(self.run.root)) if n_samples else None,
        )
        log.info("step %d: validation mel-L1 %.4f", self.step, val_mel)
        return val_mel

    def save_checkpoint(self, reason: str) -> None:
        self.checkpointed_step = self.step
        if self.world.is_main:
            self._save_checkpoint(reason)
        self.world.barrier()  # every rank may need the file (a rollback reads it)

    def _save_checkpoint(self, reason: str) -> None:
        path = self.run.checkpoints / checkpoint_name(self.step)
        self.run.checkpoints.mkdir(exist_ok=True)
        state = self.state_dict()
        size = ckpt.save_atomic(state, path)
        self.checkpoint_vals[self.step] = state["val_mel"]
        self.event(
            "checkpoint", path=str(path.relative_to(self.run.root)), size=size, val_mel=state["val_mel"],
            epoch=self.epoch, reason=reason,
        )
        log.info("step %d: checkpoint %s (%s)", self.step, path.name, reason)
        self._prune_checkpoints()

    def _prune_checkpoints(self) -> None:
        """Keep the last ``keep_last`` checkpoints, the best by validation mel-L1, and every milestone."""
        steps = sorted(self.checkpoint_vals)
        keep = set(steps[-self.cfg.schedule.keep_last :]) | set(self.cfg.schedule.milestones)
        scored = [(v, s) for s, v in self.checkpoint_vals.items() if v is not None and math.isfinite(v)]
        if scored:
            keep.add(min(scored)[1])
        for step in steps:
            if step not in keep:
                (self.run.checkpoints / checkpoint_name(step)).unlink(missing_ok=True)
                del self.checkpoint_vals[step]

    def _write_metrics(self, sums: torch.Tensor, count: int, elapsed: float, grads: dict[str, torch.Tensor]) -> None:
        means = (sums / count).tolist()
        record = {"time": time.time(), "step": self.step, "epoch": self.epoch}
        record.update(zip(METRIC_NAMES, means))
        record["lr"] = self.optim_g.param_groups[0]["lr"]
        record["steps_per_s"] = count / elapsed if elapsed > 0 else None
        record["grad_norm_g"] = grads["grad_norm_g"].item()
        record["grad_norm_d"] = grads["grad_norm_d"].item()
        if self.metrics is not None:
            self.metrics.write(record)
        log.info(
            "step %d/%d  epoch %d  loss_g %.3f  loss_d %.3f  mel %.4f  %.2f steps/s",
            self.step, self.target_step, self.epoch, record["loss_g"], record["loss_d"], record["loss_mel"],
            record["steps_per_s"] or 0.0,
        )

    # ---------------------------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> dict[int, Any]:
        def stop(signum, _frame):
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops without the checkpoint
            if self.stop_signal is None:
                self.stop_signal = signal.Signals(signum).name
                self.event("stopping", reason=self.stop_signal)

        def want_checkpoint(_signum, _frame):
            self.checkpoint_signals += 1

        def want_validation(_signum, _frame):
            self.validation_signals += 1

        handlers = {signal.SIGINT: stop, signal.SIGTERM: stop, signal.SIGUSR1: want_checkpoint,
                    signal.SIGUSR2: want_validation}
        return {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}

    # ------------------------------------------------------------------------------------- run

    def fit(self) -> str:
        """Train until ``target_step`` or a stop signal; returns 'finished' or 'stopped'."""
        previous = self._install_signal_handlers()
        try:
            return self._fit()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _fit(self) -> str:
        s = self.cfg.schedule
        milestones = set(s.milestones)
        sums = torch.zeros(len(METRIC_NAMES), device=self.device)
        count, interval_start = 0, time.perf_counter()
        while self.step < self.target_step and self.stop_reason is None:
            for mel, audio in self.data.loader(self.epoch, self.batch_in_epoch, self.world.rank, self.world.size):
                measure = (self.step + 1) % s.log_every == 0
                out = self.train_step(mel, audio, measure)
                self._take_requests(out)
                if not torch.isfinite(out["losses"]).all():
                    self.roll_back()
                    sums.zero_()
                    count, interval_start = 0, time.perf_counter()
                    continue
                self.nan_strikes = 0
                self.step += 1
                self.batch_in_epoch += 1
                sums += out["losses"]
                count += 1
                if measure:
                    self._write_metrics(sums, count, time.perf_counter() - interval_start, out)
                    sums.zero_()
                    count, interval_start = 0, time.perf_counter()

                scheduled_checkpoint = self.step % s.checkpoint_every == 0 or self.step in milestones
                if self.step % s.validate_every == 0 or scheduled_checkpoint or self.validation_requested:
                    self.validation_requested = False
                    self.validate()
                if scheduled_checkpoint or self.checkpoint_requested:
                    reason = "milestone" if self.step in milestones else "requested" if self.checkpoint_requested else "scheduled"
                    self.checkpoint_requested = False
                    self.save_checkpoint(reason)
                    if self.step in milestones:
                        self.event("milestone", milestone=self.step)
                if self.step >= self.target_step or self.stop_reason is not None:
                    break
            if self.batch_in_epoch >= self.data.batches_per_epoch:
                self.end_epoch()

        if self.checkpointed_step != self.step:
            self.save_checkpoint("stop" if self.stop_reason else "final")
        if self.stop_reason is not None and self.step < self.target_step:
            self.event("stopped", reason=self.stop_reason)
            log.info("stopped at step %d (%s)", self.step, self.stop_reason)
            return "stopped"
        self.event("finished", target_step=self.target_step)
        log.info("finished: reached step %d", self.step)
        return "finished"

    def _take_requests(self, out: dict[str, torch.Tensor]) -> None:
        """Turn the signals received so far into decisions for this step. Under torchrun one
        all-reduce per step averages the losses and makes any rank's request every rank's (rank 0
        receives the signals), so that all ranks stop, checkpoint and validate on the same step."""
        checkpoints, validations = self.checkpoint_signals, self.validation_signals
        flags = [self.stop_signal is not None, checkpoints > self.checkpoint_signals_taken,
                 validations > self.validation_signals_taken]
        self.checkpoint_signals_taken, self.validation_signals_taken = checkpoints, validations
        if self.world.distributed:
            local = torch.tensor(flags, dtype=torch.float32, device=self.device)
            synced = self.world.all_reduce_sum(torch.cat([out["losses"], local]))
            out["losses"] = synced[: len(METRIC_NAMES)] / self.world.size
            flags = (synced[len(METRIC_NAMES) :] > 0).tolist()
        stop, checkpoint, validation = flags
        if stop and self.stop_reason is None:
            self.stop_reason = self.stop_signal or "stop on rank 0"
        self.checkpoint_requested = self.checkpoint_requested or checkpoint
        self.validation_requested = self.validation_requested or validation

    def crashed(self, exc: BaseException) -> None:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        self.event("crashed", reason=reason, traceback=traceback.format_exc())
        log.error("crashed at step %d: %s\n%s", self.step, reason, traceback.format_exc())

    def close(self) -> None:
        for writer in (self.metrics, self.events):
            if writer is not None:
                writer.close()


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
