"""Numbers as people read them in tables and messages."""

from __future__ import annotations

from typing import Optional

from rich import filesize


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def format_bytes(n: Optional[float]) -> str:
    """Decimal units (1 kB = 1000 bytes), as disks and ``ls -h --si`` count them."""
    return "-" if n is None else filesize.decimal(int(n))
