"""`export --format onnx` and `synth --backend onnxruntime`: the exported graph, run by onnxruntime, gives
torch's waveform for both generators, carries what a runtime needs in its metadata, and synthesises
without torch (in a process where importing torch fails)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from trainer import checkpoint as ckpt
from trainer import registry
from trainer.audio import load_audio
from trainer.config import load_config
from trainer.inference import BadInput, Vocoder
from trainer.mel import input_mel
from trainer.mel_numpy import MelParams, NumpyMel
from trainer.onnx_vocoder import METADATA_KEYS, OnnxVocoder
from trainer.synth import synthesize_many
from vocodertui.cli import main

from conftest import LJSPEECH_MINI, REPO, write_config

GENERATORS = {"hifigan": "demo", "bigvgan": "demo_bigvgan"}
STEP = 7
# the demo generators with one residual kernel size of three: a third of the graph, every kind of layer, and
# torch.export's tracing (most of an export's time) a third as long
ONE_KERNEL = {"resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]}


def real_clip(demo_corpus: Path) -> Path:
    """A LJSpeech clip when ../shared/data/ljspeech-mini is there, else a demo-corpus clip."""
    clips = sorted((LJSPEECH_MINI / "wavs").glob("*.wav")) or sorted((demo_corpus / "wavs").glob("*.wav"))
    return clips[0]


def crafted_checkpoint(folder: Path, base: str) -> Path:
    """One of our checkpoints holding a freshly initialised generator (its output is well above 1e-4: ~0.3)."""
    cfg = load_config(str(write_config(folder / f"{base}.yaml", base, generator=ONE_KERNEL)))
    torch.manual_seed(0)
    generator = registry.build_generator(cfg)
    path = folder / f"ckpt_{STEP:08d}.pt"
    ckpt.save_atomic({"format": ckpt.FORMAT, "version": ckpt.VERSION, "step": STEP, "generator": generator.state_dict(),
                      "config": cfg.to_dict(), "signature": cfg.model_signature()}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_corpus) -> dict[str, tuple[Path, Path, str]]:
    """For each generator type: (checkpoint, model.onnx, what ``export`` printed)."""
    made = {}
    for kind, config_name in GENERATORS.items():
        folder = tmp_path_factory.mktemp(kind)
        checkpoint = crafted_checkpoint(folder, config_name)
        out = folder / "model.onnx"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["export", "--format", "onnx", "--checkpoint", str(checkpoint), "--out", str(out),
                         "--verify-input", str(real_clip(demo_corpus))])
        assert code == 0
        made[kind] = (checkpoint, out, printed.getvalue())
    return made


@pytest.mark.parametrize("kind", GENERATORS)
def test_onnxruntime_gives_torchs_waveform_at_any_length_and_batch(exported, kind, demo_corpus):
    checkpoint, model, printed = exported[kind]
    opset = next(o.version for o in onnx.load(str(model)).opset_import if o.domain in ("", "ai.onnx"))
    assert f"({kind}, ONNX opset {opset}, dynamic batch and frames)" in printed and "matches torch within" in printed
    reference, runtime = Vocoder.from_checkpoint(checkpoint), OnnxVocoder(model)
    mel = reference.mel(load_audio(real_clip(demo_corpus), reference.sampling_rate).samples, reference.sampling_rate)
    for frames in (1, 123, 160):  # none of them the length the graph was traced at (50)
        expected = reference(mel[:, :frames])
        assert np.abs(expected).max() > 0.05
        np.testing.assert_allclose(runtime(mel[:, :frames]), expected, rtol=0, atol=1e-4)
    batch = np.stack([mel[:, :40], mel[:, 40:80], mel[:, 80:120]])
    alone = [runtime(m) for m in batch]
    np.testing.assert_allclose(runtime(batch), np.stack(alone), rtol=0, atol=1e-5)
    listed = runtime([mel[:, :17], mel[:, :90]])
    np.testing.assert_allclose(listed[0], runtime(mel[:, :17]), rtol=0, atol=1e-5)
    assert [len(a) for a in listed] == [17 * 256, 90 * 256]


@pytest.mark.parametrize("kind", GENERATORS)
def test_the_model_carries_what_a_runtime_needs(exported, kind):
    checkpoint, model, _ = exported[kind]
    proto = onnx.load(str(model))
    props = {p.key: p.value for p in proto.metadata_props}
    assert set(METADATA_KEYS) <= set(props)
    cfg = load_config(GENERATORS[kind])
    assert props["config_name"] == f'"{GENERATORS[kind]}"'
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert (props["sampling_rate"], props["hop_size"], props["num_mels"]) == ("22050", "256", str(cfg.audio.num_mels))
    assert (props["generator"], props["step"], props["opset"]) == (f'"{kind}"', str(STEP), str(opset))
    assert props["source_checkpoint"] == f'"{checkpoint.name}"' and props["vocodertui_version"] != '"unknown"'
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", cfg.audio.num_mels, "frames"]
    # weight norm folded: no weight_g / weight_v left, one weight per convolution
    assert not [i.name for i in proto.graph.initializer if i.name.endswith(("weight_g", "weight_v"))]
    runtime = OnnxVocoder(model)
    assert (runtime.sampling_rate, runtime.hop_size, runtime.step, runtime.precision) == (22050, 256, STEP, "fp32")


def test_the_numpy_mel_is_the_torch_mel(demo_corpus):
    for name in ("demo", "bigvgan_44k_128band"):
        a = load_config(name).audio
        samples = load_audio(real_clip(demo_corpus), a.sampling_rate).samples
        expected = input_mel(a)(torch.from_numpy(samples)[None])[0].numpy()
        got = NumpyMel(MelParams(a.sampling_rate, a.n_fft, a.hop_size, a.win_size, a.num_mels, a.fmin, a.fmax))(samples)
        assert got.shape == expected.shape and got.dtype == np.float32
        # within 1e-4 of each log value: torch's own float32 STFT is up to ~5e-5 (relative) from the float64
        # result in the quietest bins of a real clip, the numpy one ~1e-7
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_synth_with_onnxruntime_needs_no_torch_and_writes_what_torch_writes(exported, demo_corpus, tmp_path):
    checkpoint, model, _ = exported["hifigan"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    clip = real_clip(demo_corpus)
    (inputs / "speech.wav").write_bytes(clip.read_bytes())
    reference = Vocoder.from_checkpoint(checkpoint)
    mel = reference.mel(load_audio(clip, 22050).samples, 22050)
    np.save(inputs / "half.npy", mel[:, :150].astype(np.float16))  # accepted: float16 converts exactly
    np.save(inputs / "bins.npy", np.zeros((64, 10), np.float32))
    np.save(inputs / "flat.npy", np.zeros(80, np.float32))
    blocker = tmp_path / "no-torch"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)])}
    assert subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True).returncode != 0
    done = subprocess.run([sys.executable, "-m", "vocodertui.cli", "synth", "--backend", "onnxruntime", "--checkpoint",
                           str(model), "--input", str(inputs), "--out", str(tmp_path / "onnx")],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "wrote 2 files" in done.stdout and ", fp32" in done.stdout
    failures = [line.strip() for line in done.stderr.splitlines() if line.startswith("  ")]
    assert sorted(failures) == [
        f"{inputs / 'bins.npy'} (float32, shape (64, 10)) has the wrong shape; expected a mel of shape [80, frames] of floats",
        f"{inputs / 'flat.npy'} (float32, shape (80,)) has the wrong shape; expected a mel of shape [80, frames] of floats",
    ]
    api = ("import sys, numpy as np; from vocodertui import OnnxVocoder; v = OnnxVocoder(sys.argv[1]); "
           "np.save(sys.argv[3], v(np.load(sys.argv[2]))); print(v.sampling_rate, v.hop_size)")
    np.save(tmp_path / "mel.npy", mel)
    done = subprocess.run([sys.executable, "-c", api, str(model), str(tmp_path / "mel.npy"), str(tmp_path / "api.npy")],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == [str(reference.sampling_rate), str(reference.hop_size)], done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "api.npy"), reference(mel), rtol=0, atol=1e-4)
    synthesize_many(checkpoint, [inputs], tmp_path / "torch")
    for name in ("speech.wav", "half.wav"):
        ours, theirs = sf.read(tmp_path / "onnx" / name)[0], sf.read(tmp_path / "torch" / name)[0]
        assert len(ours) == len(theirs) and np.abs(theirs).max() > 0.05
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


BAD_MELS = {
    "wrong bins": np.zeros((64, 10), np.float32),
    "1-D": np.zeros(80, np.float32),
    "transposed": np.zeros((10, 80), np.float32),
    "NaN": np.full((80, 4), np.nan, np.float32),
    "complex": np.zeros((80, 4), np.complex64),
    "empty": np.zeros((80, 0), np.float32),
}


@pytest.mark.parametrize("mel", BAD_MELS.values(), ids=BAD_MELS.keys())
def test_a_bad_mel_is_refused_by_onnxruntime_as_by_torch(exported, mel):
    checkpoint, model, _ = exported["hifigan"]
    with pytest.raises(BadInput) as by_torch:
        Vocoder.from_checkpoint(checkpoint)(mel)
    with pytest.raises(BadInput) as by_onnx:
        OnnxVocoder(model)(mel)
    assert str(by_onnx.value) == str(by_torch.value) and "\n" not in str(by_onnx.value)


def test_a_float16_mel_is_vocoded_as_its_float32_values(exported):
    runtime = OnnxVocoder(exported["hifigan"][1])
    mel = np.random.default_rng(0).normal(-5, 2, (80, 30)).astype(np.float16)
    np.testing.assert_array_equal(runtime(mel), runtime(mel.astype(np.float32)))


def run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_synth_refuses_what_does_not_go_together_in_one_line(exported, tmp_path, capsys):
    checkpoint, model, _ = exported["hifigan"]
    mel = tmp_path / "m.npy"
    np.save(mel, np.zeros((80, 5), np.float32))
    not_onnx = tmp_path / "garbage.onnx"
    not_onnx.write_bytes(b"not a model")
    bare = tmp_path / "bare.onnx"
    proto = onnx.load(str(model))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    cases = {
        ("--backend", "onnxruntime", "--precision", "bf16", "--checkpoint", str(model)): "--precision bf16 needs --backend torch",
        ("--backend", "onnxruntime", "--checkpoint", str(checkpoint)): "runs an exported .onnx model",
        ("--checkpoint", str(model)): "is an ONNX model: synthesise with it with --backend onnxruntime",
        ("--backend", "onnxruntime", "--config", "demo", "--checkpoint", str(model)): "drop --config",
        ("--backend", "onnxruntime", "--checkpoint", str(not_onnx)): "is not a readable ONNX model",
        ("--backend", "onnxruntime", "--checkpoint", str(bare)): "without vocodertui's metadata",
    }
    for args, message in cases.items():
        code, err = run(["synth", *args, "--input", str(mel), "--out", str(tmp_path / "o.wav")], capsys)
        assert code == 1 and message in err and len(err.splitlines()) == 1, (args, err)
    assert not (tmp_path / "o.wav").exists()
    code, _ = run(["synth", "--backend", "onnxruntime", "--precision", "auto", "--checkpoint", str(model),
                   "--input", str(mel), "--out", str(tmp_path / "o.wav")], capsys)
    assert code == 0 and sf.info(str(tmp_path / "o.wav")).frames == 5 * 256


def test_export_refuses_a_corrupt_checkpoint_and_leaves_nothing(tmp_path, capsys):
    corrupt = tmp_path / "ckpt_00000009.pt"
    corrupt.write_bytes(b"\x00" * 100)
    out = tmp_path / "out" / "model.onnx"
    code, err = run(["export", "--format", "onnx", "--checkpoint", str(corrupt), "--out", str(out)], capsys)
    assert code == 1 and str(corrupt) in err and len(err.splitlines()) == 1
    assert not out.parent.exists()
    code, err = run(["export", "--checkpoint", str(corrupt), "--out", str(out)], capsys)
    assert code == 1 and "add --format onnx" in err
    code, err = run(["export", "--format", "onnx", "--checkpoint", str(corrupt), "--out", str(tmp_path / "model")], capsys)
    assert code == 1 and "ends in .onnx, e.g." in err


def test_an_export_that_fails_parity_is_refused_and_leaves_nothing(exported, tmp_path, capsys, monkeypatch):
    checkpoint, model, _ = exported["hifigan"]
    proto = onnx.load(str(model))
    del proto.metadata_props[:]
    monkeypatch.setattr("trainer.onnx_export.onnx_model", lambda generator, cfg: proto)  # no second export: the graph is the same
    monkeypatch.setattr("trainer.onnx_export.PARITY_TOLERANCE", -1.0)  # any difference fails
    out = tmp_path / "model.onnx"
    code, err = run(["export", "--format", "onnx", "--checkpoint", str(checkpoint), "--out", str(out)], capsys)
    assert code == 1 and "differs from torch's by" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []
    code, err = run(["export", "--format", "onnx", "--checkpoint", str(checkpoint), "--out", str(model)], capsys)
    assert code == 1 and "exists; remove it or choose another --out" in err
