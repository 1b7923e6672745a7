"""What is trained and how one step updates it: the generator and discriminators the config names
(see trainer/registry.py), their optimisers and learning-rate schedules (trainer/schedules.py),
the losses the config picks (loss.gan, loss.mel, loss.stft), and the reference's update (D step,
then G step), summed over whatever discriminators there are.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from trainer.config import Config
from trainer.distributed import World
from trainer.losses import GAN_LOSSES, feature_loss
from trainer.mel import loss_mel
from trainer.mrstft import MultiResolutionSTFT, Resolution
from trainer.multiscale_mel import MultiScaleMelLoss
from trainer.records import LOSSES
from trainer.registry import build_discriminators, build_generator
from trainer.schedules import LearningRateSchedule
from trainer.step_clock import StepClock


def _unmarked(phase: str) -> None:
    """The mark of a step nobody times."""


def total(terms: list[torch.Tensor]) -> torch.Tensor:
    """``terms[0] + terms[1] + ...`` left to right, as the reference writes its sums."""
    return functools.reduce(operator.add, terms)


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


@dataclass
class StepResult:
    losses: torch.Tensor  # detached, in the order of records.LOSSES
    grad_norm_g: Optional[torch.Tensor] = None
    grad_norm_d: Optional[torch.Tensor] = None


class Gan:
    """The networks, optimisers, schedulers and grad scaler of one training process."""

    def __init__(self, cfg: Config, device: torch.device, world: World = World()):
        t = cfg.training
        self.cfg = cfg
        self.device = device
        self.generator = build_generator(cfg).to(device)
        self.discriminators = {name: d.to(device) for name, d in build_discriminators(cfg).items()}
        # what the D step calls: the modules themselves, or their DDP wrappers under torchrun
        self.train_g, self.train_ds = self.generator, dict(self.discriminators)
        if world.distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.train_g = DistributedDataParallel(self.generator, device_ids=ids)
            self.train_ds = {name: DistributedDataParallel(d, device_ids=ids) for name, d in self.discriminators.items()}
        betas = (t.adam_b1, t.adam_b2)
        self.optim_g = torch.optim.AdamW(self.generator.parameters(), t.learning_rate_g, betas=betas)
        self.optim_d = torch.optim.AdamW(
            itertools.chain(*(d.parameters() for d in self.discriminators.values())), t.learning_rate_d, betas=betas
        )
        self.scheduler_g = LearningRateSchedule(self.optim_g, t)
        self.scheduler_d = LearningRateSchedule(self.optim_d, t)
        self.scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
        self.gan_loss = GAN_LOSSES[cfg.loss.gan]
        self.loss_mel = loss_mel(cfg.audio).to(device)
        self.multi_scale_mel = (MultiScaleMelLoss(cfg.audio.sampling_rate, cfg.loss.mel_scales, cfg.loss.mel_windows).to(device)
                                if cfg.loss.mel == "multi_scale" else None)
        self.mrstft = (MultiResolutionSTFT(tuple(Resolution(*r) for r in cfg.loss.stft_resolutions),
                                           sc_weight=cfg.loss.stft_sc_weight, mag_weight=cfg.loss.stft_mag_weight).to(device)
                       if cfg.loss.stft == "multi_resolution" else None)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)

    @property
    def trained_losses(self) -> tuple[str, ...]:
        """The names in ``records.LOSSES`` this recipe trains with (a metrics line holds just these)."""
        return LOSSES if self.mrstft is not None else tuple(name for name in LOSSES if name != "loss_stft")

    @property
    def lr(self) -> float:
        return self.optim_g.param_groups[0]["lr"]

    def parameter_counts(self) -> tuple[int, int]:
        """Parameters of the generator and of all discriminators together."""
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return count(self.generator), sum(count(d) for d in self.discriminators.values())

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def step(self, mel: torch.Tensor, audio: torch.Tensor, measure_grads: bool, step: int = 0, epoch: int = 0,
             clock: Optional[StepClock] = None) -> StepResult:
        """One D update then one G update on a batch, ``step`` updates into training, in ``epoch``;
        returns detached losses (and grad norms if asked). Before ``discriminator_start_step`` the
        generator learns from the reconstruction losses alone and the discriminators rest. ``clock``
        is told where each phase ends."""
        mark = clock.mark if clock is not None else _unmarked
        lam = self.cfg.training
        adversarial = step >= lam.discriminator_start_step
        self.scheduler_g.before_step(step, epoch)
        self.scheduler_d.before_step(step, epoch)
        mel = mel.to(self.device, non_blocking=True)
        audio = audio.to(self.device, non_blocking=True)
        mark("data")
        y = audio.unsqueeze(1)
        with self.autocast():
            y_g_hat = self.train_g(mel)
        loss_mel, loss_stft = self.reconstruction(y_g_hat.squeeze(1), audio)
        mark("g")

        grad_norm_d = None
        loss_d = audio.new_zeros(())
        if adversarial:
            self.optim_d.zero_grad(set_to_none=True)
            with self.autocast():
                scores = [d(y, y_g_hat.detach()) for d in self.train_ds.values()]
                loss_d = total([self.gan_loss.discriminator(real, fake) for real, fake, _, _ in scores])
            self.scaler.scale(loss_d).backward()
            mark("d")
            grad_norm_d = self._unscale_and_clip(self.optim_d, measure_grads)
            self.scaler.step(self.optim_d)
            mark("optim")

        self.optim_g.zero_grad(set_to_none=True)
        adv, fm = [audio.new_zeros(())], [audio.new_zeros(())]
        with self.autocast(), frozen(*self.discriminators.values()):
            if adversarial:
                # Frozen discriminators: autograd records no graph for the real branch and computes no
                # weight gradients (the reference computes both and discards them). The plain modules,
                # not their DDP wrappers, because there are no gradients here for DDP to reduce.
                scores = [d(y, y_g_hat) for d in self.discriminators.values()]
                adv = [self.gan_loss.generator(fake) * lam.lambda_adv for _, fake, _, _ in scores]
                fm = [feature_loss(fmap_r, fmap_g) * lam.lambda_fm for _, _, fmap_r, fmap_g in scores]
            terms = [*adv, *fm, loss_mel * lam.lambda_mel] if adversarial else [loss_mel * lam.lambda_mel]
            if loss_stft is not None:
                terms.append(loss_stft * lam.lambda_stft)
            loss_g = total(terms)
        self.scaler.scale(loss_g).backward()
        mark("g")
        grad_norm_g = self._unscale_and_clip(self.optim_g, measure_grads)
        self.scaler.step(self.optim_g)
        self.scaler.update()
        mark("optim")

        stft = loss_stft if loss_stft is not None else audio.new_zeros(())
        losses = torch.stack([loss_g, loss_d, loss_mel, total(adv), total(fm), stft]).detach().float()
        assert len(losses) == len(LOSSES)
        if measure_grads and grad_norm_d is None:
            grad_norm_d = audio.new_zeros(())
        return StepResult(losses, grad_norm_g, grad_norm_d) if measure_grads else StepResult(losses)

    def reconstruction(self, generated: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The mel loss (``loss.mel``) and the multi-resolution STFT loss (``loss.stft``, else None).

        Computed before the D step, where the reference computes its mels: the order in which the
        backward pass adds up the generator's gradients then stays the reference's."""
        if self.multi_scale_mel is not None:
            mel = self.multi_scale_mel(generated, reference)
        else:
            mel = F.l1_loss(self.loss_mel(reference), self.loss_mel(generated))
        stft = self.mrstft(generated, reference) if self.mrstft is not None else None
        return mel, stft

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
        self.scheduler_g.end_epoch()
        self.scheduler_d.end_epoch()

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint entries: ``generator``, one per discriminator (``mpd``, ``msd``, as jik876
        names them), the optimisers, schedulers and scaler."""
        return {
            "generator": self.generator.state_dict(),
            **{name: d.state_dict() for name, d in self.discriminators.items()},
            "optim_g": self.optim_g.state_dict(),
            "optim_d": self.optim_d.state_dict(),
            "scheduler_g": self.scheduler_g.state_dict(),
            "scheduler_d": self.scheduler_d.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_weights(self, state: dict[str, Any], keep_lr: bool = False) -> None:
        """Networks and optimiser moments from ``state`` (a generator-only state loads just that);
        ``keep_lr`` keeps the learning rates the optimisers have now (a NaN rollback)."""
        lrs = [self.optim_g.param_groups[0]["lr"], self.optim_d.param_groups[0]["lr"]]
        self.generator.load_state_dict(state["generator"])
        if all(name in state for name in self.discriminators):
            for name, d in self.discriminators.items():
                d.load_state_dict(state[name])
            self.optim_g.load_state_dict(state["optim_g"])
            self.optim_d.load_state_dict(state["optim_d"])
        if keep_lr:
            for optimizer, lr in zip((self.optim_g, self.optim_d), lrs):
                for group in optimizer.param_groups:
                    group["lr"] = lr

    def load_pretrained(self, state: dict[str, Any], parts: list[str]) -> None:
        """Fine-tuning: the networks in ``parts`` from ``state``; the optimisers and schedules stay new."""
        networks = {"generator": self.generator, **self.discriminators}
        for name in parts:
            networks[name].load_state_dict(state[name])

    def load_schedule(self, state: dict[str, Any]) -> None:
        """Schedulers and scaler from one of our checkpoints."""
        self.scheduler_g.load_state_dict(state["scheduler_g"])
        self.scheduler_d.load_state_dict(state["scheduler_d"])
        self.scaler.load_state_dict(state["scaler"])

    def continue_schedule_at(self, epoch: int) -> None:
        """A jik876 checkpoint has no scheduler state: its optimiser state already holds the
        learning rate decayed once per finished epoch, so the schedulers only learn the epoch."""
        for scheduler in (self.scheduler_g, self.scheduler_d):
            scheduler.continue_at(epoch)
