"""synth and export: our checkpoints and jik876's generator files give the same audio."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from trainer.config import config_from_dict
from trainer.errors import UserError
from trainer.launch import StartRequest, start_training
from trainer.mel import input_mel
from trainer.models import Generator
from trainer.synth import export, synthesize
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
    assert code == 1 and err == "vocodertui: error: precision 'fp16' is not one of fp32, bf16\n"
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
