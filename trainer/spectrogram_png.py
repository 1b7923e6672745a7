"""Spectrogram pictures for validation samples, written as PNG with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from trainer.colormap import viridis


def colorize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """[H, W] values -> [H, W, 3] uint8, ``low`` dark purple, ``high`` yellow."""
    return viridis((values - low) / max(high - low, 1e-9))


def write_comparison(path: Path, real_mel: np.ndarray, generated_mel: np.ndarray, scale: int = 2) -> None:
    """Real log-mel above generated log-mel (low frequencies at the bottom of each), same colour scale."""
    low = min(real_mel.min(), generated_mel.min())
    high = max(real_mel.max(), generated_mel.max())
    gap = np.full((4, real_mel.shape[1], 3), 255, np.uint8)
    image = np.concatenate([colorize(real_mel[::-1], low, high), gap, colorize(generated_mel[::-1], low, high)])
    image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(image).save(path, format="PNG")
