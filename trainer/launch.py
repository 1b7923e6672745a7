"""Setting up a training run: the run directory, the data, resuming, and the start/resume events."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from trainer import checkpoint as ckpt
from trainer.config import Config, config_from_dict, dump_config, load_config
from trainer.data import VocoderData, default_cache_root, describe
from trainer.demo_corpus import ensure_demo_corpus
from trainer.distributed import World, check_batch, join_world, leave_world
from trainer.errors import UserError
from trainer.loop import Trainer, parameter_count
from vocodertui.pidfile import PidRecord, RunLock, read_pid_file, remove_pid_file, write_pid_file
from vocodertui.rundir import RunPaths, write_text_atomic

log = logging.getLogger("trainer")

DEMO_DATA = "@demo"  # data.path value: the corpus vocodertui synthesises itself


@dataclass
class StartRequest:
    config: Optional[str] = None  # default: the run's own config when continuing it, else the demo
    data: Optional[str] = None
    run: Optional[str] = None
    logs_dir: str = "logs"
    resume: Optional[str] = None  # "latest" or a checkpoint path
    target_step: Optional[int] = None
    mels_dir: Optional[str] = None


def setup_logging(run: RunPaths, console: bool) -> None:
    """trainer.log always; the terminal too when training in the foreground."""
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.FileHandler(run.log, encoding="utf-8")]
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)


def close_logging() -> None:
    """Undo ``setup_logging`` (the trainer may run inside a longer-lived process, such as the tests)."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = True


def resolve_run(req: StartRequest) -> Optional[RunPaths]:
    """The run named by --run, or the run whose checkpoint --resume names; None for a new run."""
    if req.run:
        if "/" in req.run or req.run.startswith("."):
            raise UserError(f"invalid run name {req.run!r}: use a plain folder name")
        return RunPaths(Path(req.logs_dir) / req.run)
    if req.resume == "latest":
        raise UserError("--resume latest needs --run NAME (the run to continue)")
    if req.resume and Path(req.resume).resolve().parent.name == "checkpoints":
        return RunPaths(Path(req.resume).resolve().parent.parent)
    return None


def has_history(run: RunPaths) -> bool:
    return run.events.exists() or bool(run.checkpoint_files())


def choose_config(req: StartRequest, run: Optional[RunPaths]) -> Config:
    """--config, else the config a continued run was trained with, else the demo."""
    if req.config:
        return load_config(req.config)
    if run is not None and req.resume and run.config.is_file():
        try:
            raw = yaml.safe_load(run.config.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            raise UserError(f"{run.config} is malformed YAML: pass --config") from None
        return config_from_dict(raw, source=str(run.config))
    return load_config("demo")


def prepare_run_dir(run: RunPaths, continuing: bool) -> RunLock:
    """Create the run's folders and take its lock; refuses a live run and a finished-with run."""
    try:
        run.root.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        run.samples.mkdir(exist_ok=True)
        lock = RunLock(run)
    except BlockingIOError:
        record = read_pid_file(run)
        who = f" by process {record.pid}" if isinstance(record, PidRecord) else ""
        raise UserError(f"run {run.name} is being trained right now{who}: stop it first (vocodertui stop --run {run.name})") from None
    except OSError as exc:
        raise UserError(f"cannot create run directory {run.root}: {exc.strerror}") from None
    if not continuing and has_history(run):
        lock.release()
        raise UserError(
            f"run {run.name} already exists in {run.root.parent}: continue it with --resume latest, or pick another --run"
        )
    if not os.access(run.root, os.W_OK):
        lock.release()
        raise UserError(f"run directory {run.root} is not writable")
    for leftover in run.checkpoints.glob(".ckpt_*.tmp*"):  # from a trainer killed mid-write
        leftover.unlink(missing_ok=True)
    return lock


def supersede_checkpoints(run: RunPaths, resume_step: int) -> list[int]:
    """Move checkpoints newer than the resume point out of the way (into checkpoints/superseded/)."""
    newer = [(step, path) for step, path in run.checkpoint_files() if step > resume_step]
    if newer:
        target = run.checkpoints / "superseded"
        target.mkdir(exist_ok=True)
        for _, path in newer:
            os.replace(path, target / path.name)
    return [step for step, _ in newer]


def resolve_data_dir(req: StartRequest, cfg: Config) -> Path:
    path = req.data or cfg.data.path
    if path is None:
        raise UserError(f"config {cfg.name} names no data: pass --data DIR (LJSpeech layout or a folder of audio files)")
    if path == DEMO_DATA:
        return ensure_demo_corpus(Path(req.logs_dir) / ".cache")
    return Path(path)


def load_resume_state(req: StartRequest, run: RunPaths) -> Optional[tuple[Path, dict[str, Any]]]:
    """The checkpoint to continue from; None when ``latest`` finds a run that died before its first one."""
    if req.resume == "latest":
        found = ckpt.latest_valid(run)
        if found is None:
            log.warning("run %s has no valid checkpoint yet: it starts again from step 0", run.name)
        return found
    path = Path(req.resume)
    state = ckpt.load_file(path)
    if ckpt.is_ours(state):
        return path, state
    return path, ckpt.load_jik876_pair(path)


def start_training(req: StartRequest, console: bool = True) -> str:
    """Train in this process; returns 'finished' or 'stopped'. Raises UserError for bad input.

    Under torchrun every rank calls this; they decide the same things before rank 0, alone, takes
    the run's lock and writes to it.
    """
    world = join_world()
    previous = {sig: signal.signal(sig, handler) for sig, handler in STARTUP_HANDLERS.items()}
    try:
        return _start(req, console, world)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        close_logging()
        leave_world(world)


def _stop_during_startup(signum, _frame):
    raise UserError(f"{signal.Signals(signum).name} during start-up: stopped before training began")


# Until the training loop installs its own handlers: a stop request ends the start-up cleanly
# (the PID file is removed, one line says why); checkpoint and validation requests are ignored.
STARTUP_HANDLERS = {signal.SIGTERM: _stop_during_startup, signal.SIGINT: _stop_during_startup,
                    signal.SIGUSR1: signal.SIG_IGN, signal.SIGUSR2: signal.SIG_IGN}


def _start(req: StartRequest, console: bool, world: World) -> str:
    run = resolve_run(req)
    if req.resume == "latest" and not (run.root.is_dir() and has_history(run)):
        raise UserError(f"run {run.name} not found in {run.root.parent}" if not run.root.is_dir()
                        else f"run {run.name} has nothing to resume: no events and no checkpoints")
    continuing = req.resume is not None and run is not None and has_history(run)
    cfg = choose_config(req, run if continuing else None)
    if req.mels_dir:
        cfg.data.mels_dir = req.mels_dir
    if run is None:
        if world.distributed:
            raise UserError("several processes need a run name: pass --run")
        run = RunPaths(Path(req.logs_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_batch(cfg.training.batch_size, world)
    world.barrier()  # every rank has decided before rank 0 writes anything
    if not world.is_main:
        return _train(req, cfg, run, console, world)
    lock = prepare_run_dir(run, continuing)
    pid_record = write_pid_file(run)
    try:
        return _train(req, cfg, run, console, world)
    finally:
        remove_pid_file(run, pid_record)
        lock.release()


def _train(req: StartRequest, cfg: Config, run: RunPaths, console: bool, world: World) -> str:
    if world.is_main:
        setup_logging(run, console)
        world.barrier()
    else:
        world.barrier()  # rank 0 has created the run directory
        log.setLevel(logging.WARNING)

    data_dir = resolve_data_dir(req, cfg).resolve()
    cfg.data.path = str(data_dir)
    if world.is_main:  # rank 0 fills the feature cache, the others then find it ready
        data = VocoderData(cfg, data_dir, default_cache_root(Path(req.logs_dir), cfg))
        world.barrier()
    else:
        world.barrier()
        data = VocoderData(cfg, data_dir, default_cache_root(Path(req.logs_dir), cfg))

    resume_from: Optional[Path] = None
    state: Optional[dict[str, Any]] = None
    if req.resume:
        found = load_resume_state(req, run)
        if found is not None:
            resume_from, state = found
            saved_target = state.get("config", {}).get("training", {}).get("target_step")
            cfg.training.target_step = req.target_step or saved_target or cfg.training.target_step
        elif req.target_step:
            cfg.training.target_step = req.target_step
    elif req.target_step:
        cfg.training.target_step = req.target_step

    trainer = Trainer(cfg, run, data, cfg.training.target_step, world)
    superseded: list[int] = []
    if state is not None:
        resume_step = int(state.get("step", 0))
        if resume_step >= cfg.training.target_step:
            trainer.close()
            raise UserError(
                f"run {run.name} already reached step {resume_step} (target {cfg.training.target_step}); "
                f"pass --target-step N with N > {resume_step} to train further"
            )
        trainer.load_state(state, resume_from)  # refuses another architecture before anything moves
        if world.is_main:
            superseded = supersede_checkpoints(run, resume_step)
            trainer.load_checkpoint_table()
    if world.is_main:
        write_text_atomic(run.config, dump_config(cfg))

    common = {
        "config": cfg.name, "pid": os.getpid(), "target_step": cfg.training.target_step,
        "device": str(trainer.device), "precision": cfg.training.precision, "threads": torch.get_num_threads(),
        "milestones": cfg.schedule.milestones,
    }
    if resume_from is not None:
        source = resume_from.resolve()
        shown = source.relative_to(run.root.resolve()) if source.is_relative_to(run.root.resolve()) else source
        trainer.event("resume", checkpoint=str(shown), epoch=trainer.epoch, superseded=superseded, **common)
        log.info("resumed %s from %s at step %d", run.name, resume_from, trainer.step)
        if superseded:
            log.info("checkpoints after step %d moved to %s: %s", trainer.step, run.checkpoints / "superseded", superseded)
    else:
        trainer.event(
            "start", data=str(data_dir), train_files=len(data.train), val_files=len(data.val),
            params_g=parameter_count(trainer.generator),
            params_d=parameter_count(trainer.mpd) + parameter_count(trainer.msd), **common,
        )
        log.info("started %s: %s", run.name, describe(data))
    log.info("run directory %s, %s on %s, %d threads", run.root, cfg.training.precision, trainer.device, torch.get_num_threads())
    try:
        return trainer.fit()
    except BaseException as exc:
        trainer.crashed(exc)
        raise
    finally:
        trainer.close()
