"""What every vocoder takes, torch-free: the precision names and the checks of a mel or of audio samples
before they reach a generator, shared by ``trainer.inference.Vocoder`` (torch) and
``trainer.onnx_vocoder.OnnxVocoder`` (onnxruntime), so both refuse the same inputs with the same line."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from trainer.audio import MIN_MEL_FRAMES
from trainer.errors import UserError

INFERENCE_PRECISIONS = ("fp32", "bf16")
PRECISION_CHOICES = (*INFERENCE_PRECISIONS, "auto")


class BadInput(UserError, ValueError):
    """An array the vocoder cannot take (shape, bin count, dtype, NaN); its message is one line."""


def check_precision(precision: str, choices: Sequence[str] = PRECISION_CHOICES) -> str:
    if precision not in choices:
        raise UserError(f"precision {precision!r} is not one of {', '.join(choices)}")
    return precision


def expected_mel(num_mels: int, batched: bool) -> str:
    shapes = f"[{num_mels}, frames]" + (f" or [batch, {num_mels}, frames]" if batched else "")
    return f"expected a mel of shape {shapes} of floats"


def check_mel_shape(shape: tuple[int, ...], num_mels: int, what: str, batched: bool) -> None:
    """BadInput unless ``shape`` is [num_mels, frames >= 1] (or [batch >= 1, num_mels, frames] when ``batched``)."""
    expected = expected_mel(num_mels, batched)
    if len(shape) not in ((2, 3) if batched else (2,)) or shape[-2] != num_mels:
        transposed = " (transposed? pass mel.T)" if len(shape) >= 2 and shape[-1] == num_mels else ""
        raise BadInput(f"{what} of shape {shape} has the wrong shape{transposed}; {expected}")
    if shape[-1] < MIN_MEL_FRAMES or (len(shape) == 3 and shape[0] == 0):
        raise BadInput(f"{what} of shape {shape} is empty; {expected}, frames >= {MIN_MEL_FRAMES}")


def non_finite(what: str, shape: tuple[int, ...]) -> BadInput:
    return BadInput(f"{what} of shape {shape} contains NaN or infinite values (after conversion to float32)")


def checked_mel(mel: object, num_mels: int, what: str, batched: bool) -> np.ndarray:
    """A numpy (or array-like) mel as a contiguous float32 array, or BadInput naming what is wrong with it;
    any float or integer dtype is converted (float16 exactly)."""
    array = np.asarray(mel)
    if array.dtype.kind not in "fiu":
        raise BadInput(f"{what} ({array.dtype}, shape {array.shape}) is not numbers; {expected_mel(num_mels, batched)}")
    check_mel_shape(tuple(array.shape), num_mels, what, batched)
    with np.errstate(over="ignore"):  # an overflow is refused just below
        converted = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(converted).all():
        raise non_finite(what, tuple(array.shape))
    return converted


def checked_audio(samples: np.ndarray, sr: object) -> np.ndarray:
    """Mono samples as float32, or BadInput (not mono, not numbers, a bad rate, NaN)."""
    if samples.ndim != 1 or samples.dtype.kind not in "fiu":
        raise BadInput(f"audio of dtype {samples.dtype}, shape {samples.shape}: expected mono samples [samples] of "
                       f"floats in [-1, 1] (downmix first, e.g. wav.mean(axis=channel_axis))")
    if not isinstance(sr, (int, float, np.integer, np.floating)) or int(sr) != sr or sr <= 0:
        raise BadInput(f"sampling rate {sr!r} is not a positive whole number of Hz")
    samples = samples.astype(np.float32)
    if not np.isfinite(samples).all():
        raise BadInput("audio contains NaN or infinite samples")
    return samples


def resampled_for_mel(samples: np.ndarray, sr: int, sampling_rate: int, n_fft: int) -> np.ndarray:
    """Checked samples at ``sr`` resampled (soxr VHQ, as ``synth`` reads audio files) to ``sampling_rate``,
    or BadInput when they are shorter than one mel frame's window."""
    if int(sr) != sampling_rate and len(samples):
        import soxr

        samples = soxr.resample(samples, int(sr), sampling_rate, quality="VHQ").astype(np.float32)
    if len(samples) < n_fft:
        raise BadInput(f"audio is too short: {len(samples)} samples at {sampling_rate} Hz, need at least {n_fft}")
    return np.ascontiguousarray(samples)
