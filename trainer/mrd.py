"""Multi-resolution discriminator (MRD) of UnivNet (Jang et al., 2021) as BigVGAN (Lee et al., 2023)
uses it: one 2-D conv stack per STFT resolution, each looking at a linear magnitude spectrogram.

Module and parameter names follow NVIDIA/BigVGAN's ``discriminators.py`` (``DiscriminatorR``,
``MultiResolutionDiscriminator``) with its ``discriminator_channel_mult`` = 1 and weight norm, so
that its discriminator state dicts load strict: ``discriminators.{i}.convs.{j}`` and
``discriminators.{i}.conv_post``, each with ``bias`` / ``weight_g`` / ``weight_v``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import LRELU_SLOPE, WNConv2d, judge

class DiscriminatorR(nn.Module):
    """Looks at one resolution's linear magnitude spectrogram as a [frames, n_fft/2 + 1] image;
    strided along frequency only, so every frame keeps its own score."""

    def __init__(self, resolution: list[int], channel_divisor: int = 1):
        super().__init__()
        self.resolution = [int(v) for v in resolution]
        c = 32 // channel_divisor
        self.convs = nn.ModuleList([
            WNConv2d(1, c, (3, 9), padding=(1, 4)),
            WNConv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            WNConv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            WNConv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            WNConv2d(c, c, (3, 3), padding=(1, 1)),
        ])
        self.conv_post = WNConv2d(c, 1, (3, 3), padding=(1, 1))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform [B, 1, T] -> magnitude [B, n_fft/2 + 1, frames], always float32.

        This is the reference's spectrogram, quirks kept: reflect padding by (n_fft - hop) / 2 each
        side instead of stft's centring, and no window (torch.stft's default, a rectangular window
        of win_size samples centred in the n_fft frame).
        """
        n_fft, hop, win = self.resolution
        pad = int((n_fft - hop) / 2)
        with torch.autocast(x.device.type, enabled=False):
            x = F.pad(x.float(), (pad, pad), mode="reflect").squeeze(1)
            rectangular = torch.ones(win, device=x.device)  # what torch.stft uses when given none
            spec = torch.stft(x, n_fft, hop_length=hop, win_length=win, window=rectangular, center=False,
                              return_complex=True)
            return spec.abs()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        x = self.spectrogram(x).unsqueeze(1)  # [B, 1, F, frames]
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiResolutionDiscriminator(nn.Module):
    """One ``DiscriminatorR`` per [n_fft, hop_size, win_size] resolution."""

    def __init__(self, resolutions: list[list[int]], channel_divisor: int = 1):
        super().__init__()
        self.discriminators = nn.ModuleList([DiscriminatorR(r, channel_divisor) for r in resolutions])

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        return judge(self.discriminators, y, y_hat)
