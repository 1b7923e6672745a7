"""The viridis colour map, shared by the trainer's spectrogram PNGs and the dashboard.

numpy only: the dashboard imports this module, and it never imports torch.
"""

from __future__ import annotations

import numpy as np

# matplotlib's viridis (Nathaniel J. Smith, Stefan van der Walt and Eric Firing, CC0; the 256-entry
# ``_viridis_data`` of matplotlib/_cm_listed.py): every fifth entry, 0 to 255, as 8-bit RGB.
# Interpolated linearly and rounded, these 52 stay within 1.5 levels (of 255) of the full table.
VIRIDIS = np.frombuffer(bytes.fromhex("""
    440154 46085c 471063 481769 481d6f 482475 472a7a 46307e 453781 433d84 414287 3f4889 3d4e8a
    3a538b 38598c 355e8d 33638d 31688e 2e6d8e 2c718e 2a768e 297b8e 27808e 25848e 23898e 218e8d
    20928c 1f978b 1e9c89 1fa188 21a585 24aa83 28ae80 2eb37c 35b779 3dbc74 46c06f 50c46a 5ac864
    65cb5e 70cf57 7cd250 89d548 95d840 a2da37 b0dd2f bddf26 cae11f d8e219 e5e419 f1e51d fde725
"""), dtype=np.uint8).reshape(-1, 3)


def viridis(values: np.ndarray | float) -> np.ndarray:
    """Values in [0, 1] (clipped) -> uint8 RGB with a trailing axis of 3: 0 dark purple, 1 yellow."""
    x = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(VIRIDIS))
    rgb = np.stack([np.interp(x, stops, VIRIDIS[:, channel]) for channel in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)
