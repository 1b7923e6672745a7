"""What a benchmark names its CPU by."""

from __future__ import annotations

from pathlib import Path

# the flags that change which kernels torch runs
NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def cpu_name() -> str:
    """The model name with its family and model numbers (a VM may show only "AMD EPYC", the same for
    Zen 4 and Zen 5) and the notable flags it has."""
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
        if not line.strip():
            break
    flags = set(fields.get("flags", "").split())
    return (f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}; "
            f"{' '.join(f for f in NOTABLE_FLAGS if f in flags) or 'none of ' + ' '.join(NOTABLE_FLAGS)})")
