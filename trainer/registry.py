"""The generator and discriminator kinds a config can name (``generator.type``,
``discriminator.kinds``), each mapped to the module that builds it.

A new kind is a module of its own, registered here; training, synthesis and the plan's parameter
count pick it up from the config with no branch of their own.
"""

from __future__ import annotations

import torch

from trainer.config import DISCRIMINATOR_KINDS, GENERATOR_TYPES, Config
from trainer.models import Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator

GENERATORS = {"hifigan": lambda cfg: Generator(cfg.generator, cfg.audio.num_mels)}
# In the reference's order (MSD, then MPD): its discriminator optimiser state lists their
# parameters so, and the losses are summed so, which keeps fp32 results equal to it bit for bit.
DISCRIMINATORS = {"msd": lambda cfg: MultiScaleDiscriminator(cfg.discriminator),
                  "mpd": lambda cfg: MultiPeriodDiscriminator(cfg.discriminator)}
assert tuple(GENERATORS) == GENERATOR_TYPES and tuple(DISCRIMINATORS) == DISCRIMINATOR_KINDS


def build_generator(cfg: Config) -> torch.nn.Module:
    return GENERATORS[cfg.generator.type](cfg)


def build_discriminators(cfg: Config) -> dict[str, torch.nn.Module]:
    """The discriminators ``discriminator.kinds`` names, by name, in the registry's order."""
    return {name: build(cfg) for name, build in DISCRIMINATORS.items() if name in cfg.discriminator.kinds}
