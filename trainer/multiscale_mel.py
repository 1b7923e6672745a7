"""The multi-scale mel loss of BigVGAN v2 (from DAC, Kumar et al., 2023): ``loss.mel: multi_scale``.

At each scale, a Hann-windowed STFT (hop = window / 4, centred, reflect-padded) of the generated
and the reference waveform, Slaney mel bands over the full band, log10 of the magnitudes clamped
at 1e-5, and their mean absolute difference; the loss is the sum over the scales. Short windows
with few bands see transients, long ones with many bands see harmonics, so no single
time-frequency trade-off dominates. A test holds it to the ``bigvgan`` package's
``MultiScaleMelSpectrogramLoss`` on the same signals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.mel import mel_filterbank

CLAMP = 1e-5


class MultiScaleMelLoss(nn.Module):
    """``forward(generated, reference)``, both [B, T] or [B, 1, T], → the summed L1 distance (a scalar)."""

    def __init__(self, sampling_rate: int, mel_scales: list[int], mel_windows: list[int]):
        super().__init__()
        self.windows = list(mel_windows)
        for i, (n_mels, window) in enumerate(zip(mel_scales, mel_windows)):
            basis = mel_filterbank(sampling_rate, window, n_mels, 0.0, None)
            self.register_buffer(f"basis_{i}", torch.from_numpy(basis), persistent=False)
            self.register_buffer(f"window_{i}", torch.hann_window(window), persistent=False)

    def log_mel(self, y: torch.Tensor, i: int) -> torch.Tensor:
        n_fft = self.windows[i]
        spec = torch.stft(y, n_fft, n_fft // 4, window=getattr(self, f"window_{i}"), center=True,
                          pad_mode="reflect", return_complex=True)
        mel = torch.matmul(getattr(self, f"basis_{i}"), spec.abs())
        return torch.log10(torch.clamp(mel, min=CLAMP))

    def forward(self, generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        with torch.autocast(generated.device.type, enabled=False):
            x, y = generated.float().flatten(0, -2), reference.float().flatten(0, -2)
            return sum(F.l1_loss(self.log_mel(x, i), self.log_mel(y, i)) for i in range(len(self.windows)))
