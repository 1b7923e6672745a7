"""The JSONL files of the run directory: whole lines, torn and invalid lines skipped and counted,
resumes superseding, and the docs' field tables generated from the typed contract."""

import os
from pathlib import Path

import pytest

from recordkit import line, make
from trainer.records import (EVENTS, Checkpoint, Crashed, Event, Metrics, Quality, Resume, Start, Summary, UnscoredFile,
                             Validation, kind_of, markdown_tables, supersede)
from trainer.rundir import JsonlWriter, checkpoint_name, checkpoint_step, read_jsonl, read_records, tail_records

DOCS = Path(__file__).resolve().parent.parent / "docs" / "run-directory.md"


def test_writer_appends_whole_lines_and_closes_a_torn_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(line(Metrics, time=1.0, step=1).encode() + b'{"time": 2.0, "step": 2, "loss_g": 4')  # killed mid-line
    assert [m.step for m in read_records(path, Metrics).records] == [1]
    writer = JsonlWriter(path)
    writer.write(Metrics(time=3.0, step=3, loss_g=float("nan"), lr=float("inf")))
    writer.close()
    decoded = read_records(path, Metrics)
    assert [(m.step, m.loss_g, m.lr) for m in decoded.records] == [(1, None, None), (3, None, None)]
    assert decoded.skipped == 1  # the torn fragment, now a line of its own
    assert read_jsonl(path)[-1]["loss_g"] is None


def test_writer_reopens_its_path_when_the_file_is_deleted_or_replaced(tmp_path):
    path = tmp_path / "metrics.jsonl"
    reopened = []
    writer = JsonlWriter(path, on_reopen=lambda p, reason, record: reopened.append((p, reason, record.step)))
    writer.write(Metrics(time=1.0, step=1))
    path.unlink()
    writer.write(Metrics(time=2.0, step=2))
    writer.write(Metrics(time=3.0, step=3))
    assert [m.step for m in read_records(path, Metrics).records] == [2, 3]
    replacement = tmp_path / "saved-by-an-editor.jsonl"
    replacement.write_bytes(line(Metrics, time=3.0, step=3).encode() + b'{"time": 4.0, "st')  # ends in a torn line
    os.replace(replacement, path)
    writer.write(Metrics(time=5.0, step=5))
    writer.close()
    decoded = read_records(path, Metrics)
    assert [m.step for m in decoded.records] == [3, 5] and decoded.skipped == 1
    assert reopened == [(path, "deleted", 2), (path, "replaced by another file", 5)]


def test_metrics_and_quality_lines_share_metrics_jsonl_and_each_reader_takes_its_own(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JsonlWriter(path)
    writer.write(Metrics(time=1.0, step=10, loss_g=3.0))
    writer.write(Quality(time=2.0, step=10, files=2, seconds=1.5, pitch_model="tiny",
                         metrics={"pesq_wb": Summary(mean=3.1, ci95=0.2, n=2)},
                         unscored=[UnscoredFile(file="a", metric="vuv_f1", reason="no voiced frame in either signal")]))
    writer.write(Metrics(time=3.0, step=20, loss_g=2.0))
    writer.close()
    metrics, quality = read_records(path, Metrics), read_records(path, Quality)
    assert [m.step for m in metrics.records] == [10, 20] and metrics.skipped == 0
    assert [(q.step, q.metrics["pesq_wb"].mean, q.unscored[0].metric) for q in quality.records] == [(10, 3.1, "vuv_f1")]
    assert quality.skipped == 0


def test_readers_skip_and_count_lines_that_are_not_records(tmp_path):
    assert read_records(tmp_path / "none.jsonl", Event).records == []
    path = tmp_path / "events.jsonl"
    wrong_type = line(Validation, time=1.0, step=3).replace('"step":3', '"step":"3"')
    unknown_kind = '{"event":"teleported","time":1.0,"step":3}\n'
    missing_field = '{"event":"checkpoint","time":1.0,"step":3}\n'
    path.write_text("garbage\n[1,2]\n" + wrong_type + unknown_kind + missing_field + line(Start, time=2.0, step=0)
                    + '{"event":"crash')
    decoded = read_records(path, Event)
    assert [type(e) for e in decoded.records] == [Start] and decoded.skipped == 5
    assert tail_records(path, Event, max_bytes=len(line(Start, time=2.0, step=0)) + 20).records[0].time == 2.0


def test_every_event_kind_round_trips_through_a_file(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = JsonlWriter(path)
    written = [make(kind, time=float(i), step=i) for i, kind in enumerate(EVENTS)]
    for record in written:
        writer.write(record)
    writer.close()
    assert read_records(path, Event).records == written
    assert [r["event"] for r in read_jsonl(path)] == [kind_of(k) for k in EVENTS]


def test_resumed_records_supersede_the_abandoned_ones():
    metrics = [make(Metrics, time=0.0, step=s) for s in (10, 20, 30, 40, 30, 40, 50)]
    assert [m.step for m in supersede(metrics)] == [10, 20, 30, 40, 50]
    events = [make(Start, time=0.0, step=0), make(Checkpoint, time=0.0, step=20), make(Validation, time=0.0, step=30),
              make(Crashed, time=0.0, step=35), make(Resume, time=0.0, step=20), make(Validation, time=0.0, step=30)]
    kept = [(type(e), e.step) for e in supersede(events)]
    assert kept == [(Start, 0), (Checkpoint, 20), (Resume, 20), (Validation, 30)]


@pytest.mark.parametrize("kind", ["metrics", *(kind_of(e) for e in EVENTS)])
def test_the_docs_table_of_each_record_kind_is_the_contracts(kind):
    table = markdown_tables()[kind]
    assert table in DOCS.read_text(encoding="utf-8"), f"regenerate with: python -m trainer.records ({kind})"


def test_checkpoint_names_round_trip(tmp_path):
    assert checkpoint_name(5000) == "ckpt_00005000.pt"
    assert checkpoint_step(tmp_path / "ckpt_00005000.pt") == 5000
    assert checkpoint_step(tmp_path / ".ckpt_00005000.pt.tmp12") is None
    assert checkpoint_step(tmp_path / "g_00005000") is None
