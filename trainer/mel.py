"""Log-mel spectrogram with the reference's exact math, and a filterbank built once per module.

jik876's ``mel_spectrogram``: reflect-pad (n_fft - hop) / 2 on both sides, STFT with center=False and a
Hann window, magnitude sqrt(re² + im² + 1e-9), Slaney-style mel filterbank (librosa's default:
``htk=False, norm="slaney"``), then log(clamp(x, 1e-5)).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainer.config import AudioConfig

_F_SP = 200.0 / 3  # Slaney: linear spacing below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asanyarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log_region = hz >= _MIN_LOG_HZ
    mel = np.where(log_region, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, mel)
    return mel


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asanyarray(mel, dtype=np.float64)
    hz = _F_SP * mel
    log_region = mel >= _MIN_LOG_MEL
    return np.where(log_region, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), hz)


def mel_filterbank(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Triangular filters on the Slaney mel scale, each normalised to unit area: [num_mels, n_fft // 2 + 1]."""
    fmax = sampling_rate / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sampling_rate)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = np.subtract.outer(mel_freqs, fft_freqs)
    weights = np.zeros((num_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(num_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (mel_freqs[2 : num_mels + 2] - mel_freqs[:num_mels]))[:, None]
    return weights


class MelSpectrogram(nn.Module):
    """Waveform [B, T] in [-1, 1] -> log-mel [B, num_mels, T // hop] (for T >= hop)."""

    def __init__(self, audio: AudioConfig, fmax: float | None):
        super().__init__()
        self.n_fft = audio.n_fft
        self.hop_size = audio.hop_size
        self.win_size = audio.win_size
        basis = mel_filterbank(audio.sampling_rate, audio.n_fft, audio.num_mels, audio.fmin, fmax)
        self.register_buffer("basis", torch.from_numpy(basis), persistent=False)
        self.register_buffer("window", torch.hann_window(audio.win_size), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=y.device.type, enabled=False):
            pad = (self.n_fft - self.hop_size) // 2
            y = nn.functional.pad(y.float().unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
            spec = torch.stft(
                y, self.n_fft, hop_length=self.hop_size, win_length=self.win_size, window=self.window,
                center=False, normalized=False, onesided=True, return_complex=True,
            )
            magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
            return torch.log(torch.clamp(torch.matmul(self.basis, magnitude), min=1e-5))


def input_mel(audio: AudioConfig) -> MelSpectrogram:
    """The generator's conditioning mel (band-limited to ``fmax``)."""
    return MelSpectrogram(audio, audio.fmax)


def loss_mel(audio: AudioConfig) -> MelSpectrogram:
    """The mel used for the L1 loss and validation (band-limited to ``fmax_for_loss``, Nyquist if None)."""
    return MelSpectrogram(audio, audio.fmax_for_loss)
