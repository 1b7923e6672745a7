"""Bad input on the command line: one clear line on stderr, a non-zero exit, nothing lost."""

import pytest

from vocodertui.cli import main

from conftest import write_config


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("setup,message", [
    (lambda p: write_config(p / "c.yaml", training={"learning_rat_g": 1}), "did you mean 'learning_rate_g'"),
    (lambda p: write_config(p / "c.yaml", audio={"hop_size": 200}), "must equal audio.hop_size (200)"),
    (lambda p: (p / "c.yaml").write_text("audio: {sampling_rate: 22050\n"), "malformed YAML"),
])
def test_bad_config_fails_before_anything_is_written(tmp_path, capsys, setup, message):
    setup(tmp_path)
    code, _, err = run_cli(capsys, "start", "--foreground", "--config", str(tmp_path / "c.yaml"),
                           "--logs-dir", str(tmp_path / "logs"))
    assert code == 1 and message in err and err.count("\n") == 1
    assert not (tmp_path / "logs").exists()


def test_missing_data_dir(tmp_path, capsys):
    code, _, err = run_cli(capsys, "start", "--foreground", "--data", str(tmp_path / "nowhere"),
                           "--logs-dir", str(tmp_path), "--run", "r")
    assert code == 1 and err == f"vocodertui: error: data directory not found: {tmp_path / 'nowhere'}; nothing was started\n"


def test_resume_latest_of_a_run_without_checkpoints(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    code, _, err = run_cli(capsys, "start", "--foreground", "--logs-dir", str(tmp_path), "--run", "r", "--resume", "latest")
    assert code == 1 and "run r has nothing to resume" in err


def test_truncated_checkpoint_given_explicitly(tmp_path, capsys):
    bad = tmp_path / "ckpt_00000010.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run_cli(capsys, "synth", "--checkpoint", str(bad), "--input", str(bad), "--out", str(tmp_path / "o.wav"))
    assert code == 1 and "is corrupt or truncated" in err and err.count("\n") == 1


def test_unwritable_logs_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "start", "--foreground", "--logs-dir", str(blocker), "--run", "r")
    assert code == 1 and "cannot create run directory" in err
