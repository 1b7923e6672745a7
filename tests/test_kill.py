"""Crash-proof resume: SIGKILL at random moments, including mid-checkpoint; the end is bit-identical."""

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from kill_soak import kill_soak  # noqa: E402


@pytest.mark.parametrize("base,kills", [("demo", 4), ("demo_bigvgan", 2)])  # BigVGAN + MRD: a recipe of today
def test_sigkill_at_random_moments_then_resume_latest_ends_bit_identical(base, kills, tmp_path):
    result = kill_soak(kills=kills, seed=7, workdir=tmp_path, target=30, log=lambda _line: None, base=base)
    assert result["kills"] == kills and result["resumes"] >= 2
    assert result["identical"], result["mismatched"]
