import copy

import pytest
import torch
import torch.nn.functional as F

from trainer.config import load_config
from trainer.models import Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator, ResBlock1


@pytest.mark.parametrize("name", ["hifigan_v1", "hifigan_v2", "hifigan_v3", "hifigan_48k", "demo"])
def test_generator_turns_frames_into_hop_samples_each(name):
    cfg = load_config(name)
    g = Generator(cfg.generator, cfg.audio.num_mels)
    mel = torch.randn(1, cfg.audio.num_mels, 6)
    with torch.no_grad():
        y = g(mel)
        y_ref = reference_generator_forward(copy.deepcopy(g).double(), mel.double())
    assert y.shape == (1, 1, 6 * cfg.audio.hop_size)
    torch.testing.assert_close(y.double(), y_ref, rtol=0, atol=1e-5)


def test_parameter_names_are_jik876s():
    cfg = load_config("hifigan_v1")
    names = set(Generator(cfg.generator, 80).state_dict())
    for expected in ["conv_pre.weight_g", "conv_pre.weight_v", "conv_pre.bias", "ups.0.weight_g", "ups.3.weight_v",
                     "resblocks.0.convs1.0.weight_g", "resblocks.11.convs2.2.weight_v", "conv_post.weight_g"]:
        assert expected in names
    assert not any(n.endswith(".weight") for n in names)
    v3 = load_config("hifigan_v3")
    assert "resblocks.8.convs.1.weight_g" in Generator(v3.generator, 80).state_dict()
    msd = set(MultiScaleDiscriminator(cfg.discriminator).state_dict())
    assert {"discriminators.0.convs.0.weight_orig", "discriminators.0.convs.0.weight_u",
            "discriminators.1.convs.0.weight_g", "discriminators.2.conv_post.weight_v"} <= msd
    mpd = set(MultiPeriodDiscriminator(cfg.discriminator).state_dict())
    assert {"discriminators.4.convs.4.weight_g", "discriminators.0.conv_post.bias"} <= mpd


def test_folding_weight_norm_keeps_the_output():
    cfg = load_config("demo")
    g = Generator(cfg.generator, 80).eval()
    x = torch.randn(1, 80, 10)
    with torch.no_grad():
        before = g(x)
        after = g.fold_weight_norm()(x)
    torch.testing.assert_close(before, after, rtol=0, atol=1e-6)


def test_folded_weights_follow_the_generator_to_another_dtype_or_device_and_stay_out_of_its_state():
    cfg = load_config("demo")
    g = Generator(cfg.generator, 80).eval()
    keys = set(g.state_dict())
    g.fold_weight_norm().to(torch.float64)
    assert set(g.state_dict()) == keys  # a checkpoint keeps weight_g and weight_v only
    with torch.no_grad():
        assert g(torch.randn(1, 80, 10, dtype=torch.float64)).dtype == torch.float64
    assert {p.device.type for p in g.to("meta").buffers()} == {"meta"}


def test_discriminators_score_every_period_and_scale():
    cfg = load_config("demo")
    y = torch.randn(2, 1, 4096) * 0.1
    real, fake, fmap_r, fmap_g = MultiPeriodDiscriminator(cfg.discriminator)(y, y)
    assert len(real) == len(fake) == 5 and all(len(f) == 6 for f in fmap_r)
    real, fake, fmap_r, fmap_g = MultiScaleDiscriminator(cfg.discriminator)(y, y)
    assert len(real) == 3 and all(len(f) == 8 for f in fmap_r)


def reference_generator_forward(g: Generator, x: torch.Tensor) -> torch.Tensor:
    """jik876's Generator.forward, written with F.conv1d / F.conv_transpose1d over g's own weights."""
    def conv(m, x):
        return F.conv1d(x, m.normalized_weight(), m.bias, m.stride, m.padding, m.dilation)

    x = conv(g.conv_pre, x)
    for i, up in enumerate(g.ups):
        x = F.conv_transpose1d(F.leaky_relu(x, 0.1), up.normalized_weight(), up.bias, up.stride, up.padding)
        xs = 0
        for block in g.resblocks[i * g.num_kernels:(i + 1) * g.num_kernels]:
            h = x
            if isinstance(block, ResBlock1):
                for c1, c2 in zip(block.convs1, block.convs2):
                    h = conv(c2, F.leaky_relu(conv(c1, F.leaky_relu(h, 0.1)), 0.1)) + h
            else:
                for c in block.convs:
                    h = conv(c, F.leaky_relu(h, 0.1)) + h
            xs = xs + h
        x = xs / g.num_kernels
    return torch.tanh(conv(g.conv_post, F.leaky_relu(x)))


@pytest.mark.parametrize("name", ["hifigan_v2", "hifigan_v3"])
def test_channels_last_generator_computes_the_references_output_and_gradients(name, monkeypatch):
    monkeypatch.setattr("trainer.models.CHANNELS_LAST_MIN_FRAMES", 0)
    cfg = load_config(name)
    torch.manual_seed(0)
    g = Generator(cfg.generator, cfg.audio.num_mels)
    reference = copy.deepcopy(g).double()
    mel = torch.randn(2, cfg.audio.num_mels, 12)
    y = g(mel)
    y_ref = reference_generator_forward(reference, mel.double())
    torch.testing.assert_close(y.double(), y_ref, rtol=0, atol=1e-5)

    grad_y = torch.randn_like(y_ref)
    y.backward(grad_y.float())
    y_ref.backward(grad_y)
    for (name, p), p_ref in zip(g.named_parameters(), reference.parameters(), strict=True):
        # a relative L2 error: an element that sits on a leaky ReLU's kink in one precision and not
        # the other legitimately changes the gradient there
        assert (p.grad.double() - p_ref.grad).norm() <= 1e-4 * p_ref.grad.norm(), name


def backward_node_names(output: torch.Tensor) -> set[str]:
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


@pytest.mark.parametrize("name", ["hifigan_v1", "hifigan_v3"])
def test_training_generator_writes_no_tensor_in_place(name, monkeypatch):
    # An in-place op on a conv output (a view, see LayoutKeepingWNConv1d) puts a CopySlices node in
    # the backward graph, which copies the whole gradient twice: it made the V1 generator's backward
    # 25 % slower. Inference may overwrite; training must not.
    monkeypatch.setattr("trainer.models.CHANNELS_LAST_MIN_FRAMES", 0)
    cfg = load_config(name)
    g = Generator(cfg.generator, cfg.audio.num_mels)
    mel = torch.randn(1, cfg.audio.num_mels, 4)
    y = g(mel)
    names = backward_node_names(y)
    assert "CopySlices" not in names
    assert "ConvolutionBackward0" in names
    with torch.no_grad():
        overwriting = g(mel)
    torch.testing.assert_close(overwriting, y.detach(), rtol=0, atol=0)
