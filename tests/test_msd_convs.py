"""The MSD's fast convolutions compute what ``nn.Conv1d`` computes: outputs and all gradients."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import DiscriminatorS, WNConv1d
from trainer.msd_convs import FFTConv1d, WaveformConv1d


@pytest.fixture(autouse=True)
def fast_paths_at_test_sizes(monkeypatch):
    monkeypatch.setattr("trainer.msd_convs.MIN_SAMPLES", 0)
    monkeypatch.setattr("trainer.msd_convs.MIN_MACS", 0)


SHAPES = [  # in, out, kernel, stride, groups, padding, batch, length
    (128, 128, 41, 2, 4, 20, 2, 1000),   # the MSD's first grouped layer
    (128, 256, 41, 2, 16, 20, 3, 517),   # odd length: the last output reads padding
    (256, 512, 41, 4, 16, 20, 2, 258),   # stride 4: length not a multiple of it
    (256, 256, 41, 1, 16, 20, 2, 70),    # stride 1 (layer 6): one block
    (32, 64, 7, 1, 8, 3, 4, 2100),       # many blocks
    (16, 16, 5, 3, 2, 0, 1, 40),         # no padding, kernel not a multiple of the stride
    (8, 8, 41, 2, 1, 20, 2, 10),         # input shorter than the kernel
]


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.double() - reference).abs().max() / reference.abs().max()).item()


WAVEFORM_SHAPES = [  # in (1), out, kernel, stride, groups (1), padding, batch, length
    (1, 128, 15, 1, 1, 7, 2, 1000),  # the MSD's first layer
    (1, 16, 5, 3, 1, 2, 3, 101),
    (1, 8, 4, 1, 1, 0, 1, 50),
]


def assert_matches_float64_conv1d(conv: nn.Conv1d, batch: int, length: int, bound: float = 1e-5) -> None:
    reference = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          groups=conv.groups).double()
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(batch, conv.in_channels, length)
    x_ref = x.double().requires_grad_()
    x.requires_grad_()

    y, y_ref = conv(x), reference(x_ref)
    grad_y = torch.randn_like(y_ref)
    y.backward(grad_y.float())
    y_ref.backward(grad_y)

    assert y.shape == y_ref.shape
    assert relative_error(y, y_ref) < bound
    assert relative_error(x.grad, x_ref.grad) < bound
    assert relative_error(conv.weight.grad, reference.weight.grad) < bound
    assert relative_error(conv.bias.grad, reference.bias.grad) < bound


@pytest.mark.parametrize("conv_class,cin,cout,k,s,g,pad,batch,length",
                         [(FFTConv1d, *shape) for shape in SHAPES]
                         + [(WaveformConv1d, *shape) for shape in WAVEFORM_SHAPES])
def test_outputs_and_gradients_match_conv1d(conv_class, cin, cout, k, s, g, pad, batch, length):
    torch.manual_seed(0)
    assert_matches_float64_conv1d(conv_class(cin, cout, k, s, padding=pad, groups=g), batch, length)


@pytest.mark.parametrize("n", [40, 64, 128, 1024])
def test_every_block_length_computes_the_same(monkeypatch, n):
    """From the shortest block the overlap-add allows (2 × (21 taps − 1)) to one block for all outputs."""
    monkeypatch.setattr("trainer.msd_convs.block_size", lambda taps, out_length: n)
    torch.manual_seed(0)
    assert_matches_float64_conv1d(FFTConv1d(32, 32, 41, 2, padding=20, groups=4), 2, 700)


def test_an_input_shorter_than_the_kernel_gets_conv1ds_error():
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        FFTConv1d(4, 4, 41, 2, groups=2)(torch.randn(1, 4, 40))  # no output at all: (40 - 41) // 2 + 1 = 0


def test_the_same_input_gives_bit_identical_results():
    """What an exact resume needs: no run-to-run variation in the FFT path."""
    torch.manual_seed(0)
    conv = FFTConv1d(64, 64, 41, 2, padding=20, groups=4)
    x = torch.randn(4, 64, 3000)
    results = []
    for _ in range(2):
        conv.zero_grad()
        x_in = x.clone().requires_grad_()
        y = conv(x_in)
        y.square().sum().backward()
        results.append((y, x_in.grad, conv.weight.grad.clone(), conv.bias.grad.clone()))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_frozen_weights_and_no_grad_take_the_same_path():
    torch.manual_seed(0)
    conv = FFTConv1d(64, 64, 41, 2, padding=20, groups=4)
    reference = copy.deepcopy(conv)
    x = torch.randn(2, 64, 300)
    with torch.no_grad():
        assert relative_error(conv(x), F.conv1d(x.double(), conv.weight.double(), conv.bias.double(), 2, 20, 1, 4)) < 1e-5
    conv.requires_grad_(False)
    x.requires_grad_()
    conv(x).square().sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    reference(x_ref).square().sum().backward()
    assert conv.weight.grad is None
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def test_stacked_layers_accept_each_others_channels_last_outputs():
    torch.manual_seed(0)
    fast = nn.Sequential(WaveformConv1d(1, 32, 15, padding=7), nn.LeakyReLU(0.1),
                         FFTConv1d(32, 64, 41, 2, padding=20, groups=4), nn.LeakyReLU(0.1),
                         FFTConv1d(64, 64, 41, 4, padding=20, groups=16), nn.LeakyReLU(0.1),
                         nn.Conv1d(64, 8, 5, padding=2))
    plain = nn.Sequential(*(nn.Conv1d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, groups=m.groups)
                            if isinstance(m, nn.Conv1d) else m for m in fast)).double()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(3, 1, 999)
    fast(x).sum().backward()
    plain(x.double()).sum().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        assert relative_error(a.grad, b.grad) < 1e-5, name


def test_under_bf16_autocast_it_returns_bf16_computed_in_fp32():
    """Autocast's output dtype, but sums closer to the exact ones than autocast's own convolution."""
    torch.manual_seed(0)
    conv = FFTConv1d(128, 128, 41, 2, padding=20, groups=4)
    plain = nn.Conv1d(128, 128, 41, 2, padding=20, groups=4)
    plain.load_state_dict(conv.state_dict())
    reference = copy.deepcopy(plain).double()
    x = torch.randn(2, 128, 1000)
    grad_y = torch.randn(2, 128, 500).to(torch.bfloat16)
    outputs, grads = [], []
    for module in (conv, plain):
        x_in = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(x_in)
        y.backward(grad_y)
        outputs.append(y)
        grads.append((x_in.grad, module.weight.grad, module.bias.grad))
    x_ref = x.double().requires_grad_()
    y_ref = reference(x_ref)
    y_ref.backward(grad_y.double())

    (y, y_autocast), ((gx, gw, gb), (gx_autocast, gw_autocast, _)) = outputs, grads
    assert y.dtype == y_autocast.dtype == torch.bfloat16
    assert gx.dtype == gw.dtype == gb.dtype == torch.float32
    assert relative_error(y, y_ref) < 4e-3  # the fp32 result rounded once to bf16
    assert relative_error(y, y_ref) < relative_error(y_autocast, y_ref)
    for ours, autocasts, exact in ((gx, gx_autocast, x_ref.grad), (gw, gw_autocast, reference.weight.grad)):
        assert relative_error(ours, exact) < 1e-5 < relative_error(autocasts, exact)
    assert relative_error(gb, reference.bias.grad) < 1e-5


def test_elsewhere_it_is_exactly_conv1d(monkeypatch):
    torch.manual_seed(0)
    conv = FFTConv1d(32, 32, 41, 2, padding=20, groups=4)
    conv64, x64 = copy.deepcopy(conv).double(), torch.randn(2, 32, 200, dtype=torch.float64)
    assert torch.equal(conv64(x64), F.conv1d(x64, conv64.weight, conv64.bias, 2, 20, 1, 4))
    monkeypatch.setattr("trainer.msd_convs.MIN_MACS", 2 * 100 * 32 * 8 * 41 + 1)  # just above this input's work
    x = torch.randn(2, 32, 200)
    assert torch.equal(conv(x), F.conv1d(x, conv.weight, conv.bias, 2, 20, 1, 4))
    waveform_conv, x = WaveformConv1d(1, 16, 15, 1, padding=7), torch.randn(2, 1, 300)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # oneDNN's own bf16 kernel is the faster one here
        assert torch.equal(waveform_conv(x), F.conv1d(x, waveform_conv.weight, waveform_conv.bias, 1, 7))


@pytest.mark.parametrize("spectral", [False, True])
def test_scale_discriminator_matches_one_built_from_plain_convolutions(spectral):
    """Same keys (jik876 checkpoints load), same scores, feature maps and gradients."""
    torch.manual_seed(0)
    fast = DiscriminatorS(use_spectral_norm=spectral, channel_divisor=4)
    plain = copy.deepcopy(fast)
    for conv in plain.convs:
        if isinstance(conv, (FFTConv1d, WaveformConv1d)):
            conv.__class__ = nn.Conv1d if spectral else WNConv1d
    assert not any(isinstance(m, (FFTConv1d, WaveformConv1d)) for m in plain.modules())
    assert fast.state_dict().keys() == plain.state_dict().keys()
    y = torch.randn(2, 1, 4096)
    score, fmaps = fast(y)
    score_ref, fmaps_ref = plain(y)
    torch.testing.assert_close(score, score_ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(fmaps, fmaps_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    score.square().mean().backward()
    score_ref.square().mean().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
