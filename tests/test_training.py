"""Training runs on the demo config: the run directory, checkpoints, and exact resume."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainer.checkpoint import load_file
from trainer.errors import UserError
from trainer.launch import StartRequest, start_training
from trainer.records import QUALITY_METRICS, Checkpoint, Event, Metrics, Quality
from trainer.rundir import RunPaths, read_jsonl, read_records
from vocodertui.runstate import checkpoint_table

from conftest import REPO, write_config

STEP_TIMES = ("time_data", "time_d", "time_g", "time_optim", "time_other")


def train(config, corpus, logs, run="r", **kwargs) -> RunPaths:
    start_training(StartRequest(config=config and str(config), data=str(corpus), run=run, logs_dir=str(logs), **kwargs), console=False)
    return RunPaths(Path(logs) / run)


def weights(path: Path) -> dict:
    return load_file(path)["generator"]


def assert_same_state(a: Path, b: Path):
    sa, sb = load_file(a), load_file(b)
    for key in ("generator", "mpd", "msd"):
        assert sa[key].keys() == sb[key].keys()
        for name in sa[key]:
            assert torch.equal(sa[key][name], sb[key][name]), f"{key}.{name} differs"
    assert (sa["step"], sa["epoch"], sa["batch_in_epoch"]) == (sb["step"], sb["epoch"], sb["batch_in_epoch"])
    assert sa["optim_g"]["state"].keys() == sb["optim_g"]["state"].keys()
    for k, state in sa["optim_g"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], sb["optim_g"]["state"][k]["exp_avg_sq"])


def test_run_directory_after_a_short_run(quick_config, demo_corpus, tmp_path):
    config = yaml.safe_load(quick_config.read_text())
    quick_config.write_text(yaml.safe_dump({**config, "logging": {"tensorboard": True}}))
    run = train(quick_config, demo_corpus, tmp_path, target_step=6)
    metrics = read_jsonl(run.metrics)
    assert [m["step"] for m in metrics] == [2, 4, 6]
    for m in metrics:
        assert set(m) == {"time", "step", "epoch", "loss_g", "loss_d", "loss_mel", "loss_adv", "loss_fm", "loss_stft", "lr",
                          "steps_per_s", "grad_norm_g", "grad_norm_d", *STEP_TIMES, "rss_bytes"}
        assert m["loss_stft"] is None  # the demo recipe has no STFT loss
        assert m["loss_g"] > m["loss_adv"] + m["loss_fm"] > 0 and m["steps_per_s"] > 0
        # where the step time went: every phase took some, and together they are the interval's wall time
        assert all(m[t] > 0 for t in STEP_TIMES if t != "time_other") and m["time_other"] >= 0
        assert sum(m[t] for t in STEP_TIMES) == pytest.approx(1 / m["steps_per_s"], rel=1e-6)
        assert m["time_d"] + m["time_g"] > m["time_data"]  # the demo corpus's batches are cached crops
        assert 50e6 < m["rss_bytes"] < psutil.virtual_memory().total  # torch and the networks, in this process
    events = read_jsonl(run.events)
    kinds = [(e["event"], e["step"]) for e in events]
    assert kinds[0] == ("start", 0)
    assert ("validation", 3) in kinds and ("milestone", 4) in kinds and kinds[-1] == ("finished", 6)
    ckpt_events = [e for e in events if e["event"] == "checkpoint"]
    assert [e["step"] for e in ckpt_events] == [2, 4, 6]
    assert all(e["val_mel"] is not None and e["size"] > 0 for e in ckpt_events)  # validated at each checkpoint
    # keep_last=2 keeps 4 and 6; 4 is also the milestone; 2 goes unless it is the best by val mel
    kept = [s for s, _ in run.checkpoint_files()]
    best = min(ckpt_events, key=lambda e: e["val_mel"])["step"]
    assert kept == sorted({4, 6, best})
    sample = run.samples / "step_00000003"
    wavs, pngs = list(sample.glob("*.wav")), list(sample.glob("*.png"))
    assert len(wavs) == 1 and len(pngs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the reference beside it is the validation audio the trainer read, cut to the generated length
    reference, rate = soundfile.read(run.references / wavs[0].name)
    generated, _ = soundfile.read(wavs[0])
    cached = np.load(next(tmp_path.glob(f".cache/features/*/{wavs[0].stem}.audio.npy")))
    hop = 256
    assert rate == 22050 and len(reference) == len(generated) and len(reference) % hop == 0
    assert len(cached) - hop < len(reference) <= len(cached)
    np.testing.assert_allclose(reference, cached[:len(reference)], rtol=0, atol=1 / 32768)
    assert "target_step: 6" in run.config.read_text()
    assert "checkpoint ckpt_00000006.pt" in run.log.read_text()
    # logging.tensorboard: the same values, and each validation's samples, in TensorBoard's event files
    board = EventAccumulator(str(run.root / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    board.Reload()
    for field, tag in (("loss_g", "loss/g"), ("loss_mel", "loss/mel"), ("time_d", "step_time/d"), ("lr", "train/lr")):
        assert [(s.step, s.value) for s in board.Scalars(tag)] == [(m["step"], np.float32(m[field])) for m in metrics]
    validated = [e["step"] for e in events if e["event"] == "validation"]
    assert [s.step for s in board.Scalars("validation/mel_l1")] == validated == [2, 3, 4, 6]
    assert [a.step for a in board.Audio(f"audio/{wavs[0].stem}")] == validated
    assert [i.step for i in board.Images(f"spectrogram/{pngs[0].stem}")] == validated


def test_quality_is_scored_in_training_and_best_by_keeps_the_highest_pesq(demo_corpus, tmp_path):
    config = write_config(tmp_path / "q.yaml", schedule={
        "log_every": 2, "validate_every": 3, "checkpoint_every": 2, "keep_last": 1, "val_samples": 0, "milestones": [],
        "quality_every": None, "quality_files": 2, "pitch_model": "tiny", "best_by": "pesq_wb"})
    run = train(config, demo_corpus, tmp_path, target_step=6)
    scored = read_records(run.metrics, Quality).records
    # every validation is scored (quality_every null), the one at step 3 included
    assert [q.step for q in scored] == [2, 3, 4, 6]
    for q in scored:
        assert q.files == 2 and q.pitch_model == "tiny"
        assert set(q.metrics) | {u.metric for u in q.unscored} == set(QUALITY_METRICS)
        assert all(s.n + sum(u.metric == name for u in q.unscored) == 2 for name, s in q.metrics.items())
    assert [m.step for m in read_records(run.metrics, Metrics).records] == [2, 4, 6]
    saved = [e for e in read_records(run.events, Event).records if isinstance(e, Checkpoint)]
    for q in scored:  # each file's own scores are the values behind the means
        assert len(q.per_file) == 2
        for name, s in q.metrics.items():
            np.testing.assert_allclose(np.mean([f[name] for f in q.per_file.values() if name in f]), s.mean, rtol=1e-12)
    by_step = {q.step: q for q in scored}
    assert all(e.quality == {n: s.mean for n, s in by_step[e.step].metrics.items()} for e in saved)
    best = max(saved, key=lambda e: (e.quality["pesq_wb"], -e.step)).step
    assert [s for s, _ in run.checkpoint_files()] == sorted({6, best})  # keep_last 1, plus the best by PESQ
    assert [r.step for r in checkpoint_table(run) if r.best] == [best]
    assert load_file(run.checkpoints / "ckpt_00000006.pt")["quality"] == saved[-1].quality


@pytest.mark.parametrize("stop_at", [4, 7])  # mid-epoch, and the end of the first epoch (7 batches)
def test_exact_resume_is_bit_identical(quick_config, demo_corpus, tmp_path, stop_at):
    straight = train(quick_config, demo_corpus, tmp_path / "a", target_step=9)
    interrupted = train(quick_config, demo_corpus, tmp_path / "b", target_step=stop_at)
    assert load_file(interrupted.checkpoints / f"ckpt_{stop_at:08d}.pt")["epoch"] == (1 if stop_at == 7 else 0)
    train(quick_config, demo_corpus, tmp_path / "b", resume="latest", target_step=9)
    assert_same_state(straight.checkpoints / "ckpt_00000009.pt", interrupted.checkpoints / "ckpt_00000009.pt")
    resumed = [e for e in read_jsonl(interrupted.events) if e["event"] == "resume"]
    assert len(resumed) == 1 and resumed[0]["step"] == stop_at


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(quick_config, demo_corpus, tmp_path):
    run = train(quick_config, demo_corpus, tmp_path, target_step=4)
    latest = run.checkpoints / "ckpt_00000004.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated, as by a full disk
    train(quick_config, demo_corpus, tmp_path, resume="latest", target_step=5)
    assert "ckpt_00000004.pt is corrupt or truncated" in run.log.read_text()
    resume = [e for e in read_jsonl(run.events) if e["event"] == "resume"][0]
    assert resume["step"] == 2 and resume["checkpoint"].endswith("ckpt_00000002.pt")


def test_resume_refuses_another_architecture(quick_config, demo_corpus, tmp_path):
    run = train(quick_config, demo_corpus, tmp_path, target_step=2)
    wider = write_config(tmp_path / "wider.yaml", generator={"upsample_initial_channel": 128})
    with pytest.raises(UserError, match="generator.upsample_initial_channel is 64 in the checkpoint but 128 in the config"):
        train(wider, demo_corpus, tmp_path, resume="latest", target_step=4)
    other_mels = write_config(tmp_path / "mels.yaml", audio={"fmax": 7600})
    with pytest.raises(UserError, match="audio.fmax is 8000.0 in the checkpoint but 7600.0"):
        train(other_mels, demo_corpus, tmp_path, resume=str(run.checkpoints / "ckpt_00000002.pt"), target_step=4)


def test_finished_run_needs_a_new_target(quick_config, demo_corpus, tmp_path):
    train(quick_config, demo_corpus, tmp_path, target_step=2)
    with pytest.raises(UserError, match="already reached step 2 .*--target-step"):
        train(quick_config, demo_corpus, tmp_path, resume="latest")
    with pytest.raises(UserError, match="already exists"):
        train(quick_config, demo_corpus, tmp_path, target_step=4)


def test_ctrl_c_stops_gracefully_with_a_checkpoint(quick_config, demo_corpus, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "vocodertui.cli", "start", "--foreground", "--config", str(quick_config),
         "--data", str(demo_corpus), "--run", "r", "--logs-dir", str(tmp_path), "--target-step", "100000"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    run = RunPaths(tmp_path / "r")
    deadline = time.monotonic() + 120
    while not read_jsonl(run.metrics):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, output
    stopped = [e for e in read_jsonl(run.events) if e["event"] == "stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "SIGINT"
    assert stopped[0]["step"] in [s for s, _ in run.checkpoint_files()]
    assert "training stopped" in output


def test_resuming_an_older_checkpoint_sets_the_newer_ones_aside(quick_config, demo_corpus, tmp_path):
    run = train(quick_config, demo_corpus, tmp_path, target_step=6)
    train(None, demo_corpus, tmp_path, resume=str(run.checkpoints / "ckpt_00000004.pt"), target_step=5)
    assert (run.checkpoints / "superseded" / "ckpt_00000006.pt").is_file()
    assert [s for s, _ in run.checkpoint_files()][-1] == 5
    resume = [e for e in read_jsonl(run.events) if e["event"] == "resume"][0]
    assert resume["superseded"] == [6] and resume["checkpoint"] == "checkpoints/ckpt_00000004.pt"
    assert "log_every: 2" in run.config.read_text()  # the run's own config, not the default demo (10)


def test_a_checkpoint_file_can_seed_a_new_run(quick_config, demo_corpus, tmp_path):
    first = train(quick_config, demo_corpus, tmp_path, run="first", target_step=2)
    seeded = train(quick_config, demo_corpus, tmp_path, run="second", target_step=3,
                   resume=str(first.checkpoints / "ckpt_00000002.pt"))
    assert [s for s, _ in seeded.checkpoint_files()] == [3]
    assert [e["event"] for e in read_jsonl(seeded.events)][0] == "resume"


def test_jik876_pair_resumes_with_its_decayed_learning_rate(quick_config, demo_corpus, tmp_path):
    ours = load_file(train(quick_config, demo_corpus, tmp_path, run="ours", target_step=2).checkpoints / "ckpt_00000002.pt")
    lr = 0.0002 * 0.999**3  # jik876 saves the optimisers after 3 per-epoch decays
    for optim in (ours["optim_g"], ours["optim_d"]):
        for group in optim["param_groups"]:
            group.update(lr=lr, initial_lr=0.0002)
    ref = tmp_path / "jik876"
    ref.mkdir()
    torch.save({"generator": ours["generator"]}, ref / "g_00000041")
    torch.save({"mpd": ours["mpd"], "msd": ours["msd"], "optim_g": ours["optim_g"], "optim_d": ours["optim_d"],
                "steps": 41, "epoch": 3}, ref / "do_00000041")
    run = train(quick_config, demo_corpus, tmp_path, run="imported", target_step=44, resume=str(ref / "g_00000041"))
    first = read_jsonl(run.metrics)[0]
    assert first["step"] == 44 and first["epoch"] == 3
    assert first["lr"] == pytest.approx(lr, rel=1e-12)


def poison_steps(monkeypatch, bad_calls: set[int]):
    """Make the GAN steps numbered in ``bad_calls`` (1-based) report a NaN loss."""
    from trainer.gan import Gan

    real = Gan.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] in bad_calls:
            out.losses = out.losses * float("nan")
        return out

    monkeypatch.setattr(Gan, "step", step)


@pytest.mark.parametrize("base", ["demo", "demo_bigvgan"])
def test_nan_loss_rolls_back_and_skips_the_batch(base, demo_corpus, tmp_path, monkeypatch):
    quick_config = write_config(tmp_path / "quick.yaml", base, schedule={
        "log_every": 2, "validate_every": 3, "checkpoint_every": 2, "keep_last": 2, "val_samples": 1, "milestones": [4],
        "quality_every": 0})
    poison_steps(monkeypatch, {4})
    run = train(quick_config, demo_corpus, tmp_path, target_step=6)
    rollback = [e for e in read_jsonl(run.events) if e["event"] == "nan_rollback"]
    assert len(rollback) == 1
    assert rollback[0]["step"] == 2 and rollback[0]["failed_step"] == 4 and rollback[0]["skipped_batch"] == {"epoch": 0, "batch": 3}
    assert read_jsonl(run.events)[-1]["event"] == "finished"
    final = load_file(run.checkpoints / "ckpt_00000006.pt")
    # batches 0-2 of epoch 0 trained (step 3 undone by the rollback to 2), batch 3 skipped, 4-6 gave
    # steps 3-5, and batch 0 of epoch 1 step 6: the data order goes on past the bad batch
    assert (final["epoch"], final["batch_in_epoch"]) == (1, 1) and all(torch.isfinite(t).all() for t in final["generator"].values())


def test_three_nan_losses_in_a_row_end_the_run_as_crashed(quick_config, demo_corpus, tmp_path, monkeypatch):
    poison_steps(monkeypatch, {3, 4, 5})
    with pytest.raises(UserError, match="non-finite loss on 3 batches in a row"):
        train(quick_config, demo_corpus, tmp_path, target_step=10)
    run = RunPaths(tmp_path / "r")
    crashed = read_jsonl(run.events)[-1]
    assert crashed["event"] == "crashed" and "non-finite loss" in crashed["reason"]
    assert not run.pid.exists()


@pytest.mark.parametrize("base", ["demo", "demo_bigvgan", "demo_bigvgan_44k", "demo_hifigan_48k_mrstft"])
def test_bf16_autocast_and_gradient_clipping_train(base, demo_corpus, tmp_path):
    config = write_config(tmp_path / "bf16.yaml", base, training={"precision": "bf16", "grad_clip": 1.0},
                          schedule={"log_every": 2, "val_samples": 0, "quality_every": 0})
    run = train(config, demo_corpus, tmp_path, target_step=4)
    metrics = read_jsonl(run.metrics)
    assert [m["step"] for m in metrics] == [2, 4]
    assert all(m["loss_g"] > 0 and m["grad_norm_g"] > 0 for m in metrics)  # finite: non-finite would be null
    assert read_jsonl(run.events)[0]["precision"] == "bf16"


def test_precision_auto_trains_in_the_faster_and_starts_as_if_it_were_set(demo_corpus, tmp_path):
    quiet = {"log_every": 3, "val_samples": 0, "quality_every": 0}
    auto = train(write_config(tmp_path / "auto.yaml", training={"precision": "auto"}, schedule=quiet), demo_corpus, tmp_path / "a", target_step=3)
    start = read_jsonl(auto.events)[0]
    timings = start["precision_timings"]
    assert set(timings) == {"fp32", "bf16"} and all(seconds > 0 for seconds in timings.values())
    assert start["precision"] == min(timings, key=timings.get)
    assert "precision auto: " + start["precision"] in auto.log.read_text()
    # The timing used throw-away networks and restored the random state: the run is the one the
    # chosen precision would have trained had the config named it.
    fixed = train(write_config(tmp_path / "fixed.yaml", training={"precision": start["precision"]}, schedule=quiet),
                  demo_corpus, tmp_path / "b", target_step=3)
    assert read_jsonl(fixed.events)[0]["precision_timings"] is None
    assert_same_state(auto.checkpoints / "ckpt_00000003.pt", fixed.checkpoints / "ckpt_00000003.pt")
