"""The config picks the networks: generator.type and discriminator.kinds, through the registry."""

import pytest
import torch

from trainer.config import config_from_dict, load_config, signature_mismatch
from trainer.errors import UserError
from trainer.gan import Gan
from trainer.mel import input_mel


def small_demo():
    cfg = load_config("demo")
    cfg.training.batch_size, cfg.training.segment_size = 2, 2048
    return cfg


def test_the_discriminators_are_the_ones_the_config_names():
    cfg = small_demo()
    cfg.discriminator.kinds = ["mpd"]
    gan = Gan(cfg, torch.device("cpu"))
    assert list(gan.discriminators) == ["mpd"]
    audio = (torch.rand(2, 2048) * 2 - 1) * 0.5
    out = gan.step(input_mel(cfg.audio)(audio), audio, measure_grads=True)
    assert torch.isfinite(out.losses).all() and out.grad_norm_d > 0
    state = gan.state_dict()
    assert "mpd" in state and "msd" not in state
    both = Gan(small_demo(), torch.device("cpu"))
    assert list(both.discriminators) == ["msd", "mpd"]  # the reference's order, whatever the config's


@pytest.mark.parametrize("section,message", [
    ({"generator": {"type": "wavenet"}}, "generator.type must be one of hifigan, bigvgan"),
    ({"discriminator": {"kinds": ["msd", "msd"]}}, "discriminator.kinds must list some of msd, mpd, mrd, cqt, each once"),
    ({"discriminator": {"kinds": []}}, "discriminator.kinds must list some of"),
])
def test_unknown_kinds_are_one_line_errors(section, message):
    with pytest.raises(UserError, match=message):
        config_from_dict(section)


def test_a_checkpoint_from_before_the_kind_keys_still_fits():
    current = load_config("demo").model_signature()
    older = {section: {k: v for k, v in values.items() if k not in ("type", "kinds")} for section, values in current.items()}
    assert signature_mismatch(older, current) is None
    older["discriminator"]["periods"] = [2, 3]
    assert "discriminator.periods" in signature_mismatch(older, current)
