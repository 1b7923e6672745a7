"""The command line as a careless or hostile user meets it, in real subprocesses: every bad input
ends with a non-zero exit and exactly one line on stderr naming the problem, never a traceback,
and what was already written is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recordkit import line
from trainer.records import Start
from vocodertui import cli

from conftest import REPO
from test_synth import trained  # noqa: F401  (the fixture: a checkpoint trained for 2 steps)


def vocodertui(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vocodertui.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def config_file(text: bytes):
    def make(p: Path) -> list:
        (p / "c.yaml").write_bytes(text)
        return ["start", "--yes", "--config", p / "c.yaml"]
    return make


def metadata(text: bytes):
    def make(p: Path) -> list:
        (p / "d" / "wavs").mkdir(parents=True)
        for i in range(8):
            sf.write(p / "d" / "wavs" / f"LJ{i}.wav", np.zeros(22050, np.float32), 22050)
        (p / "d" / "metadata.csv").write_bytes(text)
        return ["start", "--yes", "--data", p / "d"]
    return make


def nan_wav(p: Path) -> list:
    (p / "d").mkdir()
    for i in range(8):
        y = np.full(22050, 0.1, np.float32)
        y[100] = np.nan if i == 3 else 0.1
        sf.write(p / "d" / f"c{i}.wav", y, 22050, subtype="FLOAT")
    return ["start", "--yes", "--data", p / "d"]


def run_with_a_bad_record(p: Path) -> list:
    (p / "logs" / "r").mkdir(parents=True)
    (p / "logs" / "r" / "events.jsonl").write_text(line(Start, time=1.0, step=0) + '{"event":"stopped","time":"noon","step":[]}\n')
    return ["checkpoints", "--run", "r"]


CASES = {
    "empty config": (config_file(b""), "is empty"),
    "config that is a list": (config_file(b"- audio\n- training\n"), "expected a mapping of sections"),
    "config not UTF-8": (config_file(b"name: d\xe9mo\n"), "is not UTF-8 text"),
    "learning rate .nan": (config_file(b"training: {learning_rate_g: .nan}\n"), "must be a finite number"),
    "learning rate .inf": (config_file(b"training: {learning_rate_d: .inf}\n"), "must be a finite number"),
    "2e-4 read as text": (config_file(b"training: {learning_rate_g: 2e-4}\n"), "write 2.0e-4"),
    "a misspelt key": (config_file(b"trainig: {batch_size: 2}\n"), "did you mean 'training'"),
    "a key with a newline": (config_file(b'audio: {"a\\nb": 1}\n'), "unknown key 'audio.a\\nb'"),
    "an absurd integer": (config_file(b"training: {batch_size: 1" + b"0" * 40 + b"}\n"), "beyond any sensible setting"),
    "fp16 on a CPU": (config_file(b"training: {precision: fp16, device: cpu}\n"), "fp16 needs a CUDA device"),
    "run name of 300 characters": (lambda p: ["start", "--yes", "--run", "r" * 300], "invalid run name"),
    "run name with a newline": (lambda p: ["start", "--yes", "--run", "a\nb"], "invalid run name 'a\\nb'"),
    "run name with a backslash": (lambda p: ["check", "--run", "a\\b"], None),
    "status of ../other": (lambda p: ["status", "--run", "../other"], "invalid run name"),
    "checkpoints of ..": (lambda p: ["checkpoints", "--run", ".."], "invalid run name"),
    "stop of an absolute path": (lambda p: ["stop", "--run", str(p)], "invalid run name"),
    "metadata separated by commas, no such ids": (metadata(b"a,b,c\nd,e,f\n"), "metadata.csv"),
    "metadata that is binary": (metadata(bytes(range(256)) * 4), "metadata.csv"),
    "NaN samples in a wav": (nan_wav, "contains NaN or infinite samples"),
    "a command that does not exist": (lambda p: ["trian"], "invalid choice: 'trian'"),
    "a step that is not a number": (lambda p: ["start", "--target-step", "1e5"], "expected a whole number"),
    "resume latest of a run that does not exist": (lambda p: ["start", "--yes", "--run", "ghost", "--resume", "latest"],
                                                   "run ghost not found"),
}


@pytest.mark.parametrize("make,message", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_and_a_failing_exit(tmp_path, make, message):
    args = make(tmp_path)
    if args[0] in ("start", "check", "status", "stop", "checkpoints"):
        args += ["--logs-dir", tmp_path / "logs"]
    proc = vocodertui(*args, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    if args[0] == "check":  # check reports in its table, on stdout
        assert "✗" in proc.stdout and proc.stderr == ""
        return
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vocodertui: error: "), proc.stderr
    assert message in lines[0]
    assert not list((tmp_path / "logs").glob("*/events.jsonl"))  # nothing started


def test_a_record_of_the_wrong_type_breaks_no_command(tmp_path):
    run_with_a_bad_record(tmp_path)
    (tmp_path / "logs" / "other").mkdir()
    (tmp_path / "logs" / "other" / "events.jsonl").write_text(line(Start, time=2.0, step=0, target_step=10))
    status = vocodertui("status", "--logs-dir", tmp_path / "logs", cwd=tmp_path)
    assert status.returncode == 0 and "Traceback" not in status.stderr
    assert " r " in status.stdout and " other " in status.stdout and "lines of its JSONL files" in status.stdout
    for command in (["checkpoints", "--run", "r"], ["status", "--run", "r", "--json"]):
        proc = vocodertui(*command, "--logs-dir", tmp_path / "logs", cwd=tmp_path)
        assert proc.returncode == 0 and proc.stderr == ""


class Payload:
    def __reduce__(self):
        return (os.system, ("touch ran",))


SYNTH_CASES = {
    "a string .npy": (lambda p: np.save(p / "in.npy", np.array([["a"] * 10] * 80)), "in.npy", "out.wav", "in.npy"),
    "a 0-frame .npy": (lambda p: np.save(p / "in.npy", np.zeros((80, 0), np.float32)), "in.npy", "out.wav", "in.npy"),
    "a complex .npy": (lambda p: np.save(p / "in.npy", np.zeros((80, 9), np.complex64)), "in.npy", "out.wav", "complex"),
    "--out a folder": (lambda p: (p / "folder").mkdir(), "in.npy", "folder", "folder"),
    "--out without an extension": (None, "in.npy", "out", "extension"),
    "--out with an unknown extension": (None, "in.npy", "out.xyz", ".xyz"),
    "--out the input itself": (None, "in.npy", "in.npy", "in.npy"),
    "--out under a file": (lambda p: (p / "file").write_text("x"), "in.npy", "file/out.wav", "file"),
}


@pytest.mark.parametrize("prepare,given,out,message", SYNTH_CASES.values(), ids=SYNTH_CASES.keys())
def test_bad_synth_input_is_one_line_and_keeps_the_input(trained, tmp_path, prepare, given, out, message):
    np.save(tmp_path / "in.npy", np.zeros((80, 20), np.float32))
    if prepare:
        prepare(tmp_path)
    before = (tmp_path / given).read_bytes()
    proc = vocodertui("synth", "--checkpoint", trained, "--input", given, "--out", out, cwd=tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("vocodertui: error: "), proc.stderr
    assert message in lines[0] and "Traceback" not in proc.stderr
    assert (tmp_path / given).read_bytes() == before


def test_a_pickled_payload_is_refused_as_such_and_never_runs(tmp_path):
    (tmp_path / "in.npy").write_bytes(b"")
    torch.save({"generator": Payload()}, tmp_path / "evil.pt")
    proc = vocodertui("synth", "--checkpoint", "evil.pt", "--input", "in.npy", "--out", "o.wav", cwd=tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Python objects other than tensors" in lines[0]
    assert not (tmp_path / "ran").exists()


def test_an_unforeseen_error_is_one_line_and_a_kept_traceback(tmp_path, monkeypatch, capsys):
    def broken(args):
        raise ZeroDivisionError("division by zero somewhere deep")

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(cli, "cmd_status", broken)
    assert cli.main(["status", "--logs-dir", str(tmp_path)]) == 70
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("vocodertui: internal error: ZeroDivisionError: division by zero")
    kept = Path(err[0].rsplit("full traceback in ", 1)[1])
    assert kept.is_relative_to(tmp_path) and "Traceback" in kept.read_text() and "broken" in kept.read_text()
