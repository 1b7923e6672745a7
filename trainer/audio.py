"""Reading audio files: any format libsndfile reads (WAV, FLAC, OGG, MP3), downmixed and resampled."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from trainer.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

# soundfile guesses a format from the extension but not a subtype that suits speech; these do
# (16-bit PCM where lossless), kept to those this libsndfile build can write
OUTPUT_FORMATS = {
    extension: (container, subtype)
    for extension, (container, subtype) in {
        ".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
        ".mp3": ("MP3", "MPEG_LAYER_III"), ".aiff": ("AIFF", "PCM_16"),
    }.items()
    if sf.check_format(container, subtype)
}


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


# Every generator convolution is zero-padded to keep its length, so one frame is enough to vocode.
MIN_MEL_FRAMES = 1

# numpy dtype kinds a mel cannot be: integers and floats of any width convert to float32, these do not
_REFUSED_KINDS = {"b": "booleans", "c": "complex numbers", "U": "text", "S": "bytes", "V": "structured records",
                  "M": "dates", "m": "time spans"}


def load_mel_npy(path: Path, num_mels: int) -> np.ndarray:
    """A float32 mel spectrogram [num_mels, frames >= 1] saved with numpy (a leading batch axis of 1 is
    dropped); UserError naming the file, its dtype and shape for anything else."""
    expected = f"expected a mel of shape [{num_mels}, frames] of floats"
    mel = _read_npy(path, expected)
    described = f"{path} ({mel.dtype}, shape {mel.shape})"
    if mel.dtype.kind in _REFUSED_KINDS:
        raise UserError(f"{described} holds {_REFUSED_KINDS[mel.dtype.kind]}; {expected}")
    if mel.ndim == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2 or mel.shape[0] != num_mels:
        transposed = " (transposed? save mel.T)" if mel.ndim == 2 and mel.shape[1] == num_mels else ""
        raise UserError(f"{described} has the wrong shape{transposed}; {expected}")
    if mel.shape[1] < MIN_MEL_FRAMES:
        raise UserError(f"{described} is too short: {mel.shape[1]} frames, need at least {MIN_MEL_FRAMES}")
    if not np.isfinite(mel).all():
        raise UserError(f"{described} contains NaN or infinite values; {expected}, all finite")
    with np.errstate(over="ignore"):  # an overflow is refused just below, not warned about
        converted = np.ascontiguousarray(mel, dtype=np.float32)
    if not np.isfinite(converted).all():
        raise UserError(f"{described} has values beyond float32's range (±3.4e38); {expected}, as float32")
    return converted


def _read_npy(path: Path, expected: str) -> np.ndarray:
    """The array in a ``.npy`` file, read without pickle (which could run code)."""
    try:
        with open(path, "rb") as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except Exception as exc:  # truncated data, a bad header, a .npz archive, other bytes or an object array
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):  # numpy's refusal of an object array
            raise UserError(f"{path} (object dtype) was refused: it holds Python objects, which need pickle "
                            f"to load and could run code; {expected}") from None
        raise UserError(f"{path} is not a readable .npy file") from None


def peak_normalize(samples: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so that the largest magnitude is ``peak`` (the reference's ``normalize(audio) * 0.95``)."""
    largest = float(np.abs(samples).max())
    if largest == 0.0:
        return samples
    return (samples / largest * peak).astype(np.float32)


def output_format(path: Path) -> tuple[str, str]:
    """(soundfile format, subtype) for ``path``'s extension; UserError naming the extensions that work."""
    extension = path.suffix.lower()
    if extension not in OUTPUT_FORMATS:
        named = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise UserError(f"{path} has {named}; the output's extension picks its format: "
                        f"{', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[extension]


def write_wav(path: Path, samples: np.ndarray, sampling_rate: int) -> None:
    """Write ``samples`` in the format of ``path``'s extension (``OUTPUT_FORMATS``) so that ``path`` is
    the previous file or the whole new one, never half of one; UserError if it cannot be written."""
    container, subtype = output_format(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        sf.write(str(tmp), np.clip(samples, -1.0, 1.0), sampling_rate, subtype=subtype, format=container)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, sf.LibsndfileError)):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
            raise UserError(f"cannot write audio file {path}: {reason}") from None
        raise
