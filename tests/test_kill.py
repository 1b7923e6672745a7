"""Crash-proof resume: SIGKILL at random moments, including mid-checkpoint; the end is bit-identical."""

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from kill_soak import kill_soak  # noqa: E402


def test_sigkill_at_random_moments_then_resume_latest_ends_bit_identical(tmp_path):
    result = kill_soak(kills=4, seed=7, workdir=tmp_path, target=30, log=lambda _line: None)
    assert result["kills"] == 4 and result["resumes"] >= 2
    assert result["identical"], result["mismatched"]
