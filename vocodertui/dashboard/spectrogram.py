"""A sample WAV as a terminal picture: log-power spectrogram on a mel-like axis, two pixels per cell.

Read with soundfile, computed with numpy: the dashboard never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
from rich.color import Color
from rich.style import Style
from rich.text import Text

from trainer.colormap import viridis

N_FFT = 1024
HOP = 256
FLOOR_DB = -80.0
# what read_wav raises for a missing, unreadable or malformed file
READ_ERRORS = (OSError, soundfile.SoundFileError)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """The first channel as floats (in [-1, 1] for PCM) and the sampling rate, from any file soundfile reads."""
    samples, rate = soundfile.read(path, dtype="float64", always_2d=True)
    return samples[:, 0], rate


def log_spectrograms(*audios: np.ndarray) -> list[np.ndarray]:
    """Each signal's dB power [frequency bins, frames], relative to the loudest bin of all of them and
    floored at FLOOR_DB: signals shown together share one colour scale."""
    db = [10.0 * np.log10(np.maximum(_power(audio), 1e-12)) for audio in audios]
    top = max((d.max() for d in db), default=0.0)
    return [np.maximum(d - top, FLOOR_DB) for d in db]


def _power(audio: np.ndarray) -> np.ndarray:
    if len(audio) < N_FFT:
        audio = np.pad(audio, (0, N_FFT - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, N_FFT)[::HOP] * np.hanning(N_FFT)
    return np.abs(np.fft.rfft(frames, axis=1)).T ** 2


def to_grid(db: np.ndarray, sampling_rate: int, rows: int, cols: int) -> np.ndarray:
    """Resample to [rows, cols] in [0, 1]: mel-spaced frequency rows (low at the bottom), time columns."""
    mel_max = 2595.0 * np.log10(1.0 + sampling_rate / 2 / 700.0)
    edges_hz = 700.0 * (10 ** (np.linspace(0.0, mel_max, rows + 1) / 2595.0) - 1.0)
    edges = np.clip((edges_hz / (sampling_rate / 2) * (db.shape[0] - 1)).round().astype(int), 0, db.shape[0] - 1)
    bands = np.stack([db[lo:max(hi, lo + 1)].mean(axis=0) for lo, hi in zip(edges[:-1], edges[1:])])
    col_edges = np.linspace(0, db.shape[1], cols + 1).astype(int)
    grid = np.stack([bands[:, lo:max(hi, lo + 1)].mean(axis=1) for lo, hi in zip(col_edges[:-1], col_edges[1:])], axis=1)
    return (grid[::-1] - FLOOR_DB) / -FLOOR_DB


# colour() runs for every pixel of the picture: a table of 256 levels keeps it cheap
_COLOURS = [Color.from_rgb(*rgb) for rgb in viridis(np.linspace(0.0, 1.0, 256))]


def colour(value: float) -> Color:
    return _COLOURS[round(min(max(value, 0.0), 1.0) * 255)]


def render_half_blocks(grid: np.ndarray) -> Text:
    """Two grid rows per text line: '▀' in the upper pixel's colour on the lower pixel's colour."""
    text = Text()
    rows = grid.shape[0] - grid.shape[0] % 2
    for top in range(0, rows, 2):
        for upper, lower in zip(grid[top], grid[top + 1]):
            text.append("▀", Style(color=colour(upper), bgcolor=colour(lower)))
        if top + 2 < rows:
            text.append("\n")
    return text
