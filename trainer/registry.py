"""The generator and discriminator kinds a config can name (``generator.type``,
``discriminator.kinds``), each mapped to the module that builds it.

A new kind is a module of its own, registered here; training, synthesis and the plan's parameter
count pick it up from the config with no branch of their own.
"""

from __future__ import annotations

import torch

from trainer.config import DISCRIMINATOR_KINDS, GENERATOR_TYPES, Config
from trainer.models import Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator


def _bigvgan(cfg: Config) -> torch.nn.Module:
    from trainer.bigvgan import BigVGAN

    return BigVGAN(cfg.generator, cfg.audio.num_mels)


def _mrd(cfg: Config) -> torch.nn.Module:
    from trainer.mrd import MultiResolutionDiscriminator

    d = cfg.discriminator
    return MultiResolutionDiscriminator(d.mrd_resolutions, d.channel_divisor)


def _cqt(cfg: Config) -> torch.nn.Module:
    from trainer.cqt import MultiScaleSubbandCQTDiscriminator

    d = cfg.discriminator
    return MultiScaleSubbandCQTDiscriminator(
        cfg.audio.sampling_rate, filters=d.cqt_filters, max_filters=d.cqt_max_filters, dilations=tuple(d.cqt_dilations),
        hop_lengths=tuple(d.cqt_hop_lengths), n_octaves=tuple(d.cqt_n_octaves),
        bins_per_octaves=tuple(d.cqt_bins_per_octaves), channel_divisor=d.channel_divisor)


GENERATORS = {"hifigan": lambda cfg: Generator(cfg.generator, cfg.audio.num_mels), "bigvgan": _bigvgan}
# MSD then MPD, the reference's order: its discriminator optimiser state lists their parameters
# so, and the losses are summed so, which keeps fp32 results equal to it bit for bit. MRD and CQT
# follow, as BigVGAN sums them after its MPD.
DISCRIMINATORS = {"msd": lambda cfg: MultiScaleDiscriminator(cfg.discriminator),
                  "mpd": lambda cfg: MultiPeriodDiscriminator(cfg.discriminator),
                  "mrd": _mrd,
                  "cqt": _cqt}
assert tuple(GENERATORS) == GENERATOR_TYPES and tuple(DISCRIMINATORS) == DISCRIMINATOR_KINDS


def build_generator(cfg: Config) -> torch.nn.Module:
    return GENERATORS[cfg.generator.type](cfg)


def build_discriminators(cfg: Config) -> dict[str, torch.nn.Module]:
    """The discriminators ``discriminator.kinds`` names, by name, in the registry's order."""
    return {name: build(cfg) for name, build in DISCRIMINATORS.items() if name in cfg.discriminator.kinds}
