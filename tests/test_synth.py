"""synth and export: our checkpoints and jik876's generator files give the same audio."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from trainer.config import config_from_dict, load_config
from trainer.errors import UserError
from trainer.launch import StartRequest, start_training
from trainer.mel import input_mel
from trainer.models import Generator
from trainer.inference import Vocoder
from trainer.export import export
from trainer.synth import synthesize
from vocodertui.cli import main

from conftest import write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_corpus) -> Path:
    logs = tmp_path_factory.mktemp("logs")
    config = write_config(logs / "c.yaml", schedule={"log_every": 1, "val_samples": 0})
    start_training(StartRequest(config=str(config), data=str(demo_corpus), run="r", logs_dir=str(logs), target_step=2), console=False)
    return logs / "r" / "checkpoints" / "ckpt_00000002.pt"


def read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def test_synth_from_wav_and_from_mel(trained, demo_corpus, tmp_path):
    wav = next((demo_corpus / "wavs").glob("*.wav"))
    seconds = synthesize(trained, wav, tmp_path / "from_wav.wav")
    audio, sr = sf.read(tmp_path / "from_wav.wav")
    assert sr == 22050 and len(audio) == (len(sf.read(wav)[0]) // 256) * 256
    assert seconds == pytest.approx(len(audio) / 22050)

    # the checkpoint's generator, as trained (weight norm not folded), applied to the wav's mel
    state = torch.load(trained, weights_only=True)
    cfg = config_from_dict(state["config"])
    generator = Generator(cfg.generator, cfg.audio.num_mels).eval()
    generator.load_state_dict(state["generator"])
    mel = input_mel(cfg.audio)(torch.from_numpy(sf.read(wav, dtype="float32")[0])[None])
    with torch.no_grad():
        expected = generator(mel)[0, 0].numpy()
    assert np.abs(expected).max() > 100 / 32768  # well above the 16-bit file's resolution
    np.testing.assert_allclose(audio, np.clip(expected, -1, 1), rtol=0, atol=2 / 32768)

    np.save(tmp_path / "mel.npy", mel[0].numpy())
    synthesize(trained, tmp_path / "mel.npy", tmp_path / "from_mel.wav")
    np.testing.assert_array_equal(read(tmp_path / "from_wav.wav"), read(tmp_path / "from_mel.wav"))


def test_exported_generator_is_a_jik876_file_that_synthesizes_the_same(trained, demo_corpus, tmp_path):
    out = tmp_path / "export" / "g_00000002"
    assert export(trained, out) == []
    saved = torch.load(out, weights_only=True)
    assert list(saved) == ["generator"] and "conv_pre.weight_g" in saved["generator"]
    ref_config = json.loads((out.parent / "config.json").read_text())
    assert ref_config["upsample_initial_channel"] == 64 and ref_config["resblock"] == "1"
    wav = next((demo_corpus / "wavs").glob("*.wav"))
    synthesize(trained, wav, tmp_path / "ours.wav")
    synthesize(out, wav, tmp_path / "jik876.wav")  # config.json found beside the g_ file
    np.testing.assert_array_equal(read(tmp_path / "ours.wav"), read(tmp_path / "jik876.wav"))
    with pytest.raises(UserError, match="exists"):
        export(trained, out)


def test_bf16_synth_is_close_to_fp32_but_not_the_same_computation(trained, demo_corpus, tmp_path):
    wav = next((demo_corpus / "wavs").glob("*.wav"))
    synthesize(trained, wav, tmp_path / "fp32.wav")
    assert main(["synth", "--checkpoint", str(trained), "--input", str(wav), "--out", str(tmp_path / "bf16.wav"),
                 "--precision", "bf16"]) == 0
    fp32, bf16 = read(tmp_path / "fp32.wav"), read(tmp_path / "bf16.wav")
    assert fp32.shape == bf16.shape and not np.array_equal(fp32, bf16)
    snr_db = 10 * np.log10(np.sum(fp32.astype(np.float64) ** 2) / np.sum((bf16 - fp32).astype(np.float64) ** 2))
    assert snr_db > 30


def test_unknown_precision_is_one_line(trained, demo_corpus, tmp_path, capsys):
    wav = next((demo_corpus / "wavs").glob("*.wav"))
    code = main(["synth", "--checkpoint", str(trained), "--input", str(wav), "--out", str(tmp_path / "o.wav"),
                 "--precision", "fp16"])
    err = capsys.readouterr().err
    assert code == 1 and err == "vocodertui: error: precision 'fp16' is not one of fp32, bf16, auto\n"
    assert not (tmp_path / "o.wav").exists()


def test_jik876_generator_without_config_is_refused(trained, tmp_path):
    lone = tmp_path / "g_00000001"
    torch.save({"generator": torch.load(trained, weights_only=True)["generator"]}, lone)
    with pytest.raises(UserError, match="jik876 generator: pass --config"):
        synthesize(lone, lone, tmp_path / "x.wav")


@pytest.mark.parametrize("make_input,message", [
    (lambda p: np.save(p / "in.npy", np.zeros((64, 10), np.float32)), "expected a mel of shape \\[80, frames\\]"),
    (lambda p: (p / "in.npy").write_bytes(b"not numpy"), "not a readable .npy file"),
])
def test_bad_synth_input_is_one_line(trained, tmp_path, capsys, make_input, message):
    make_input(tmp_path)
    code = main(["synth", "--checkpoint", str(trained), "--input", str(tmp_path / "in.npy"), "--out", str(tmp_path / "o.wav")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("vocodertui: error: ")
    assert re.search(message, err)
    assert not (tmp_path / "o.wav").exists()


def test_synth_refuses_a_config_for_another_model(trained, tmp_path, capsys, demo_corpus):
    wav = next((demo_corpus / "wavs").glob("*.wav"))
    code = main(["synth", "--checkpoint", str(trained), "--config", "hifigan_v1", "--input", str(wav), "--out", str(tmp_path / "o.wav")])
    assert code == 1 and "--config does not match" in capsys.readouterr().err


# --- batch synthesis: folders and several inputs -------------------------------------------------

def batch_folder(root: Path, demo_corpus: Path) -> dict[str, Path]:
    """Five inputs of different lengths and kinds, two in a subfolder: {output relative path: input}."""
    wavs = sorted((demo_corpus / "wavs").glob("*.wav"))
    cfg = load_config("demo")
    (root / "sub").mkdir(parents=True)
    inputs = {"a.wav": root / "a.wav", "sub/b.wav": root / "sub" / "b.flac", "c.wav": root / "c.wav",
              "sub/m.wav": root / "sub" / "m.npy", "h.wav": root / "h.npy"}
    inputs["a.wav"].write_bytes(wavs[0].read_bytes())
    samples, sr = sf.read(wavs[1], dtype="float32")
    sf.write(inputs["sub/b.wav"], samples[: len(samples) // 3], sr)
    inputs["c.wav"].write_bytes(wavs[2].read_bytes())
    mel = input_mel(cfg.audio)(torch.from_numpy(sf.read(wavs[3], dtype="float32")[0])[None])[0].numpy()
    np.save(inputs["sub/m.wav"], mel[:, :37])
    np.save(inputs["h.wav"], mel[:, 5:90].astype(np.float16))  # float16: vocoded as its float32 values
    (root / ".hidden.wav").write_bytes(b"a hidden file is not an input")
    (root / "notes.txt").write_text("neither a mel nor audio")
    return inputs


def int16(path: Path) -> np.ndarray:
    return sf.read(path, dtype="int16")[0].astype(np.int32)


@pytest.fixture
def batch_sizes(monkeypatch) -> list[int]:
    sizes: list[int] = []
    original = Vocoder.vocode_list

    def spy(self, mels):
        sizes.append(len(mels))
        return original(self, mels)

    monkeypatch.setattr(Vocoder, "vocode_list", spy)
    return sizes


def test_batch_synth_equals_one_by_one_and_mirrors_the_folder(trained, demo_corpus, tmp_path, capsys, batch_sizes):
    inputs = batch_folder(tmp_path / "in", demo_corpus)
    code = main(["synth", "--checkpoint", str(trained), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--batch-seconds", "4", "--precision", "fp32"])
    out, err = capsys.readouterr()
    assert code == 0, err
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == sorted(inputs)
    assert sum(batch_sizes) == 5 and max(batch_sizes) > 1 and len(batch_sizes) > 1  # batched, and in several batches
    for relative, source in inputs.items():
        alone = tmp_path / "alone" / relative
        alone.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".npy":  # the float16 mel, one by one as float32
            np.save(tmp_path / "f32.npy", np.load(source).astype(np.float32))
            source = tmp_path / "f32.npy"
        synthesize(trained, source, alone)
        batched = int16(tmp_path / "out" / relative)
        assert batched.shape == int16(alone).shape
        # equal within 1e-5 before 16-bit rounding: at most one step apart after it
        assert np.abs(batched - int16(alone)).max() <= 1, relative
    assert out.startswith("wrote 5 files (") and "files/s" in out and "x real time, fp32" in out
    progress = [line for line in err.splitlines() if line.startswith("synth ")]
    assert len(progress) == len(batch_sizes) and progress[-1].startswith("synth 5/5 files: ")
    assert all(re.fullmatch(r"synth \d/5 files: [\d.]+ files/s, [\d.]+x real time", line) for line in progress), err


def test_a_terminal_gets_a_progress_bar_instead_of_lines(trained, demo_corpus, tmp_path, capsys, monkeypatch):
    batch_folder(tmp_path / "in", demo_corpus)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    code = main(["synth", "--checkpoint", str(trained), "--input", str(tmp_path / "in" / "sub"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0 and "2/2" in err and "files/s" in err and "x real time" in err
    assert not re.search(r"^synth \d/\d files:", err, re.M)  # no plain lines: the bar


def test_existing_outputs_are_skipped_unless_overwrite(trained, demo_corpus, tmp_path, capsys):
    batch_folder(tmp_path / "in", demo_corpus)
    argv = ["synth", "--checkpoint", str(trained), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    capsys.readouterr()
    (tmp_path / "out" / "a.wav").write_bytes(b"kept")
    (tmp_path / "out" / "sub" / "m.wav").unlink()
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote 1 file (") and out.rstrip().endswith("; 4 existed and were skipped")
    assert "4 outputs exist and are skipped (--overwrite replaces them)" in err
    assert (tmp_path / "out" / "a.wav").read_bytes() == b"kept" and (tmp_path / "out" / "sub" / "m.wav").is_file()
    assert main(argv) == 0
    assert capsys.readouterr().out == f"nothing to do: all 5 outputs exist in {tmp_path / 'out'}/ (--overwrite replaces them)\n"
    assert main(argv + ["--overwrite"]) == 0
    assert capsys.readouterr().out.startswith("wrote 5 files (")
    assert sf.info(str(tmp_path / "out" / "a.wav")).frames > 0


@pytest.fixture
def quick_auto(monkeypatch) -> None:
    monkeypatch.setattr("trainer.inference.AUTO_TIMING_SECONDS", 0.3)  # time less audio than a user's run does


def test_several_inputs_and_auto_precision(trained, demo_corpus, tmp_path, capsys, quick_auto):
    inputs = batch_folder(tmp_path / "in", demo_corpus)
    code = main(["synth", "--checkpoint", str(trained), "--input", str(inputs["a.wav"]), str(inputs["h.wav"]),
                 str(inputs["sub/m.wav"]), "--input", str(tmp_path / "in" / "sub"), "--out", str(tmp_path / "out"),
                 "--precision", "auto"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # a file named on its own goes to out/<stem>.wav; m.npy, named and in a named folder, is made once
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.wav", "h.wav", "m.wav"]
    chosen = [line for line in err.splitlines() if line.startswith("vocodertui: precision auto: ")]
    assert len(chosen) == 1 and re.search(r"fp32 [\d.]+ s, bf16 [\d.]+ s", chosen[0])
    assert out.startswith("wrote 4 files (") and out.rstrip().endswith(f"x real time, {chosen[0].split()[3]}")


def test_single_file_auto_precision_says_what_it_chose(trained, demo_corpus, tmp_path, capsys, quick_auto):
    wav = next((demo_corpus / "wavs").glob("*.wav"))
    assert main(["synth", "--checkpoint", str(trained), "--input", str(wav), "--out", str(tmp_path / "o.wav"),
                 "--precision", "auto"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"wrote {tmp_path / 'o.wav'} (") and err.startswith("vocodertui: precision auto: ")
    assert err.count("\n") == 1
