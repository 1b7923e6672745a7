"""vocodertui eval: checkpoints vocode a dataset and are scored against its audio."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainer import quality
from trainer.launch import StartRequest, start_training
from trainer.quality import MissingLibrary
from trainer.records import QUALITY_METRICS
from trainer.synth import synthesize
from vocodertui.cli import main

from conftest import write_config

FILES = 3


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, demo_corpus) -> list[Path]:
    logs = tmp_path_factory.mktemp("logs")
    config = write_config(logs / "c.yaml", schedule={"log_every": 1, "validate_every": 1, "checkpoint_every": 1,
                                                     "keep_last": 2, "val_samples": 0, "quality_every": 0})
    start_training(StartRequest(config=str(config), data=str(demo_corpus), run="r", logs_dir=str(logs), target_step=2), console=False)
    return [logs / "r" / "checkpoints" / f"ckpt_0000000{step}.pt" for step in (1, 2)]


@pytest.fixture(scope="module")
def data(tmp_path_factory, demo_corpus) -> Path:
    """A folder of audio: the first few clips of the demo corpus."""
    folder = tmp_path_factory.mktemp("data")
    for wav in sorted((demo_corpus / "wavs").glob("*.wav"))[:FILES]:
        shutil.copy(wav, folder)
    return folder


def run_eval(capsys, *args) -> tuple[int, str, str]:
    code = main(["eval", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_json_scores_every_file_with_each_checkpoint(checkpoints, data, tmp_path, capsys):
    args = [a for c in checkpoints for a in ("--checkpoint", str(c))]
    code, out, err = run_eval(capsys, *args, "--data", str(data), "--pitch-model", "tiny", "--json", "--out", str(tmp_path / "gen"))
    assert code == 0, err
    report = json.loads(out)
    assert [(c["path"], c["step"], c["files"]) for c in report["checkpoints"]] == [(str(c), s, FILES) for c, s in zip(checkpoints, (1, 2))]
    for c in report["checkpoints"]:
        assert set(c) >= {"path", "step", "files", "seconds", "metrics"} and c["seconds"] > 0
        assert set(c["metrics"]) == set(QUALITY_METRICS)
        for summary in c["metrics"].values():
            assert set(summary) == {"mean", "ci95", "n"} and summary["n"] == FILES and summary["ci95"] >= 0
    truth = report["ground_truth"]["metrics"]
    assert set(truth) == {n for n, m in QUALITY_METRICS.items() if not m.needs_reference}
    assert all(s["n"] == FILES for s in truth.values())
    # the kept audio is what synth makes of the same file with the same checkpoint
    wav = sorted(data.glob("*.wav"))[0]
    synthesize(checkpoints[1], wav, tmp_path / "synth.wav")
    kept = tmp_path / "gen" / checkpoints[1].stem / f"{wav.stem}.wav"
    assert np.array_equal(sf.read(kept, dtype="int16")[0], sf.read(tmp_path / "synth.wav", dtype="int16")[0])


def test_eval_table_lists_the_files_it_could_not_score(checkpoints, data, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(data, mixed)
    sf.write(mixed / "blip.wav", np.zeros(100, dtype=np.float32), 22050)
    (mixed / "broken.wav").write_bytes(b"RIFF not really a wave file")
    code, out, err = run_eval(capsys, "--checkpoint", str(checkpoints[0]), "--checkpoint", str(checkpoints[1]),
                              "--data", str(mixed), "--metrics", "mstft,mel_l1")
    assert code == 0, err
    assert "M-STFT" in out and "mel-L1" in out and "★" in out and "PESQ" not in out
    assert f"over {FILES} files" in out
    assert "skipped blip: too short: 100 samples" in out
    assert "skipped broken: cannot read audio file" in out


def test_eval_without_pesq_says_how_to_get_it_and_scores_the_rest(checkpoints, data, capsys, monkeypatch):
    def no_pesq():
        raise MissingLibrary("pesq_wb needs the pesq package: pip install pesq")
    monkeypatch.setitem(quality.LIBRARIES, "pesq", (no_pesq, ("pesq_wb",)))
    code, out, err = run_eval(capsys, "--checkpoint", str(checkpoints[1]), "--data", str(data), "--metrics", "pesq_wb,mstft", "--json")
    assert code == 0
    assert "pesq_wb is not scored: pesq_wb needs the pesq package: pip install pesq" in err
    assert set(json.loads(out)["checkpoints"][0]["metrics"]) == {"mstft"}


def test_eval_refuses_bad_input_in_one_line(checkpoints, data, demo_corpus, tmp_path, capsys):
    def refused(*args) -> str:
        code, out, err = run_eval(capsys, *args)
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
        return err
    assert "checkpoint not found" in refused("--checkpoint", str(tmp_path / "nope.pt"), "--data", str(data))
    (tmp_path / "empty").mkdir()
    assert "no audio files" in refused("--checkpoint", str(checkpoints[1]), "--data", str(tmp_path / "empty"))
    assert "unknown metric 'pesq'" in refused("--checkpoint", str(checkpoints[1]), "--data", str(data), "--metrics", "pesq")
    other_mels = write_config(tmp_path / "mels.yaml", audio={"fmax": 7600})
    assert "audio.fmax is 8000.0 in the checkpoint but 7600.0" in refused(
        "--checkpoint", str(checkpoints[1]), "--data", str(data), "--config", str(other_mels))
    start_training(StartRequest(config=str(other_mels), data=str(demo_corpus), run="m", logs_dir=str(tmp_path / "logs"),
                                target_step=1), console=False)
    other = tmp_path / "logs" / "m" / "checkpoints" / "ckpt_00000001.pt"
    err = refused("--checkpoint", str(checkpoints[1]), "--checkpoint", str(other), "--data", str(data))
    assert f"{other} takes other mels than {checkpoints[1]}" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert "is not empty" in refused("--checkpoint", str(checkpoints[1]), "--data", str(data), "--out", str(tmp_path / "full"))
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
