"""The run's warnings (vocodertui/alerts.py), each raised and not raised from a crafted run directory,
as `vocodertui status` (text and --json) and the dashboard show them."""

from __future__ import annotations

import json
import time
import warnings
from typing import Optional

import msgspec
import numpy as np
import pytest

from recordkit import line
from trainer import pidfile
from trainer.config import load_config
from trainer.errors import UserError
from trainer.records import Metrics, NanRollback, Start, Validation
from trainer.rundir import RunPaths, checkpoint_name
from vocodertui import alerts, runstate
from vocodertui.cli import main
from vocodertui.runstate import run_status

NOW = 1_800_000_000.0
T0 = NOW - 100_000  # the run's start
HAS_RSS = "rss_bytes" in Metrics.__struct_fields__  # the health helper's field (issue 14); older records lack it
# Until then the pure function is fed records that carry it.
RssMetrics = Metrics if HAS_RSS else msgspec.defstruct("RssMetrics", [("rss_bytes", Optional[int], None)], bases=(Metrics,))


def crafted_run(tmp_path, metrics=(), events=(), config="schedule: {log_every: 10}\n", live=False, name="r") -> RunPaths:
    """A run started at T0 with the given metrics lines (dicts of Metrics fields) and event lines."""
    run = RunPaths(tmp_path / name)
    run.checkpoints.mkdir(parents=True)
    run.config.write_text(config)
    run.events.write_text(line(Start, time=T0, step=0, target_step=1_000_000) + "".join(events))
    run.metrics.write_text("".join(line(Metrics, **m) for m in metrics))
    if live:  # this test process stands in for the trainer
        pidfile.RunLock(run)
        pidfile.write_pid_file(run)
    return run


def lines_of(loss_g=None, loss_mel=None, loss_d=None, loss_adv=None, lr=None, every=10.0, first_step=10, t0=T0 + 10):
    """Metrics lines, one per value of the longest series given, ``every`` seconds and 10 steps apart."""
    series = {k: v for k, v in dict(loss_g=loss_g, loss_mel=loss_mel, loss_d=loss_d, loss_adv=loss_adv, lr=lr).items()
              if v is not None}
    n = max(len(v) for v in series.values())
    return [dict(time=t0 + i * every, step=first_step + 10 * i, **{k: float(v[i]) for k, v in series.items()})
            for i in range(n)]


def kinds(run: RunPaths, now: float = NOW) -> dict[str, alerts.Alert]:
    return {a.kind: a for a in run_status(run, now=now).warnings}


def noisy(n: int, level: float, spread: float, seed: int = 0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, spread, n)


# ----------------------------------------------------------------------------- each alert


def test_stalled_agrees_with_the_run_state_and_its_threshold_comes_from_the_config(tmp_path):
    quiet = lines_of(loss_g=noisy(5, 40, 1), t0=NOW - 170)  # the last line 130 s ago, one every 10 s
    run = crafted_run(tmp_path, quiet, live=True)
    status = run_status(run, now=NOW)
    assert status.state == "running" and "stalled" not in kinds(run)  # under the default 300 s
    run.config.write_text("alerts: {stall_min_seconds: 60}\n")
    status = run_status(run, now=NOW)
    assert status.state == "stalled"
    stalled = {a.kind: a for a in status.warnings}["stalled"]
    assert stalled.since_step == 50 and stalled.since_time == NOW - 130 and "nothing written for 130 s" in stalled.message


def test_nan_rollback_is_shown_until_recent_logs_lines_have_followed_it(tmp_path):
    rollback = line(NanRollback, time=T0 + 500, step=400, failed_step=451, checkpoint="checkpoints/ckpt_00000400.pt",
                    strikes=1)
    after = lines_of(loss_g=noisy(30, 40, 1), t0=T0 + 501, first_step=410)
    alert = kinds(crafted_run(tmp_path, after, [rollback], name="a"))["nan_rollback"]
    assert alert.since_step == 400 and alert.since_time == T0 + 500
    assert "step 451 gave a non-finite loss" in alert.message and "ckpt_00000400.pt" in alert.message
    assert "nan_rollback" not in kinds(crafted_run(tmp_path, after, [rollback], "alerts: {recent_logs: 20}\n", name="b"))
    assert "nan_rollback" not in kinds(crafted_run(tmp_path, after, name="c"))


def test_loss_spike_fires_on_a_jump_not_on_noise_or_a_falling_loss_and_clears_once_out_of_the_window(tmp_path):
    calm = noisy(150, 40, 1.5)
    assert "loss_spike" not in kinds(crafted_run(tmp_path, lines_of(loss_g=calm, loss_mel=noisy(150, 0.6, 0.02, 1)), name="calm"))
    falling = 40 + 60 * np.exp(-np.arange(150) / 10)  # early training: far above the median at first, then lower
    assert "loss_spike" not in kinds(crafted_run(tmp_path, lines_of(loss_g=falling), name="falling"))
    spiked = calm.copy()
    spiked[140] = 80
    alert = kinds(crafted_run(tmp_path, lines_of(loss_g=spiked), name="spiked"))["loss_spike"]
    assert alert.since_step == 1410 and "loss_g jumped to 80 at step 1,410" in alert.message
    later = np.concatenate([spiked, noisy(100, 40, 1.5, 2)])  # 100 more logs: the spike has scrolled out
    assert "loss_spike" not in kinds(crafted_run(tmp_path, lines_of(loss_g=later), name="later"))


def test_loss_g_rising_when_the_discriminators_start_is_not_a_spike(tmp_path):
    before, after = noisy(60, 40, 0.5), noisy(60, 46, 0.5, 1)  # the adversarial terms join loss_g at the start step
    adv = np.r_[np.zeros(60), np.full(60, 3.0)]
    run = crafted_run(tmp_path, lines_of(loss_g=np.r_[before, after], loss_adv=adv))
    assert "loss_spike" not in kinds(run)


def test_d_collapse_needs_a_tiny_d_loss_and_a_rising_adversarial_loss(tmp_path):
    healthy = lines_of(loss_d=noisy(40, 3, 0.2), loss_adv=noisy(40, 2.5, 0.2, 1))
    assert "d_collapse" not in kinds(crafted_run(tmp_path, healthy, name="healthy"))
    d = np.r_[noisy(20, 3, 0.2), np.full(15, 0.01)]
    rising = np.r_[noisy(20, 2.5, 0.1), np.linspace(3, 9, 15)]
    alert = kinds(crafted_run(tmp_path, lines_of(loss_d=d, loss_adv=rising), name="collapsed"))["d_collapse"]
    assert alert.since_step == 210 and "loss_d under 0.1 for 15 logs" in alert.message
    falling = np.r_[noisy(20, 2.5, 0.1), np.linspace(9, 3, 15)]
    assert "d_collapse" not in kinds(crafted_run(tmp_path, lines_of(loss_d=d, loss_adv=falling), name="falling"))
    before_start = lines_of(loss_d=np.zeros(30), loss_adv=np.zeros(30))  # discriminator_start_step not reached yet
    assert "d_collapse" not in kinds(crafted_run(tmp_path, before_start, name="before"))


def test_lr_floor_below_one_percent_of_the_configured_start_but_not_a_cosine_that_ends_there(tmp_path):
    decayed = 2e-4 * 0.9 ** np.arange(60)  # under 1 % of the start from the 45th line, step 450, on
    config = "training: {learning_rate_g: 0.0002, lr_schedule: exponential_per_step, lr_decay: 0.9}\n"
    alert = kinds(crafted_run(tmp_path, lines_of(lr=decayed), config=config, name="decayed"))["lr_floor"]
    assert alert.since_step == 450 and "below 1 % of its start 0.0002" in alert.message and "lr_decay 0.9" in alert.message
    assert "lr_floor" not in kinds(crafted_run(tmp_path, lines_of(lr=decayed[:40]), config=config, name="early"))
    cosine = "training: {learning_rate_g: 0.0002, lr_schedule: cosine, target_step: 600}\n"
    assert "lr_floor" not in kinds(crafted_run(tmp_path, lines_of(lr=decayed), config=cosine, name="cosine"))
    warmup = "training: {learning_rate_g: 0.0002, warmup_steps: 1000}\n"
    assert "lr_floor" not in kinds(crafted_run(tmp_path, lines_of(lr=np.linspace(0, 2e-5, 20)), config=warmup, name="warm"))
    no_config = crafted_run(tmp_path, lines_of(lr=decayed), name="no-config")
    no_config.config.unlink()  # the first metrics line's learning rate is the start
    assert "lr_floor" in kinds(no_config)


def rss_evidence(rss: np.ndarray, minutes_apart: float = 1.0, **thresholds) -> alerts.Evidence:
    metrics = [RssMetrics(time=T0 + 60 * minutes_apart * (i + 1), step=10 * (i + 1), rss_bytes=int(v)) for i, v in enumerate(rss)]
    return alerts.Evidence(state="running", step=metrics[-1].step, metrics=metrics, events=[msgspec.json.decode(
        line(Start, time=T0, step=0), type=Start)], checkpoint_size=None, disk_free=None, now=metrics[-1].time,
        thresholds=alerts.AlertsConfig(**thresholds))


def test_rss_growth_fires_on_steady_growth_not_on_the_warm_up_or_one_jump():
    minutes = np.arange(90)
    warm_then_flat = np.where(minutes < 12, 2e9 + minutes * 2e8, 4.4e9) + np.random.default_rng(0).normal(0, 5e6, 90)
    assert alerts.warnings(rss_evidence(warm_then_flat)) == []
    one_jump = np.where(minutes < 50, 3e9, 3.6e9)  # a validation buffer allocated once
    assert alerts.warnings(rss_evidence(one_jump)) == []
    leaking = 3e9 + minutes * 1e7  # 600 MB an hour on 3-4 GB
    alert, = alerts.warnings(rss_evidence(leaking))
    assert alert.kind == "rss_growth" and alert.since_step == 300 and "grows 1" in alert.message
    assert alerts.warnings(rss_evidence(leaking, rss_growth_percent_per_hour=25)) == []
    assert alerts.warnings(rss_evidence(leaking[:40])) == []  # 25 minutes after the warm-up: not yet enough evidence


@pytest.mark.skipif(not HAS_RSS, reason="metrics lines carry rss_bytes from the health helper's records change on")
def test_rss_growth_from_a_run_directory(tmp_path):
    rows = [dict(time=T0 + 60 * (i + 1), step=10 * (i + 1), rss_bytes=int(3e9 + i * 1e7)) for i in range(90)]
    assert "rss_growth" in kinds(crafted_run(tmp_path, rows, name="leak"), now=T0 + 5500)
    flat = [dict(r, rss_bytes=int(3e9)) for r in rows]
    assert "rss_growth" not in kinds(crafted_run(tmp_path, flat, name="flat"), now=T0 + 5500)


def test_disk_low_below_what_the_next_checkpoints_need(tmp_path, monkeypatch):
    run = crafted_run(tmp_path, lines_of(loss_g=noisy(5, 40, 1)))
    (run.checkpoints / checkpoint_name(40)).write_bytes(b"\0" * 1000)
    monkeypatch.setattr(runstate, "disk_free", lambda _run: 2500)
    alert = kinds(run)["disk_low"]
    assert "2.5 kB free" in alert.message and "3.0 kB that the next 2 checkpoints of 1.0 kB need" in alert.message
    monkeypatch.setattr(runstate, "disk_free", lambda _run: 3500)
    assert "disk_low" not in kinds(run)
    run.config.write_text("alerts: {disk_checkpoints: 3}\n")
    assert "disk_low" in kinds(run)


def test_val_worsening_after_n_worse_validations_in_a_row(tmp_path):
    def validations(values):
        return [line(Validation, time=T0 + 100 * (i + 1), step=1000 * (i + 1), val_mel=v) for i, v in enumerate(values)]

    alert = kinds(crafted_run(tmp_path, events=validations([0.5, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45]), name="w"))["val_worsening"]
    assert alert.since_step == 3000 and "worse 5 times in a row: 0.4000 at step 2,000 → 0.4500 at step 7,000" in alert.message
    assert "val_worsening" not in kinds(crafted_run(tmp_path, events=validations([0.5, 0.4, 0.41, 0.42, 0.43, 0.44, 0.39]), name="i"))
    assert "val_worsening" not in kinds(crafted_run(tmp_path, events=validations([0.5, 0.4, 0.41, 0.42, 0.43, 0.44]), name="f"))


def test_ignore_silences_a_kind_and_a_broken_config_says_so(tmp_path):
    spiked = noisy(150, 40, 1.5)
    spiked[-1] = 90
    run = crafted_run(tmp_path, lines_of(loss_g=spiked))
    assert "loss_spike" in kinds(run)
    run.config.write_text("alerts: {ignore: [loss_spike]}\n")
    assert kinds(run) == {}
    run.config.write_text("alerts: {spike_zz: 3}\n")
    found = kinds(run)
    assert "loss_spike" in found and "unknown key 'alerts.spike_zz' (did you mean 'spike_z'?)" in found["config"].message


# ----------------------------------------------------------------------------- config and CLI


@pytest.mark.parametrize("section, message", [
    ("{spike_zz: 3}", "unknown key 'alerts.spike_zz' (did you mean 'spike_z'?)"),
    ("{ignore: [loss_spikes]}", "alerts.ignore: unknown alert 'loss_spikes' (did you mean 'loss_spike'?)"),
    ("{recent_logs: 0}", "alerts.recent_logs must be at least 1"),
    ("{lr_floor_fraction: 1.5}", "alerts.lr_floor_fraction must be between 0 and 1, got 1.5"),
    ("{spike_z: -1}", "alerts.spike_z must be positive"),
    ("{stall_min_seconds: abc}", "'alerts.stall_min_seconds' must be a number"),
])
def test_the_alerts_section_is_validated_in_one_line(tmp_path, section, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"alerts: {section}\n")
    with pytest.raises(UserError, match=None) as raised:
        load_config(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_status_shows_the_warnings_in_text_and_json(tmp_path, capsys):
    spiked = noisy(150, 40, 1.5)
    spiked[-3] = 90
    crafted_run(tmp_path, lines_of(loss_g=spiked), name="spiky")
    crafted_run(tmp_path, lines_of(loss_g=noisy(150, 40, 1.5)), name="calm")
    assert main(["status", "--logs-dir", str(tmp_path), "--json"]) == 0
    runs = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert runs["calm"]["warnings"] == []
    warning, = runs["spiky"]["warnings"]
    assert warning["kind"] == "loss_spike" and warning["since_step"] == 1480 and "loss_g jumped to 90" in warning["message"]
    assert main(["status", "--logs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "spiky: ⚠ loss_spike since step 1,480: loss_g jumped to 90" in out and "calm: ⚠" not in out


# ----------------------------------------------------------------------------- the dashboard


async def until(pilot, condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


async def test_the_dashboard_shows_a_warning_in_the_banner_and_the_events_tab(tmp_path):
    from vocodertui.dashboard.alerts_banner import AlertBanner, AlertList
    from vocodertui.dashboard.app import MonitorApp
    from vocodertui.dashboard.feed import RunFeed, SystemStats

    system = SystemStats(cpu_percent=1.0, ram_used=1 << 30, ram_total=8 << 30, disk_free=100 << 30, trainer_rss=None)
    worse = [line(Validation, time=T0 + 100 * (i + 1), step=1000 * (i + 1), val_mel=v)
             for i, v in enumerate([0.4, 0.41, 0.42, 0.43, 0.44, 0.45])]
    crafted_run(tmp_path, lines_of(loss_g=noisy(30, 40, 1)), name="calm")
    run = crafted_run(tmp_path, lines_of(loss_g=noisy(30, 40, 1)), worse, name="worse")
    app = MonitorApp(run, tmp_path, feed=lambda r: RunFeed(r, clock=lambda: NOW, system=lambda _r, _rss: system))
    async with app.run_test(size=(140, 40)) as pilot:
        banner = app.query_one(AlertBanner)
        await until(pilot, lambda: app.tabs_mounted and banner.display and banner.region.height, "the banner")
        assert "⚠ val_worsening since step 2,000: validation mel-L1 worse 5 times in a row" in str(banner.render())
        assert banner.region.height == 1  # one line per warning, cut to the width; the Events tab has it whole
        await pilot.press("4")
        listed = app.query_one(AlertList)
        assert listed.display and listed.region.height >= 1
        row = str(listed.render())
        assert "step     2000  ⚠ val_worsening" in row and "0.4000 at step 1,000 → 0.4500 at step 6,000" in row
        app.compare(("calm",))
        await until(pilot, lambda: app.view is not None and app.view.run.name == "calm", "the calm run")
        await pilot.pause()
        assert not banner.display and not listed.display


def test_the_dashboard_feed_agrees_with_status_and_recomputes_only_when_records_arrive(tmp_path, monkeypatch):
    from vocodertui.dashboard import feed as feed_module
    from vocodertui.dashboard.feed import RunFeed, SystemStats

    monkeypatch.setattr(feed_module, "ALERTS_EVERY_S", 0.0)
    computed = []
    for_run = alerts.for_run
    monkeypatch.setattr(alerts, "for_run", lambda *args: computed.append(1) or for_run(*args))
    spiked = noisy(150, 40, 1.5)
    spiked[-2] = 90
    run = crafted_run(tmp_path, lines_of(loss_g=spiked))
    system = SystemStats(cpu_percent=1.0, ram_used=1 << 30, ram_total=8 << 30, disk_free=100 << 30, trainer_rss=None)
    feed = RunFeed(run, clock=lambda: NOW, system=lambda _r, _rss: system)
    first = feed.view().status.warnings
    feed.view()
    assert len(computed) == 1  # nothing new: the warnings are not computed again
    assert [a.kind for a in first] == ["loss_spike"] and first == run_status(run, now=NOW).warnings
    computed.clear()
    with open(run.events, "a") as f:
        f.writelines(line(Validation, time=T0 + 100 * (i + 1), step=1000 * (i + 1), val_mel=0.4 + i / 100) for i in range(6))
    assert [a.kind for a in feed.view().status.warnings] == ["loss_spike", "val_worsening"] and len(computed) == 1


def test_the_row_median_skipping_nans_is_numpys_nanmedian():
    rng = np.random.default_rng(3)
    for width in (1, 2, 7, 50):
        rows = rng.normal(size=(40, width))
        rows[rng.random(rows.shape) < 0.4] = np.nan
        rows[0] = np.nan  # a row with nothing to take the median of
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN row
            expected = np.nanmedian(rows, axis=1)
        np.testing.assert_array_equal(alerts.row_nanmedian(rows), expected)
