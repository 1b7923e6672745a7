"""Multi-resolution STFT distance (Yamamoto et al., 2020, Parallel WaveGAN; Arik et al., 2018).

At each resolution, the spectral convergence ‖|Y| − |X|‖_F / ‖|Y|‖_F plus the mean absolute
difference of the log magnitudes (each with its weight); the distance is their mean over the
resolutions. The defaults are auraloss's ``MultiResolutionSTFTLoss()``, the M-STFT that BigVGAN
reports and the quality metric uses; ``loss.stft: multi_resolution`` trains with it. Tests hold
this module to auraloss on the same signals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Resolution:
    n_fft: int
    hop_size: int
    win_size: int


AURALOSS_RESOLUTIONS = (Resolution(1024, 120, 600), Resolution(2048, 240, 1200), Resolution(512, 50, 240))


class MultiResolutionSTFT(nn.Module):
    """``forward(generated, reference)``, both [B, T] or [B, 1, T], → the distance over the whole batch (a scalar)."""

    def __init__(self, resolutions: tuple[Resolution, ...] = AURALOSS_RESOLUTIONS, eps: float = 1e-8,
                 sc_weight: float = 1.0, mag_weight: float = 1.0):
        super().__init__()
        self.resolutions = resolutions
        self.eps = eps
        self.sc_weight, self.mag_weight = sc_weight, mag_weight
        for i, r in enumerate(resolutions):
            self.register_buffer(f"window_{i}", torch.hann_window(r.win_size), persistent=False)

    def magnitude(self, y: torch.Tensor, i: int) -> torch.Tensor:
        r = self.resolutions[i]
        spec = torch.stft(y, r.n_fft, r.hop_size, r.win_size, getattr(self, f"window_{i}"), return_complex=True)
        return torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=self.eps))

    def forward(self, generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        with torch.autocast(generated.device.type, enabled=False):
            generated, reference = generated.float().flatten(0, -2), reference.float().flatten(0, -2)
            total = generated.new_zeros(())
            for i in range(len(self.resolutions)):
                x, y = self.magnitude(generated, i), self.magnitude(reference, i)
                spectral_convergence = torch.linalg.vector_norm(y - x) / torch.linalg.vector_norm(y)
                log_magnitude = torch.mean(torch.abs(torch.log(x) - torch.log(y)))
                total = total + self.sc_weight * spectral_convergence + self.mag_weight * log_magnitude
            return total / len(self.resolutions)
