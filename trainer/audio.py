"""Reading audio files: any format libsndfile reads (WAV, FLAC, OGG, MP3), downmixed and resampled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from trainer.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class LoadedAudio:
    samples: np.ndarray  # float32 mono in [-1, 1] at the requested rate
    source_rate: int
    channels: int


def read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    """The samples [frames, channels] float32 and the rate of ``path``; a UserError for a file that
    cannot be read, holds no samples, or holds NaN or infinite ones."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports corrupt, truncated and unknown formats alike
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read audio file {path}: {detail}") from None
    if data.size == 0:
        raise UserError(f"audio file {path} is empty (no samples)")
    if not np.isfinite(data).all():
        raise UserError(f"audio file {path} contains NaN or infinite samples")
    return data, rate


def resampled_length(frames: int, source_rate: int, rate: int) -> int:
    """How many samples ``load_audio`` gives for ``frames`` samples at ``source_rate`` (soxr rounds
    the exact length to the nearest sample, halves up)."""
    return frames if source_rate == rate else (2 * frames * rate + source_rate) // (2 * source_rate)


def load_audio(path: Path, sampling_rate: int) -> LoadedAudio:
    """Read ``path`` as float32 mono at ``sampling_rate``; raise UserError for anything unusable."""
    data, rate = read_audio_file(path)
    channels = data.shape[1]
    mono = data.mean(axis=1) if channels > 1 else data[:, 0]
    if rate != sampling_rate:
        mono = soxr.resample(mono, rate, sampling_rate, quality="VHQ").astype(np.float32)
    return LoadedAudio(np.ascontiguousarray(mono, dtype=np.float32), rate, channels)


def load_mel_npy(path: Path, num_mels: int) -> np.ndarray:
    """A mel spectrogram saved with numpy: [num_mels, frames] (a leading batch axis of 1 is dropped)."""
    try:
        mel = np.load(path)
    except Exception:
        raise UserError(f"{path} is not a readable .npy file") from None
    if mel.ndim == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2 or mel.shape[0] != num_mels:
        raise UserError(f"{path} has shape {mel.shape}; expected a mel of shape [{num_mels}, frames]")
    if not np.isfinite(mel).all():
        raise UserError(f"{path} contains NaN or infinite values")
    return np.ascontiguousarray(mel, dtype=np.float32)


def peak_normalize(samples: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so that the largest magnitude is ``peak`` (the reference's ``normalize(audio) * 0.95``)."""
    largest = float(np.abs(samples).max())
    if largest == 0.0:
        return samples
    return (samples / largest * peak).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sampling_rate: int) -> None:
    sf.write(str(path), np.clip(samples, -1.0, 1.0), sampling_rate, subtype="PCM_16")
