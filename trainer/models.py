"""HiFi-GAN (Kong et al., 2020): generator with multi-receptive-field fusion, multi-period and
multi-scale discriminators.

Module and parameter names follow jik876/hifi-gan, so its ``g_########`` and ``do_########`` files
load as they are: weight-normalised layers keep ``weight_g`` / ``weight_v``, the first scale
discriminator keeps spectral norm's ``weight_orig`` / ``weight_u`` / ``weight_v``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from trainer.config import DiscriminatorConfig, GeneratorConfig
from trainer.msd_convs import FFTConv1d, WaveformConv1d

LRELU_SLOPE = 0.1
CHANNELS_LAST_MIN_FRAMES = 256  # batch × mel frames; below it the layout's fixed costs outweigh its gain


def no_autograd() -> bool:
    """Whether autograd is off, so the generator may overwrite tensors that only one line reads.

    Those tensors are conv outputs reshaped by a view (see ``LayoutKeepingWNConv1d``): in place saves
    memory passes at inference (2–4 % of a synthesis), but under autograd an in-place op on a view
    makes its backward copy the gradient's whole base twice (the V1 generator's backward at batch 16
    took 25 % longer), so training leaves them alone.
    """
    return not torch.is_grad_enabled()


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class WeightNorm:
    """Mixin for a conv layer: weight = g · v / ‖v‖, the norm taken over all dims but the first.

    Same reparameterisation and parameter order as ``torch.nn.utils.weight_norm`` (bias, weight_g,
    weight_v), without its forward hook; ``fold()`` freezes the weight for inference.
    """

    def _apply_weight_norm(self) -> None:
        weight = self._parameters.pop("weight")
        self.weight_g = nn.Parameter(torch.norm_except_dim(weight, 2, 0).detach())
        self.weight_v = nn.Parameter(weight.detach())
        # a buffer, so that .to() moves it; not persistent: checkpoints keep weight_g and weight_v
        self.register_buffer("folded_weight", None, persistent=False)

    def normalized_weight(self) -> torch.Tensor:
        if self.folded_weight is not None:
            return self.folded_weight
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def fold(self) -> None:
        self.folded_weight = self.normalized_weight().detach()


class WNConv1d(WeightNorm, nn.Conv1d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._apply_weight_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


class LayoutKeepingWNConv1d(WNConv1d):
    """A channels-last input gives a channels-last output (``F.conv1d`` returns channels-first).

    The generator runs channels-last on a CPU, where oneDNN's kernels for most of its shapes are
    faster, 2–9× for the kernel-3 and dilated convolutions with few channels; see ``Generator.forward``.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, *self.stride), (0, *self.padding),
                        (1, *self.dilation), self.groups).squeeze(2)


class WNFFTConv1d(WNConv1d, FFTConv1d):
    pass


class WNWaveformConv1d(WNConv1d, WaveformConv1d):
    pass


class WNConv2d(WeightNorm, nn.Conv2d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._apply_weight_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


class WNConvTranspose1d(WeightNorm, nn.ConvTranspose1d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._apply_weight_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # through the 2-D op, so that the layout is kept as in LayoutKeepingWNConv1d
        return F.conv_transpose2d(
            x.unsqueeze(2), self.normalized_weight().unsqueeze(2), self.bias, (1, *self.stride),
            (0, *self.padding), (0, *self.output_padding), self.groups, (1, *self.dilation),
        ).squeeze(2)


class ResBlock1(nn.Module):
    """MRF residual block of V1/V2: per dilation, a dilated conv then an undilated one."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList(
            [LayoutKeepingWNConv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d))
             for d in dilation]
        )
        self.convs2 = nn.ModuleList(
            [LayoutKeepingWNConv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1))
             for _ in dilation]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = no_autograd()
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            xt = c2(F.leaky_relu(xt, LRELU_SLOPE, inplace))
            x = xt.add_(x) if inplace else xt + x
        return x


class ResBlock2(nn.Module):
    """The lighter MRF residual block of V3: one dilated conv per dilation."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList(
            [LayoutKeepingWNConv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d))
             for d in dilation]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = no_autograd()
        for c in self.convs:
            xt = c(F.leaky_relu(x, LRELU_SLOPE))
            x = xt.add_(x) if inplace else xt + x
        return x


class Generator(nn.Module):
    """Mel [B, num_mels, frames] -> waveform [B, 1, frames · hop]."""

    def __init__(self, h: GeneratorConfig, num_mels: int):
        super().__init__()
        self.num_kernels = len(h.resblock_kernel_sizes)
        self.num_upsamples = len(h.upsample_rates)
        self.conv_pre = LayoutKeepingWNConv1d(num_mels, h.upsample_initial_channel, 7, 1, padding=3)
        resblock = ResBlock1 if h.resblock == "1" else ResBlock2

        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes)):
            self.ups.append(
                WNConvTranspose1d(
                    h.upsample_initial_channel // (2**i), h.upsample_initial_channel // (2 ** (i + 1)), k, u,
                    padding=(k - u) // 2,
                )
            )

        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = h.upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes):
                self.resblocks.append(resblock(ch, k, tuple(d)))

        self.conv_post = LayoutKeepingWNConv1d(ch, 1, 7, 1, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.shape[0] * x.shape[-1] >= CHANNELS_LAST_MIN_FRAMES:
            x = x.transpose(1, 2).contiguous().transpose(1, 2)  # channels-last to the output: its layers keep it
        inplace = no_autograd()
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = self.ups[i](F.leaky_relu(x, LRELU_SLOPE, inplace))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs = xs.add_(block(x)) if inplace else xs + block(x)
            x = xs.div_(self.num_kernels) if inplace else xs / self.num_kernels
        # the reference uses leaky_relu's default slope (0.01) here, not LRELU_SLOPE
        x = self.conv_post(F.leaky_relu(x, inplace=inplace))
        return torch.tanh(x)

    def fold_weight_norm(self) -> Generator:
        """Freeze every weight-normalised layer to its plain weight (for inference)."""
        for module in self.modules():
            if isinstance(module, WeightNorm):
                module.fold()
        return self


def _widths(channels: list[int], divisor: int) -> list[int]:
    return [c // divisor for c in channels]


class DiscriminatorP(nn.Module):
    """Looks at every ``period``-th sample: the waveform folded into a [T / period, period] image."""

    def __init__(self, period: int, channel_divisor: int = 1, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        c = _widths([32, 128, 512, 1024], channel_divisor)
        pad = (get_padding(5, 1), 0)
        self.convs = nn.ModuleList([
            WNConv2d(1, c[0], (kernel_size, 1), (stride, 1), padding=pad),
            WNConv2d(c[0], c[1], (kernel_size, 1), (stride, 1), padding=pad),
            WNConv2d(c[1], c[2], (kernel_size, 1), (stride, 1), padding=pad),
            WNConv2d(c[2], c[3], (kernel_size, 1), (stride, 1), padding=pad),
            WNConv2d(c[3], c[3], (kernel_size, 1), 1, padding=(2, 0)),
        ])
        self.conv_post = WNConv2d(c[3], 1, (3, 1), 1, padding=(1, 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - (t % self.period)
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class DiscriminatorS(nn.Module):
    """Looks at the waveform at one time scale with grouped, strided 1-D convolutions."""

    def __init__(self, use_spectral_norm: bool = False, channel_divisor: int = 1):
        super().__init__()
        c = _widths([128, 256, 512, 1024], channel_divisor)
        if use_spectral_norm:
            def normed(conv_class):
                return lambda *args, **kwargs: spectral_norm(conv_class(*args, **kwargs))

            conv, waveform_conv, grouped_conv = normed(nn.Conv1d), normed(WaveformConv1d), normed(FFTConv1d)
        else:
            conv, waveform_conv, grouped_conv = WNConv1d, WNWaveformConv1d, WNFFTConv1d
        self.convs = nn.ModuleList([  # the first six are the slowest layers on a CPU: see msd_convs
            waveform_conv(1, c[0], 15, 1, padding=7),
            grouped_conv(c[0], c[0], 41, 2, groups=4, padding=20),
            grouped_conv(c[0], c[1], 41, 2, groups=16, padding=20),
            grouped_conv(c[1], c[2], 41, 4, groups=16, padding=20),
            grouped_conv(c[2], c[3], 41, 4, groups=16, padding=20),
            grouped_conv(c[3], c[3], 41, 1, groups=16, padding=20),
            conv(c[3], c[3], 5, 1, padding=2),
        ])
        self.conv_post = conv(c[3], 1, 3, 1, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, d: DiscriminatorConfig):
        super().__init__()
        self.discriminators = nn.ModuleList([DiscriminatorP(p, d.channel_divisor) for p in d.periods])

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        return judge(self.discriminators, y, y_hat)


def judge(sub_discriminators: nn.ModuleList, y: torch.Tensor, y_hat: torch.Tensor):
    """Scores and feature maps of real ``y`` and generated ``y_hat`` from each sub-discriminator, as
    (real scores, generated scores, real feature maps, generated feature maps): what every
    discriminator kind returns, and what the losses take."""
    y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
    for d in sub_discriminators:
        y_d_r, fmap_r = d(y)
        y_d_g, fmap_g = d(y_hat)
        y_d_rs.append(y_d_r)
        fmap_rs.append(fmap_r)
        y_d_gs.append(y_d_g)
        fmap_gs.append(fmap_g)
    return y_d_rs, y_d_gs, fmap_rs, fmap_gs


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, d: DiscriminatorConfig):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [DiscriminatorS(use_spectral_norm=(i == 0), channel_divisor=d.channel_divisor) for i in range(d.scales)]
        )
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2) for _ in range(d.scales - 1)])

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        # judge()'s loop with each scale's pooling between its sub-discriminators, in the reference's
        # order: pooling all scales first would change the order the backward pass sums gradients in
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for i, d in enumerate(self.discriminators):
            if i:
                y = self.meanpools[i - 1](y)
                y_hat = self.meanpools[i - 1](y_hat)
            y_d_r, fmap_r = d(y)
            y_d_g, fmap_g = d(y_hat)
            y_d_rs.append(y_d_r)
            fmap_rs.append(fmap_r)
            y_d_gs.append(y_d_g)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs
