"""One start plan: `check` and `start` judge the same plan, and the trainer executes exactly it."""

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
