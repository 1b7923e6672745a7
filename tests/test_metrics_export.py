"""TensorBoard and CSV exports of a run (``vocodertui export-metrics``, ``logging.tensorboard``),
read back with TensorBoard's own ``EventAccumulator`` and the csv module, on crafted run directories."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainer.config import Config, config_changes, config_from_dict
from trainer.errors import UserError
from trainer.records import QUALITY_METRICS, Metrics, NanRollback, Quality, Resume, Start, Summary, Validation
from trainer.rundir import JsonlWriter, RunPaths, sample_dir_name
from trainer.tensorboard_log import LiveTensorBoard
from vocodertui.cli import main

from recordkit import make

SAMPLE_RATE = 22050
TIME_FIELDS = ("time_data", "time_d", "time_g", "time_optim", "time_other")


def metrics(step: int, t: float, seed: float) -> Metrics:
    """A metrics line with every field set, from ``seed`` (so two timelines' values differ)."""
    values = {name: seed + i / 7 for i, name in enumerate(("loss_g", "loss_d", "loss_mel", "loss_adv", "loss_fm", "lr",
                                                          "steps_per_s", "grad_norm_g", "grad_norm_d", *TIME_FIELDS))}
    return Metrics(time=t, step=step, epoch=step // 25, loss_stft=None, rss_bytes=int(1e9 + step), **values)


def quality(step: int, t: float, seed: float) -> Quality:
    return make(Quality, time=t, step=step, files=2, seconds=1.5, pitch_model="tiny",
                metrics={"pesq_wb": Summary(seed + 2.5, 0.25, 2), "mstft": Summary(seed + 1.25, None, 1)})


def validation(run: RunPaths, step: int, t: float, seed: float) -> Validation:
    """A validation event with its sample folder: one utterance's WAV and PNG, and its reference."""
    folder = run.samples / sample_dir_name(step)
    folder.mkdir(parents=True)
    run.references.mkdir(parents=True, exist_ok=True)
    tone = np.sin(np.arange(SAMPLE_RATE // 10) * seed).astype(np.float32) * 0.5
    soundfile.write(folder / "utt1.wav", tone, SAMPLE_RATE, subtype="PCM_16")
    soundfile.write(run.references / "utt1.wav", tone * 0.9, SAMPLE_RATE, subtype="PCM_16")
    Image.new("RGB", (40, 20 + step % 7), (int(seed * 10) % 256, 0, 0)).save(folder / "utt1.png")
    return make(Validation, time=t, step=step, val_mel=seed / 3, seconds=0.5, samples=str(folder.relative_to(run.root)))


def crafted_run(root: Path) -> tuple[RunPaths, list, list]:
    """A run that trained to 40, crashed, resumed from 20 and trained to 50, then rolled back to 40
    after a NaN and trained on to 50 again. Returns the run, the records written in file order, and
    the records of its current timeline (what the dashboard shows), worked out by hand."""
    run = RunPaths(root / "crafted")
    run.root.mkdir(parents=True)
    first = [make(Start, time=1.0, step=0), metrics(10, 2.0, 1.0), metrics(20, 3.0, 2.0), validation(run, 20, 3.5, 2.0),
             quality(20, 3.6, 2.0), metrics(30, 4.0, 3.0), validation(run, 30, 4.5, 3.0), quality(30, 4.6, 3.0),
             metrics(40, 5.0, 4.0)]
    resumed = [make(Resume, time=6.0, step=20), metrics(30, 7.0, 30.0), metrics(40, 8.0, 40.0), metrics(50, 9.0, 50.0),
               make(NanRollback, time=9.5, step=40), metrics(50, 10.0, 500.0)]
    current = [first[0], first[1], first[2], first[3], first[4], resumed[0], resumed[1], resumed[2], resumed[4], resumed[5]]
    return run, first + resumed, current


def write_records(run: RunPaths, records: list, live: LiveTensorBoard | None = None) -> None:
    metrics_file, events_file = JsonlWriter(run.metrics), JsonlWriter(run.events)
    for record in records:
        (metrics_file if isinstance(record, (Metrics, Quality)) else events_file).write(record)
        if live is not None:
            live.record(record)
    metrics_file.close()
    events_file.close()


def expected_scalars(current: list) -> dict[str, list[tuple[int, float, float]]]:
    """tag -> [(step, wall time, value)] as TensorBoard stores them (float32 values)."""
    tags: dict[str, list] = {}

    def add(tag, record, value):
        if value is not None:
            tags.setdefault(tag, []).append((record.step, record.time, float(np.float32(value))))

    groups = {"loss_": "loss/", "time_": "step_time/"}
    for r in current:
        if isinstance(r, Metrics):
            for name in Metrics.__struct_fields__[2:]:
                prefix = next((p for p in groups if name.startswith(p)), None)
                add(groups[prefix] + name.removeprefix(prefix) if prefix else f"train/{name}", r, getattr(r, name))
        elif isinstance(r, Quality):
            for name, summary in r.metrics.items():
                add(f"quality/{name}", r, summary.mean)
        elif isinstance(r, Validation):
            add("validation/mel_l1", r, r.val_mel)
    return tags


def read_back(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    accumulator.Reload()
    return accumulator


def assert_tensorboard_shows(folder: Path, current: list) -> None:
    accumulator = read_back(folder)
    expected = expected_scalars(current)
    assert sorted(accumulator.Tags()["scalars"]) == sorted(expected)
    for tag, points in expected.items():
        assert [(s.step, s.wall_time, s.value) for s in accumulator.Scalars(tag)] == points, tag
    validations = [r for r in current if isinstance(r, Validation)]
    for tag in ("audio/utt1", "reference/utt1"):
        clips = accumulator.Audio(tag)
        assert [(a.step, a.sample_rate, a.length_frames, a.content_type) for a in clips] == \
               [(v.step, SAMPLE_RATE, SAMPLE_RATE // 10, "audio/wav") for v in validations]
        decoded, rate = soundfile.read(io.BytesIO(clips[0].encoded_audio_string))
        assert rate == SAMPLE_RATE and len(decoded) == SAMPLE_RATE // 10
    images = accumulator.Images("spectrogram/utt1")
    assert [(i.step, i.width, i.height) for i in images] == [(v.step, 40, 20 + v.step % 7) for v in validations]


def test_tensorboard_export_holds_every_scalar_of_the_current_timeline(tmp_path, capsys):
    run, written, current = crafted_run(tmp_path)
    write_records(run, written)
    assert main(["export-metrics", "--run", run.name, "--logs-dir", str(tmp_path), "--format", "tensorboard"]) == 0
    out = capsys.readouterr().out
    scalars = sum(len(points) for points in expected_scalars(current).values())
    assert f"crafted's {scalars} scalars, 1 image, 2 audio clips to" in out  # the sample and its reference
    assert f"tensorboard --logdir {run.root / 'tensorboard'}" in out
    assert_tensorboard_shows(run.root / "tensorboard", current)


def test_the_live_writer_across_a_resume_and_a_rollback_shows_what_the_export_shows(tmp_path):
    run, written, current = crafted_run(tmp_path)
    resume_at = next(i for i, r in enumerate(written) if isinstance(r, Resume))
    first_process = LiveTensorBoard(run)
    write_records(run, written[:resume_at], first_process)
    first_process.close()
    second_process = LiveTensorBoard(run)  # a new trainer: a new event file, the old points after 20 purged
    write_records(run, written[resume_at:], second_process)
    second_process.close()
    assert len(list((run.root / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert_tensorboard_shows(run.root / "tensorboard", current)


def test_the_live_writer_of_a_resumed_run_without_event_files_writes_its_history_first(tmp_path):
    run, written, current = crafted_run(tmp_path)
    resume_at = next(i for i, r in enumerate(written) if isinstance(r, Resume))
    write_records(run, written[:resume_at])  # trained without logging.tensorboard
    live = LiveTensorBoard(run)
    write_records(run, written[resume_at:], live)
    live.close()
    assert_tensorboard_shows(run.root / "tensorboard", current)


def cells(values: list) -> list[str]:
    return ["" if v is None else repr(v) if isinstance(v, float) else str(v) for v in values]


def test_csv_export_round_trips_the_current_timeline(tmp_path, capsys):
    run, written, current = crafted_run(tmp_path)
    write_records(run, written)
    assert main(["export-metrics", "--run", run.name, "--logs-dir", str(tmp_path), "--format", "csv"]) == 0
    assert "metrics.csv (5 rows), validation.csv (1 rows), quality.csv (1 rows)" in capsys.readouterr().out
    out = run.root / "export"
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in current if isinstance(r, Metrics)]
    assert [int(row["step"]) for row in rows] == [10, 20, 30, 40, 50]
    for row, record in zip(rows, kept):
        assert list(row) == list(Metrics.__struct_fields__)
        assert list(row.values()) == cells([getattr(record, name) for name in Metrics.__struct_fields__])
        assert float(row["loss_g"]) == record.loss_g and row["loss_stft"] == ""  # exact, and null is empty
    with open(out / "quality.csv", newline="") as f:
        (scored,) = list(csv.DictReader(f))
    assert [c for c in scored if c in QUALITY_METRICS] == ["pesq_wb", "mstft"]
    assert (float(scored["pesq_wb"]), float(scored["pesq_wb_ci95"]), int(scored["pesq_wb_n"])) == (4.5, 0.25, 2)
    assert scored["mstft_ci95"] == "" and int(scored["step"]) == 20
    with open(out / "validation.csv", newline="") as f:
        (validated,) = list(csv.DictReader(f))
    assert (int(validated["step"]), float(validated["val_mel"]), validated["samples"]) == (20, 2.0 / 3, "samples/step_00000020")


def test_export_refuses_to_add_a_second_set_and_overwrite_replaces_it(tmp_path, capsys):
    run, written, current = crafted_run(tmp_path)
    write_records(run, written)
    command = ["export-metrics", "--run", run.name, "--logs-dir", str(tmp_path), "--format", "tensorboard"]
    assert main(command) == 0
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensorboard already holds events.out.tfevents." in err and "--overwrite" in err
    assert main([*command, "--overwrite"]) == 0
    assert len(list((run.root / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert_tensorboard_shows(run.root / "tensorboard", current)


@pytest.mark.parametrize("problem", ["out is a file", "out below a file", "unknown run", "run outside the logs"])
def test_bad_export_arguments_are_one_line(tmp_path, capsys, problem):
    run, written, _ = crafted_run(tmp_path)
    write_records(run, written)
    (tmp_path / "file").write_text("x")
    args = {"out is a file": ["--run", run.name, "--out", str(tmp_path / "file")],
            "out below a file": ["--run", run.name, "--out", str(tmp_path / "file" / "sub")],
            "unknown run": ["--run", "nope"],
            "run outside the logs": ["--run", "../crafted"]}[problem]
    assert main(["export-metrics", "--logs-dir", str(tmp_path), "--format", "csv", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vocodertui: error: ") and err.count("\n") == 1
    assert (tmp_path / "file").read_text() == "x"


def test_export_metrics_never_loads_torch(tmp_path):
    run, written, _ = crafted_run(tmp_path)
    write_records(run, written)
    code = ("import sys; from vocodertui.cli import main; "
            "main(['export-metrics', '--logs-dir', sys.argv[1], '--run', 'crafted', '--format', 'tensorboard']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def test_the_logging_section_is_checked_and_free_to_change_on_resume():
    assert config_from_dict({"logging": {"tensorboard": True}}).logging.tensorboard
    assert not config_from_dict({}).logging.tensorboard
    with pytest.raises(UserError, match=r"unknown key 'logging.tensorbord' \(did you mean 'tensorboard'\?\)"):
        config_from_dict({"logging": {"tensorbord": True}})
    with pytest.raises(UserError, match="logging.tensorboard"):
        config_from_dict({"logging": {"tensorboard": "yes"}})
    assert config_changes(Config().to_dict(), config_from_dict({"logging": {"tensorboard": True}})) == []
