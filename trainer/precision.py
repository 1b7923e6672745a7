"""``training.precision: auto``: time a few training steps in fp32 and under bf16 autocast on the
machine at hand and train in the faster.

bf16 is not faster everywhere: it needs the CPU's bf16 instructions (avx512_bf16, AMX) or a GPU that
has them, and even then oneDNN may convert layouts around every convolution. Only a measurement of
this recipe, at this batch and segment size, on this machine, says which wins.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from statistics import median

import torch

from trainer.config import Config
from trainer.distributed import World
from trainer.gan import Gan

log = logging.getLogger("trainer")

CANDIDATES = ("fp32", "bf16")
WARMUP_STEPS = 1  # first steps allocate, pick kernels and (oneDNN) prepare weights: not timed
TIMED_STEPS = 3


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    step_seconds: dict[str, float]  # median seconds per training step, per candidate

    def describe(self) -> str:
        timings = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in self.step_seconds.items())
        return f"precision auto: {self.precision} (per training step: {timings})"


def with_precision(cfg: Config, precision: str) -> Config:
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, precision=precision))


def choose_precision(cfg: Config, device: torch.device, world: World = World()) -> PrecisionChoice:
    """Time ``TIMED_STEPS`` steps of each candidate on a random batch of the training shape, after
    ``WARMUP_STEPS``, on throw-away networks; every rank takes the same decision (the timings are
    summed over the ranks). The random-number state is restored, so the run that follows
    initialises exactly as it would with its precision set in the config."""
    t, a = cfg.training, cfg.audio
    per_rank = t.batch_size // world.size
    frames = t.segment_size // a.hop_size
    seconds = {}
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        mel = torch.randn(per_rank, a.num_mels, frames) - 5.0
        audio = torch.randn(per_rank, frames * a.hop_size).clamp(-1, 1) * 0.3
        for precision in CANDIDATES:
            gan = Gan(with_precision(cfg, precision), device)  # no DDP: each rank times its own share
            times = []
            for step in range(WARMUP_STEPS + TIMED_STEPS):
                _synchronize(device)
                start = time.perf_counter()
                gan.step(mel, audio, measure_grads=False, step=max(step, t.discriminator_start_step))
                _synchronize(device)
                times.append(time.perf_counter() - start)
            seconds[precision] = median(times[WARMUP_STEPS:])
            del gan
    summed = world.all_reduce_sum(torch.tensor([seconds[p] for p in CANDIDATES], dtype=torch.float64, device=device))
    seconds = {p: s / world.size for p, s in zip(CANDIDATES, summed.tolist())}
    return PrecisionChoice(min(CANDIDATES, key=seconds.__getitem__), seconds)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
