"""The generator's input mel in numpy (librosa's STFT and Slaney filterbank), for the torch-free
onnxruntime path: the same math as ``trainer.mel.MelSpectrogram`` (jik876's ``mel_spectrogram``), held to
it by ``tests/test_onnx.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class MelParams:
    sampling_rate: int
    n_fft: int
    hop_size: int
    win_size: int
    num_mels: int
    fmin: float
    fmax: Optional[float]


class NumpyMel:
    """Waveform [T] in [-1, 1] at ``sampling_rate`` -> log-mel [num_mels, T // hop] (for T >= n_fft)."""

    def __init__(self, params: MelParams):
        import librosa  # imported here: 1-2 s, and only audio inputs need it

        self.params = params
        self._librosa = librosa
        self.basis = librosa.filters.mel(sr=params.sampling_rate, n_fft=params.n_fft, n_mels=params.num_mels,
                                         fmin=params.fmin, fmax=params.fmax, htk=False, norm="slaney").astype(np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        p = self.params
        pad = (p.n_fft - p.hop_size) // 2
        padded = np.pad(samples.astype(np.float32), (pad, pad), mode="reflect")
        spec = self._librosa.stft(padded, n_fft=p.n_fft, hop_length=p.hop_size, win_length=p.win_size,
                                  window="hann", center=False)
        magnitude = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9, dtype=np.float32)
        return np.log(np.maximum(self.basis @ magnitude, 1e-5)).astype(np.float32)
