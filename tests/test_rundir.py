"""The JSONL files of the run directory: whole lines, torn lines skipped, resumes superseding."""


from vocodertui.rundir import JsonlWriter, checkpoint_name, checkpoint_step, read_jsonl, supersede


def test_writer_appends_whole_lines_and_closes_a_torn_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2, "loss_g": 4')  # a writer killed mid-line
    assert read_jsonl(path) == [{"step": 1}]
    writer = JsonlWriter(path)
    writer.write({"step": 3, "loss_g": float("nan")})
    writer.close()
    assert read_jsonl(path) == [{"step": 1}, {"step": 3, "loss_g": None}]
    assert path.read_bytes().endswith(b'{"step":3,"loss_g":null}\n')


def test_reader_tolerates_absent_files_and_garbage(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl") == []
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'garbage\n[1,2]\n{"event": "start", "step": 0}\n')
    assert read_jsonl(path) == [{"event": "start", "step": 0}]


def test_resumed_records_supersede_the_abandoned_ones():
    metrics = [{"step": s} for s in (10, 20, 30, 40)] + [{"step": s} for s in (30, 40, 50)]
    assert [m["step"] for m in supersede(metrics)] == [10, 20, 30, 40, 50]
    events = [
        {"event": "start", "step": 0}, {"event": "checkpoint", "step": 20}, {"event": "validation", "step": 30},
        {"event": "crashed", "step": 35}, {"event": "resume", "step": 20}, {"event": "validation", "step": 30},
    ]
    kept = [(e["event"], e["step"]) for e in supersede(events)]
    assert kept == [("start", 0), ("checkpoint", 20), ("resume", 20), ("validation", 30)]


def test_checkpoint_names_round_trip(tmp_path):
    assert checkpoint_name(5000) == "ckpt_00005000.pt"
    assert checkpoint_step(tmp_path / "ckpt_00005000.pt") == 5000
    assert checkpoint_step(tmp_path / ".ckpt_00005000.pt.tmp12") is None
    assert checkpoint_step(tmp_path / "g_00005000") is None
