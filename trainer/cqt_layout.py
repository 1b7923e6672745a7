"""Where the CQT discriminator's bins fall (``discriminator.cqt_*``), without torch: the config's
validation asks ``cqt_problem`` before anything is built, and ``trainer/cqt.py`` builds from the same
arithmetic.
"""

from __future__ import annotations

import math

CQT_FMIN = 32.70  # Hz, C1: nnAudio's default, which BigVGAN keeps


def top_octave(n_bins: int, bins_per_octave: int, fmin: float) -> tuple[int, float, float]:
    """(octaves, lowest and highest centre frequency of the top octave) for n_bins bins from fmin."""
    n_octaves = math.ceil(n_bins / bins_per_octave)
    top_bins = n_bins % bins_per_octave or bins_per_octave
    fmax_t = fmin * 2 ** (n_octaves - 1) * 2 ** ((top_bins - 1) / bins_per_octave)
    return n_octaves, fmax_t / 2 ** (1 - 1 / bins_per_octave), fmax_t


def early_downsample_count(sr: float, hop_length: int, n_octaves: int, fmax_t: float, q: float) -> int:
    """How many times nnAudio (after librosa) halves the input before the CQT: only while even the
    top octave's band (Hann window bandwidth 1.5 bins) stays far below Nyquist and the hop allows it."""
    cutoff = fmax_t * (1 + 0.5 * 1.5 / q)
    by_band = max(0, math.ceil(math.log2(0.85 * (sr // 2) / cutoff)) - 2)
    by_hop = max(0, math.ceil(math.log2(hop_length)) - n_octaves + 1)
    return min(by_band, by_hop)


def cqt_problem(sampling_rate: int, hop_length: int, n_octaves: int, bins_per_octave: int) -> str | None:
    """Why one ``DiscriminatorCQT`` scale can't be built or run for audio at ``sampling_rate``, or None."""
    values = {"sampling_rate": sampling_rate, "hop_length": hop_length, "n_octaves": n_octaves,
              "bins_per_octave": bins_per_octave}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} must be an integer, got {value!r}"
        if value <= 0:
            return f"{name} must be positive, got {value}"
    _, _, fmax_t = top_octave(n_octaves * bins_per_octave, bins_per_octave, CQT_FMIN)
    if fmax_t > sampling_rate:  # the CQT runs at twice the rate: its Nyquist is sampling_rate
        return (f"{n_octaves} octaves from {CQT_FMIN} Hz reach {fmax_t:.0f} Hz, above the Nyquist frequency "
                f"({sampling_rate} Hz) of the audio resampled to {2 * sampling_rate} Hz")
    q = 1.0 / (2 ** (1 / bins_per_octave) - 1)
    factor = 2 ** early_downsample_count(2 * sampling_rate, hop_length, n_octaves, fmax_t, q)
    step = factor * 2 ** (n_octaves - 1)
    if hop_length % step:
        return (f"hop_length {hop_length} must be a multiple of {step}: it is halved for each of the "
                f"{n_octaves} octaves" + (f" after {factor}x early downsampling" if factor > 1 else ""))
    return None
