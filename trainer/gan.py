"""What is trained and how one step updates it: the generator and discriminators the config names
(see trainer/registry.py), their optimisers and schedules, and the reference's update (D step,
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
from trainer.losses import discriminator_loss, feature_loss, generator_loss
from trainer.mel import loss_mel
from trainer.records import LOSSES
from trainer.registry import build_discriminators, build_generator

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
        self.scheduler_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=t.lr_decay)
        self.scheduler_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=t.lr_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
        self.loss_mel = loss_mel(cfg.audio).to(device)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)

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

    def step(self, mel: torch.Tensor, audio: torch.Tensor, measure_grads: bool) -> StepResult:
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
            scores = [d(y, y_g_hat.detach()) for d in self.train_ds.values()]
            loss_d = total([discriminator_loss(real, fake) for real, fake, _, _ in scores])
        self.scaler.scale(loss_d).backward()
        grad_norm_d = self._unscale_and_clip(self.optim_d, measure_grads)
        self.scaler.step(self.optim_d)

        self.optim_g.zero_grad(set_to_none=True)
        mel_l1 = F.l1_loss(y_mel, y_g_hat_mel)
        with self.autocast(), frozen(*self.discriminators.values()):
            # Frozen discriminators: autograd records no graph for the real branch and computes no
            # weight gradients (the reference computes both and discards them). The plain modules,
            # not their DDP wrappers, because there are no gradients here for DDP to reduce.
            scores = [d(y, y_g_hat) for d in self.discriminators.values()]
            adv = [generator_loss(fake) * lam.lambda_adv for _, fake, _, _ in scores]
            fm = [feature_loss(fmap_r, fmap_g) * lam.lambda_fm for _, _, fmap_r, fmap_g in scores]
            loss_g = total([*adv, *fm, mel_l1 * lam.lambda_mel])
        self.scaler.scale(loss_g).backward()
        grad_norm_g = self._unscale_and_clip(self.optim_g, measure_grads)
        self.scaler.step(self.optim_g)
        self.scaler.update()

        losses = torch.stack([loss_g, loss_d, mel_l1, total(adv), total(fm)]).detach().float()
        assert len(losses) == len(LOSSES)
        return StepResult(losses, grad_norm_g, grad_norm_d) if measure_grads else StepResult(losses)

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

    def load_schedule(self, state: dict[str, Any]) -> None:
        """Schedulers and scaler from one of our checkpoints."""
        self.scheduler_g.load_state_dict(state["scheduler_g"])
        self.scheduler_d.load_state_dict(state["scheduler_d"])
        self.scaler.load_state_dict(state["scaler"])

    def continue_schedule_at(self, epoch: int) -> None:
        """A jik876 checkpoint has no scheduler state: its optimiser state already holds the
        learning rate decayed once per finished epoch, so the schedulers only learn the epoch."""
        for scheduler in (self.scheduler_g, self.scheduler_d):
            scheduler.last_epoch = epoch
