"""Executing a start plan: the process, the run directory, the data, the checkpoint to continue
from, and the start/resume event. Nothing is decided here that ``trainer.plan`` decided."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import torch

from trainer import pretrained
from trainer.allocator import keep_freed_memory
from trainer.config import Config, dump_config
from trainer.data import VocoderData, default_cache_root, describe
from trainer.distributed import World, check_batch, join_world, leave_world
from trainer.errors import UserError
from trainer.gan import Gan
from trainer.loop import Trainer
from trainer.pidfile import PidRecord, RunLock, read_pid_file, remove_pid_file, write_pid_file
from trainer.precision import choose_precision, with_precision
from trainer.plan import StartPlan, StartRequest, has_history, load_resume_state, make_plan
from trainer.records import Resume, Start
from trainer.rundir import RunPaths, write_text_atomic

log = logging.getLogger("trainer")


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


def start_training(req: StartRequest, console: bool = True) -> str:
    """Plan ``req`` and train it in this process (one process; tests and ``start --foreground``)."""
    plan = make_plan(req)
    plan.refuse_unless_ok()
    return execute(plan, console)


def execute(plan: StartPlan, console: bool = True) -> str:
    """Train what ``plan`` says in this process; returns 'finished' or 'stopped'.

    Under torchrun every rank calls this with the same plan; rank 0 alone takes the run's lock and
    writes to it.
    """
    world = join_world()
    previous = {sig: signal.signal(sig, handler) for sig, handler in STARTUP_HANDLERS.items()}
    try:
        check_batch(plan.config.training.batch_size, world)
        world.barrier()  # every rank has checked before rank 0 writes anything
        if not world.is_main:
            return _train(plan, console, world)
        lock = prepare_run_dir(plan)
        pid_record = write_pid_file(plan.run)
        try:
            return _train(plan, console, world)
        finally:
            remove_pid_file(plan.run, pid_record)
            lock.release()
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


def prepare_run_dir(plan: StartPlan) -> RunLock:
    """Create the run's folders and take its lock; refuses a live run, and a run that gained a
    history since the plan called it new."""
    run = plan.run
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
    if not plan.continuing and has_history(run):
        lock.release()
        raise UserError(f"run {run.name} was started by someone else since it was checked: pick another --run")
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


def setup_process(cfg: Config, world: World = World()) -> torch.device:
    """Device, threads, allocator and the seed the networks are initialised from."""
    t = cfg.training
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if t.device == "auto" else t.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    threads = t.threads or torch.get_num_threads()
    if world.distributed and device.type == "cpu":
        # the processes on this machine share its cores
        threads = max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
    torch.set_num_threads(threads)
    keep_freed_memory()
    torch.manual_seed(t.seed)
    return device


def _train(plan: StartPlan, console: bool, world: World) -> str:
    cfg, run = plan.config, plan.run
    if world.is_main:
        setup_logging(run, console)
        for check in plan.checks:
            log.info("checked %s: %s", check.name, check.detail)
        world.barrier()
    else:
        world.barrier()  # rank 0 has created the run directory
        log.setLevel(logging.WARNING)

    data_dir = Path(cfg.data.path)
    cache = default_cache_root(plan.logs_dir, cfg)
    if world.is_main:  # rank 0 fills the feature cache, the others then find it ready
        data = VocoderData(cfg, data_dir, cache)
        world.barrier()
    else:
        world.barrier()
        data = VocoderData(cfg, data_dir, cache)

    device = setup_process(cfg, world)
    precision, precision_timings = cfg.training.precision, None
    if precision == "auto":
        log.info("precision auto: timing fp32 and bf16 training steps on %s", device)
        choice = choose_precision(cfg, device, world)
        precision, precision_timings = choice.precision, choice.step_seconds
        log.info("%s", choice.describe())
    trainer = Trainer(cfg, run, data, Gan(with_precision(cfg, precision), device, world), world)
    superseded: list[int] = []
    if plan.resume_from is not None:
        trainer.load_state(load_resume_state(plan.resume_from), plan.resume_from)
        if world.is_main:
            superseded = supersede_checkpoints(run, trainer.step)
            trainer.artifacts.known_checkpoints()
    finetuned_from = None
    if plan.resume_from is None and cfg.training.finetune_from is not None:
        state = pretrained.load_pretrained(Path(cfg.training.finetune_from))
        parts = pretrained.pretrained_parts(state, list(trainer.gan.discriminators), cfg.training.finetune_discriminators)
        trainer.gan.load_pretrained(state, parts)
        finetuned_from = f"{cfg.training.finetune_from} ({', '.join(parts)})"
        log.info("fine-tuning from %s", finetuned_from)
    if world.is_main:
        write_text_atomic(run.config, dump_config(cfg))

    common = dict(config=cfg.name, pid=os.getpid(), target_step=cfg.training.target_step, device=str(device),
                  precision=precision, precision_timings=precision_timings, threads=torch.get_num_threads(), milestones=cfg.schedule.milestones)
    if plan.resume_from is not None:
        source = plan.resume_from
        shown = source.relative_to(run.root.resolve()) if source.is_relative_to(run.root.resolve()) else source
        trainer.artifacts.event(Resume, trainer.step, checkpoint=str(shown), epoch=trainer.epoch, superseded=superseded, **common)
        log.info("resumed %s from %s at step %d", run.name, source, trainer.step)
        if superseded:
            log.info("checkpoints after step %d moved to %s: %s", trainer.step, run.checkpoints / "superseded", superseded)
    else:
        if plan.continuing:
            log.warning("run %s has no valid checkpoint yet: it starts again from step 0", run.name)
        params_g, params_d = trainer.gan.parameter_counts()
        trainer.artifacts.event(Start, 0, data=str(data_dir), train_files=len(data.train), val_files=len(data.val),
                                params_g=params_g, params_d=params_d, finetuned_from=finetuned_from, **common)
        log.info("started %s: %s", run.name, describe(data))
    log.info("run directory %s, %s on %s, %d threads", run.root, precision, device, torch.get_num_threads())
    try:
        return trainer.fit()
    except BaseException as exc:
        trainer.crashed(exc)
        raise
    finally:
        trainer.close()
