"""Parity of trainer.mrd / trainer.cqt with NVIDIA's bigvgan package (2.4.1), whose weights load strict.

Test-only packages: ``pip install --no-deps bigvgan==2.4.1 nnaudio==0.3.4`` (bigvgan also imports
huggingface_hub, librosa and matplotlib at import). Without bigvgan every test here but the
resolution / CQT-setting checks skips; without nnAudio the CQT parity tests skip.

``bigvgan.discriminators`` imports torchaudio at its top, and torchaudio has no build that loads with
this torch, so a stand-in ``torchaudio`` module is put in ``sys.modules`` just while it is imported.
The reference's CQT discriminator resamples with that stand-in's ``Resample``:

* when torchaudio's Python source is at hand (an installed torchaudio's files, read without importing
  it, or ``TORCHAUDIO_SRC`` naming a torchaudio wheel or a folder holding ``torchaudio/``; e.g.
  ``pip download --no-deps torchaudio==2.11.1 -d /tmp/ta``), the stand-in's ``Resample`` *is*
  torchaudio's class and resampling functions, compiled from that source, so the whole
  discriminator is compared;
* otherwise the stand-in's ``Resample`` is our ``SincResample``: the CQT discriminators are then
  compared with the resampler factored out (the same resampled input for both), and the resampler
  is checked on its own against a direct float64 evaluation of the windowed-sinc formula below.

Tolerance: every output and feature map must agree within 1e-5 of the reference tensor's largest
absolute value (float32 throughout; the spectrogram magnitudes and CQT reach ~100, so an absolute
bound would say little).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.metadata
import io
import math
import os
import sys
import types
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

from trainer.cqt import ConstantQTransform, MultiScaleSubbandCQTDiscriminator, SincResample
from trainer.cqt_layout import cqt_problem
from trainer.config import DiscriminatorConfig
from trainer.mrd import MultiResolutionDiscriminator

DEFAULT_RESOLUTIONS = DiscriminatorConfig().mrd_resolutions  # BigVGAN's

REL_TOL = 1e-5
TA_FILES = ("torchaudio/functional/functional.py", "torchaudio/transforms/_transforms.py")


def _torchaudio_sources() -> tuple[str, str] | None:
    """torchaudio's functional.py and _transforms.py as text, found without importing torchaudio."""
    where = os.environ.get("TORCHAUDIO_SRC")
    if where:
        path = Path(where)
        if path.is_file():
            with zipfile.ZipFile(path) as wheel:
                return tuple(wheel.read(f).decode() for f in TA_FILES)
        return tuple((path / f).read_text() for f in TA_FILES)
    try:
        dist = importlib.metadata.distribution("torchaudio")
    except importlib.metadata.PackageNotFoundError:
        return None
    files = [Path(dist.locate_file(f)) for f in TA_FILES]
    return tuple(f.read_text() for f in files) if all(f.is_file() for f in files) else None


def _torchaudio_resample_class() -> type | None:
    """torchaudio's own ``transforms.Resample``, compiled from its source with the two resampling
    functions it calls (pure torch: the native library is never loaded)."""
    sources = _torchaudio_sources()
    if sources is None:
        return None
    namespace = {"torch": torch, "math": math, "warnings": warnings, "Optional": Optional,
                 "Tensor": torch.Tensor, "_CPU": torch.device("cpu")}
    wanted = [(sources[0], {"_get_sinc_resample_kernel", "_apply_sinc_resample_kernel"}), (sources[1], {"Resample"})]
    for source, names in wanted:
        nodes = [n for n in ast.parse(source).body if getattr(n, "name", None) in names]
        assert {n.name for n in nodes} == names, f"torchaudio's source lacks {names}"
        exec(compile(ast.Module(nodes, type_ignores=[]), "torchaudio (source)", "exec"), namespace)
    return namespace["Resample"]


TORCHAUDIO_RESAMPLE = _torchaudio_resample_class()


@pytest.fixture(scope="module")
def ref():
    """``bigvgan.discriminators``, imported with a stand-in torchaudio that is removed again after."""
    pytest.importorskip("bigvgan")
    stand_in = types.ModuleType("torchaudio")
    stand_in.transforms = types.ModuleType("torchaudio.transforms")
    stand_in.transforms.Spectrogram = None  # only the MBD, not tested here, uses it
    stand_in.transforms.Resample = TORCHAUDIO_RESAMPLE or SincResample  # (orig_freq=, new_freq=) alike
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "torchaudio", stand_in)
        mp.setitem(sys.modules, "torchaudio.transforms", stand_in.transforms)
        mp.delitem(sys.modules, "bigvgan.discriminators", raising=False)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            module = importlib.import_module("bigvgan.discriminators")
    return module


def _build_ref(factory, cfg: dict):
    from bigvgan.env import AttrDict

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the reference prints and warns
        warnings.simplefilter("ignore")
        return factory(AttrDict(cfg)).eval()


def _waves(batch: int = 2, length: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    y = 0.3 * torch.randn(batch, 1, length, generator=g)
    y_hat = torch.tanh(torch.randn(batch, 1, length, generator=g))
    return y, y_hat


def _assert_same(ours, theirs) -> float:
    """Every score and feature map within REL_TOL of the reference tensor's max |value|; the worst
    relative difference."""
    worst = 0.0
    for kind, a_list, b_list in zip(("y_d_r", "y_d_g", "fmap_r", "fmap_g"), ours, theirs):
        assert len(a_list) == len(b_list), kind
        for i, (a, b) in enumerate(zip(a_list, b_list)):
            pairs = zip(a, b) if isinstance(a, list) else [(a, b)]
            if isinstance(a, list):
                assert len(a) == len(b), (kind, i)
            for j, (x, y) in enumerate(pairs):
                assert x.shape == y.shape, (kind, i, j, x.shape, y.shape)
                scale = y.abs().max().item()
                assert scale > 0, (kind, i, j)
                rel = (x.double() - y.double()).abs().max().item() / scale
                assert rel <= REL_TOL, f"{kind}[{i}][{j}]: relative difference {rel:.2e}"
                worst = max(worst, rel)
    return worst


# ---------------------------------------------------------------- MRD


@pytest.mark.filterwarnings("ignore:A window was not provided")  # the reference's stft
@pytest.mark.parametrize("channel_divisor", [1, 4])
def test_mrd_matches_bigvgan(ref, channel_divisor):
    cfg = {"use_spectral_norm": False, "discriminator_channel_mult": 1, "resolutions": DEFAULT_RESOLUTIONS}
    if channel_divisor != 1:
        cfg["mrd_channel_mult"] = 1 / channel_divisor
    theirs = _build_ref(ref.MultiResolutionDiscriminator, cfg)
    ours = MultiResolutionDiscriminator(DEFAULT_RESOLUTIONS, channel_divisor=channel_divisor).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    y, y_hat = _waves()
    with torch.no_grad():
        print(f"worst relative difference {_assert_same(ours(y, y_hat), theirs(y, y_hat)):.2e}")


def _cqt_cfg(fs: int, **overrides) -> dict:
    return {"sampling_rate": fs, **{f"cqtd_{k}": v for k, v in overrides.items()}}


CQT_CASES = {
    # BigVGAN v2's settings (its defaults) at 24 kHz
    "v2-24k": (24000, {}),
    # one small scale at 44.1 kHz whose top octaves are far enough below Nyquist for nnAudio's
    # early downsampling (by 4). (filters_scale stays 1: the reference fails at its first call otherwise.)
    "early-downsampling-44k": (44100, dict(filters=8, max_filters=8, dilations=[1, 2],
                                           hop_lengths=[512], n_octaves=[7], bins_per_octaves=[12])),
}


@pytest.mark.parametrize("case", list(CQT_CASES))
def test_cqt_matches_bigvgan(ref, case):
    pytest.importorskip("nnAudio")
    fs, kwargs = CQT_CASES[case]
    theirs = _build_ref(ref.MultiScaleSubbandCQTDiscriminator, _cqt_cfg(fs, **kwargs))
    ours = MultiScaleSubbandCQTDiscriminator(fs, **kwargs).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    # our own CQT kernels, filters and resampling kernel are theirs to the bit, before any loading
    for name, tensor in theirs.state_dict().items():
        if "cqt_transform" in name or "resample" in name:
            assert torch.equal(ours.state_dict()[name], tensor), name
    if case.startswith("early"):
        assert ours.discriminators[0].cqt_transform.downsample_factor == 4
        assert theirs.discriminators[0].cqt_transform.downsample_factor == 4
    ours.load_state_dict(theirs.state_dict(), strict=True)
    y, y_hat = _waves(length=2048)
    with torch.no_grad():
        print(f"worst relative difference {_assert_same(ours(y, y_hat), theirs(y, y_hat)):.2e}")


def test_cqt_widths_grow_by_filters_scale():
    """Where the reference breaks (filters_scale > 1), ours grows the widths, capped at max_filters."""
    d = MultiScaleSubbandCQTDiscriminator(24000, filters=4, max_filters=12, filters_scale=2, dilations=(1, 2, 4),
                                          hop_lengths=[256], n_octaves=[9], bins_per_octaves=[12]).discriminators[0]
    assert [c.out_channels for c in d.convs] == [4, 8, 12, 12, 12]
    y, _ = _waves(batch=1, length=1024)
    with torch.no_grad():
        score, fmap = d(y)
    assert len(fmap) == 5 and score.shape[:2] == (1, 1)


def test_cqt_transform_matches_nnaudio():
    """The CQT alone, on a waveform at the doubled rate, against nnAudio's CQT2010v2 as BigVGAN calls it."""
    features = pytest.importorskip("nnAudio.features")
    fs2, hop, octaves, bins = 48000, 256, 9, 36
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = features.cqt.CQT2010v2(sr=fs2, hop_length=hop, n_bins=octaves * bins, bins_per_octave=bins,
                                        output_format="Complex", pad_mode="constant")
    ours = ConstantQTransform(fs2, hop, octaves * bins, bins)
    x, _ = _waves(length=4096)
    z_ref = theirs(x).permute(0, 3, 2, 1)  # [B, bins, frames, (re, im)] -> [B, (re, im), frames, bins]
    z = ours(x)
    assert z.shape == z_ref.shape
    rel = ((z.double() - z_ref.double()).abs().max() / z_ref.abs().max()).item()
    print(f"relative difference {rel:.2e}")
    assert rel <= REL_TOL


def _windowed_sinc_resample(x: np.ndarray, orig: int, new: int, zeros: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """Direct float64 evaluation, one output sample at a time, of band-limited resampling:
    y[j] = Σ_i x[i] · c · sinc(c (i - j·orig/new)) · cos²(π c (i - j·orig/new) / (2 · zeros)) over
    |c (i - j·orig/new)| ≤ zeros, with c = rolloff · min(orig, new) / orig and sinc(u) = sin(πu)/(πu)."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    c = rolloff * min(orig, new) / orig
    i = np.arange(len(x))
    out = np.empty(math.ceil(len(x) * new / orig))
    for j in range(len(out)):
        u = c * (i - j * orig / new)
        inside = np.abs(u) <= zeros
        out[j] = np.sum(x[inside] * c * np.sinc(u[inside]) * np.cos(np.pi * u[inside] / (2 * zeros)) ** 2)
    return out


@pytest.mark.parametrize("orig, new", [(24000, 48000), (22050, 44100), (3, 2), (2, 3)])
def test_resampler_matches_windowed_sinc_formula(orig, new):
    x = np.random.default_rng(0).standard_normal(300)
    expected = _windowed_sinc_resample(x, orig, new)
    got = SincResample(orig, new)(torch.from_numpy(x).float()[None, None])[0, 0].double().numpy()
    assert got.shape == expected.shape
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    print(f"relative difference {rel:.2e}")
    assert rel <= REL_TOL


@pytest.mark.skipif(TORCHAUDIO_RESAMPLE is None, reason="torchaudio's source is absent (see TORCHAUDIO_SRC)")
@pytest.mark.parametrize("orig, new", [(24000, 48000), (3, 2)])
def test_resampler_matches_torchaudio(orig, new):
    x = torch.randn(2, 1, 1000, generator=torch.Generator().manual_seed(0))
    theirs = TORCHAUDIO_RESAMPLE(orig, new)
    ours = SincResample(orig, new)
    assert torch.equal(ours.kernel, theirs.kernel)
    diff = (ours(x) - theirs(x)).abs().max().item()
    print(f"max abs difference {diff:.2e}")
    assert diff <= 1e-6


def test_cqt_problem():
    assert cqt_problem(24000, 512, 9, 24) is None
    assert cqt_problem(44100, 256, 9, 48) is None
    problem = cqt_problem(16000, 256, 9, 24)  # 9 octaves from 32.7 Hz reach ~16.3 kHz
    assert problem and "Nyquist" in problem and "\n" not in problem
    with pytest.raises(ValueError):
        ConstantQTransform(32000, 256, 9 * 24, 24)
    assert "multiple" in cqt_problem(24000, 200, 9, 24)
    assert "multiple" in cqt_problem(44100, 384, 7, 12)  # early downsampling by 4 first: needs 256
    assert "positive" in cqt_problem(24000, 0, 9, 24)


# ---------------------------------------------------------------- both


def test_discriminators_run_under_bf16_autocast():
    """The spectrogram and the CQT stay float32 under autocast; the conv stacks run in bfloat16."""
    mrd = MultiResolutionDiscriminator([[512, 50, 240]], channel_divisor=8)
    cqt = MultiScaleSubbandCQTDiscriminator(24000, filters=8, hop_lengths=[256], n_octaves=[9], bins_per_octaves=[12])
    y, y_hat = _waves(batch=1, length=1024)
    y_hat.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mrd.discriminators[0].spectrogram(y).dtype == torch.float32
        d = cqt.discriminators[0]
        assert d.cqt_transform(d.resample(y)).dtype == torch.float32
        loss = 0
        for disc in (mrd, cqt):
            _, y_d_gs, _, fmap_gs = disc(y, y_hat)
            assert all(torch.isfinite(s).all() for s in y_d_gs)
            assert fmap_gs[0][-1].dtype == torch.bfloat16
            loss = loss + sum(s.float().mean() for s in y_d_gs)
    loss.backward()
    assert torch.isfinite(y_hat.grad).all() and y_hat.grad.abs().sum() > 0
