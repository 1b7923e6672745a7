"""Anti-aliased activation (BigVGAN, Lee et al., 2023; after StyleGAN3's alias-free filters).

A nonlinearity applied to a sampled signal makes harmonics above Nyquist, which fold back as
aliasing. BigVGAN therefore applies its periodic activation at twice the rate: up-sample by 2
(zero-stuffing, then a low-pass filter), activate, low-pass and decimate by 2. Both low-pass
filters are the same 12-tap Kaiser-windowed sinc with its cutoff at the original Nyquist.

Buffer names (``upsample.filter``, ``downsample.lowpass.filter``) follow the ``bigvgan`` package, whose
state_dict stores them, so its weights load as they are. The filters are plain depthwise convolutions
in torch: no custom CUDA kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def kaiser_beta(attenuation_db: float) -> float:
    """Kaiser's window parameter for a stop-band attenuation in dB (Oppenheim & Schafer, 7.62)."""
    if attenuation_db > 50.0:
        return 0.1102 * (attenuation_db - 8.7)
    if attenuation_db >= 21.0:
        return 0.5842 * (attenuation_db - 21.0) ** 0.4 + 0.07886 * (attenuation_db - 21.0)
    return 0.0


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Low-pass FIR filter [1, 1, kernel_size]: an ideal (sinc) low-pass at ``cutoff`` (a fraction of the
    sampling rate, at most 0.5), Kaiser-windowed; ``half_width`` (the transition band's half width, as
    a fraction of the sampling rate) sets the window's beta.

    Taps sit at half-integer times for an even ``kernel_size``, so the filter is symmetric about the
    middle of the kernel; they are normalised to sum to 1 (no gain, nor leakage, at DC).
    """
    if cutoff == 0:
        return torch.zeros(1, 1, kernel_size)
    half_size = kernel_size // 2
    # Kaiser's estimate of the attenuation that this length and transition width reach
    attenuation = 2.285 * (half_size - 1) * math.pi * (4 * half_width) + 7.95
    window = torch.kaiser_window(kernel_size, periodic=False, beta=kaiser_beta(attenuation))
    if kernel_size % 2 == 0:
        time = torch.arange(-half_size, half_size) + 0.5
    else:
        time = torch.arange(kernel_size) - half_size
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


def _depthwise(filter_: torch.Tensor, channels: int) -> torch.Tensor:
    return filter_.expand(channels, -1, -1)


class LowPassFilter1d(nn.Module):
    """Depthwise FIR low-pass [B, C, T] -> [B, C, T // stride], edges padded by replication."""

    def __init__(self, cutoff: float = 0.5, half_width: float = 0.6, stride: int = 1, kernel_size: int = 12):
        super().__init__()
        if not 0.0 <= cutoff <= 0.5:
            raise ValueError(f"the cutoff is a fraction of the sampling rate in [0, 0.5], got {cutoff}")
        self.stride = stride
        self.pad_left = kernel_size // 2 - (kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, _depthwise(self.filter, x.shape[1]), stride=self.stride, groups=x.shape[1])


class UpSample1d(nn.Module):
    """[B, C, T] -> [B, C, T · ratio]: zero-stuffing and the low-pass as one strided transposed conv."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None):
        super().__init__()
        self.ratio = ratio
        kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        # replicate ``pad`` input samples each side, so the filter's transient falls outside the output
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer(
            "filter", kaiser_sinc_filter1d(cutoff=0.5 / ratio, half_width=0.6 / ratio, kernel_size=kernel_size)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        # × ratio: zero-stuffing divides the signal's energy per sample by the ratio
        x = self.ratio * F.conv_transpose1d(x, _depthwise(self.filter, channels), stride=self.ratio, groups=channels)
        return x[..., self.crop_left : x.shape[-1] - self.crop_right]


class DownSample1d(nn.Module):
    """[B, C, T] -> [B, C, T // ratio]: the low-pass evaluated at every ``ratio``-th sample."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None):
        super().__init__()
        self.ratio = ratio
        kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.lowpass = LowPassFilter1d(cutoff=0.5 / ratio, half_width=0.6 / ratio, stride=ratio,
                                       kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class Activation1d(nn.Module):
    """``activation`` applied at ``up_ratio`` times the rate: up-sample, activate, down-sample."""

    def __init__(self, activation: nn.Module, up_ratio: int = 2, down_ratio: int = 2,
                 up_kernel_size: int = 12, down_kernel_size: int = 12):
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))
