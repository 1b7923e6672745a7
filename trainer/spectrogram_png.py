"""Spectrogram pictures for validation samples, written as PNG with numpy and zlib alone."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# viridis at nine evenly spaced points; colours in between are interpolated
_VIRIDIS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
], dtype=np.float64)


def colorize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """[H, W] values -> [H, W, 3] uint8, ``low`` dark purple, ``high`` yellow."""
    scaled = np.clip((values - low) / max(high - low, 1e-9), 0, 1) * (len(_VIRIDIS) - 1)
    index = np.minimum(scaled.astype(int), len(_VIRIDIS) - 2)
    frac = (scaled - index)[..., None]
    return (_VIRIDIS[index] * (1 - frac) + _VIRIDIS[index + 1] * frac).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    height, width, _ = rgb.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")


def write_comparison(path: Path, real_mel: np.ndarray, generated_mel: np.ndarray, scale: int = 2) -> None:
    """Real log-mel above generated log-mel (low frequencies at the bottom of each), same colour scale."""
    low = min(real_mel.min(), generated_mel.min())
    high = max(real_mel.max(), generated_mel.max())
    gap = np.full((4, real_mel.shape[1], 3), 255, np.uint8)
    image = np.concatenate([colorize(real_mel[::-1], low, high), gap, colorize(generated_mel[::-1], low, high)])
    image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    path.write_bytes(encode_png(image))
