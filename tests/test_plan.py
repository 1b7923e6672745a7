"""One start plan: `check` and `start` judge the same plan, and the trainer executes exactly it."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from trainer.checkpoint import load_file
from trainer.launch import execute, start_training
from trainer.plan import StartPlan, StartRequest, make_plan
from trainer.rundir import RunPaths, read_jsonl
from vocodertui.cli import main

from conftest import write_config


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_trainer_executes_the_checked_plan_not_a_fresh_resolution(quick_config, demo_corpus, tmp_path):
    logs = tmp_path / "logs"
    start_training(StartRequest(config=str(quick_config), data=str(demo_corpus), run="r", logs_dir=str(logs),
                                target_step=4), console=False)
    run = RunPaths(logs / "r")
    plan = make_plan(StartRequest(run="r", logs_dir=str(logs), resume="latest", target_step=6))
    assert plan.ok and plan.resume_from == (run.checkpoints / "ckpt_00000004.pt").resolve()
    checked_batch = plan.config.training.batch_size
    # between the check and the start, the run's config changes under it
    edited = yaml.safe_load(run.config.read_text())
    edited["training"]["batch_size"] = checked_batch + 1
    run.config.write_text(yaml.safe_dump(edited))

    assert execute(StartPlan.from_json(plan.to_json(), "plan"), console=False) == "finished"
    final = load_file(run.checkpoints / "ckpt_00000006.pt")
    assert final["config"]["training"]["batch_size"] == checked_batch
    assert yaml.safe_load(run.config.read_text())["training"]["batch_size"] == checked_batch
    assert [e["event"] for e in read_jsonl(run.events)].count("resume") == 1


def speech_folder(folder: Path, nan_in: int | None = None) -> Path:
    """Eight one-second clips at 22.05 kHz, one of them with a NaN sample when asked."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        y = (0.1 * rng.standard_normal(22050)).astype(np.float32)
        if i == nan_in:
            y[1000] = np.nan  # the header is fine; only reading the samples shows it
        sf.write(folder / f"c{i}.wav", y, 22050, subtype="FLOAT")
    return folder


def mels_folder(folder: Path, shape=(80, 86), skip: str | None = None) -> Path:
    folder.mkdir()
    for i in range(8):
        if f"c{i}" != skip:
            np.save(folder / f"c{i}.npy", np.zeros(shape, np.float32))
    return folder


@pytest.mark.parametrize("problem,make,message", [
    ("NaN samples", lambda p: ["--data", speech_folder(p / "d", nan_in=5)], "c5.wav contains NaN or infinite samples"),
    ("mels of 100 bins", lambda p: ["--data", speech_folder(p / "d"), "--mels-dir", mels_folder(p / "m", (100, 86))],
     "has the wrong shape"),
    ("transposed mels", lambda p: ["--data", speech_folder(p / "d"), "--mels-dir", mels_folder(p / "m", (86, 80))],
     "has the wrong shape (transposed? save mel.T)"),
    ("misaligned mels", lambda p: ["--data", speech_folder(p / "d"), "--mels-dir", mels_folder(p / "m", (80, 120))],
     "misaligned"),
    ("a missing mel", lambda p: ["--data", speech_folder(p / "d"), "--mels-dir", mels_folder(p / "m", skip="c3")],
     "fine-tuning mel missing for 'c3'"),
    ("no mels folder", lambda p: ["--data", speech_folder(p / "d"), "--mels-dir", p / "none"], "is not a folder"),
])
def test_check_refuses_what_the_trainer_would_refuse_before_anything_is_preprocessed(quick_config, tmp_path, capsys,
                                                                                    problem, make, message):
    logs = tmp_path / "logs"
    request = ["--config", quick_config, "--run", "r", "--logs-dir", logs, *make(tmp_path)]
    check_code, out, _ = cli(capsys, "check", *request)
    start_code, _, err = cli(capsys, "start", "--foreground", *request)
    assert (check_code, start_code) == (1, 1), problem
    assert "✗   data" in out and message in err and err.count("\n") == 1
    assert not (logs / ".cache" / "features").exists() and not (logs / "r").exists()


def test_check_passes_exactly_when_start_starts(quick_config, demo_corpus, tmp_path, capsys):
    logs = tmp_path / "logs"
    fp16 = write_config(tmp_path / "fp16.yaml", training={"precision": "fp16", "device": "cpu"})
    refused = [
        ("--config", fp16, "--data", demo_corpus, "--run", "half"),
        ("--config", quick_config, "--data", tmp_path / "nowhere", "--run", "nodata"),
        ("--config", quick_config, "--data", demo_corpus, "--run", "nothing", "--resume", "latest"),
    ]
    for request in refused:
        check_code, out, _ = cli(capsys, "check", *request, "--logs-dir", logs)
        start_code, _, err = cli(capsys, "start", "--foreground", *request, "--logs-dir", logs)
        assert (check_code, start_code) == (1, 1) and "✗" in out and err.count("\n") == 1
    assert not any(p.name == "events.jsonl" for p in logs.rglob("*"))

    good = ("--config", quick_config, "--data", demo_corpus, "--run", "ok", "--target-step", "2")
    check_code, out, _ = cli(capsys, "check", *good, "--logs-dir", logs)
    start_code, _, _ = cli(capsys, "start", "--foreground", *good, "--logs-dir", logs)
    assert (check_code, start_code) == (0, 0) and "✗" not in out
    assert read_jsonl(RunPaths(logs / "ok").events)[-1]["event"] == "finished"
    # the same request again: the run now has a history, so both refuse it
    check_code, out, _ = cli(capsys, "check", *good, "--logs-dir", logs)
    start_code, _, err = cli(capsys, "start", "--foreground", *good, "--logs-dir", logs)
    assert (check_code, start_code) == (1, 1) and "run ok already exists" in err


def test_check_refuses_tensorboard_logging_when_tensorboard_cannot_be_imported(demo_corpus, tmp_path, capsys, monkeypatch):
    import sys

    logging_on = write_config(tmp_path / "tb.yaml", logging={"tensorboard": True})
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what an environment without the package gives
    request = ("--config", logging_on, "--data", demo_corpus, "--run", "tb", "--logs-dir", tmp_path / "logs")
    code, out, _ = cli(capsys, "check", *request)
    assert code == 1 and "cannot import tensorboard" in out
    monkeypatch.undo()
    code, out, _ = cli(capsys, "check", *request)
    assert code == 0 and "tensorboard" in out
