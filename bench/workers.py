"""What the side-by-side benchmarks share: the batch both sides get, and a worker process per side
that answers one JSON command per line, so the parent can alternate them step by step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch


def noise_audio(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, samples, generator=g) * 2 - 1) * 0.5


class Worker:
    """``script --worker KIND *extra`` in its own process; ``options`` go to its ``setup`` command,
    whose answer is kept in ``setup``."""

    def __init__(self, script: Path, kind: str, extra: list[str], **options):
        command = [sys.executable, str(script), "--worker", kind, *extra]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.setup = self.call("setup", **options) if options else {}

    def call(self, cmd: str, **fields) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited (code {self.proc.wait()}) on {cmd}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
