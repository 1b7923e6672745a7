"""The ``vocodertui`` command line.

Each command imports what it needs when it runs, so commands that only read a run directory never
load torch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

from rich import box
from rich.console import Console
from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text

from trainer.config import PITCH_MODELS
from trainer.errors import UserError
from trainer.metrics_export import FORMATS
from trainer.records import QUALITY_METRICS
from vocodertui.control import ControlError
from vocodertui.units import format_bytes, format_duration


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def start_request(args: argparse.Namespace):
    from trainer.plan import StartRequest

    return StartRequest(
        config=args.config, data=args.data, run=args.run, logs_dir=args.logs_dir, resume=args.resume,
        target_step=args.target_step, mels_dir=args.mels_dir,
    )


def make_console(stderr: bool = False) -> Console:
    """A console as wide as the terminal, or wide enough for tables when output goes to a file or pipe."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def print_checks(plan) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("", width=1)
    table.add_column("check")
    table.add_column("result", overflow="fold")
    for check in plan.checks:
        mark = "[red]✗[/]" if not check.ok else "[yellow]⚠[/]" if check.warning else "[green]✓[/]"
        table.add_row(mark, check.name, Text(check.detail))
    make_console().print(table)


def cmd_check(args: argparse.Namespace) -> int:
    from trainer.plan import make_plan

    plan = make_plan(start_request(args))
    print_checks(plan)
    return 0 if plan.ok else 1


def torchrun_prefix(args: argparse.Namespace) -> list[str]:
    """The torchrun launcher in front of the trainer's command line, or nothing for one process."""
    if args.nproc_per_node == 1 and args.nnodes == 1:
        return []
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.nproc_per_node}",
            f"--nnodes={args.nnodes}", f"--node-rank={args.node_rank}", f"--master-addr={args.master_addr}",
            f"--master-port={args.master_port}"]


def cmd_start(args: argparse.Namespace) -> int:
    from trainer.plan import make_plan
    from trainer.rundir import write_text_atomic
    from vocodertui.control import launch_detached

    plan = make_plan(start_request(args))
    print_checks(plan)
    plan.refuse_unless_ok()
    if plan.config_changes and not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"the config changes {len(plan.config_changes)} keys of what the checkpoint was trained with "
                            "(see 'resume checkpoint' above): pass --yes to resume with them, or drop --config/--data")
        if not Confirm.ask(f"Resume {plan.run.name} with these config changes?", default=False):
            print("not started")
            return 1
    elif not (args.yes or args.foreground) and sys.stdin.isatty() and not Confirm.ask(f"Start run {plan.run.name}?", default=True):
        print("not started")
        return 1
    prefix = torchrun_prefix(args)
    if args.foreground and not prefix:
        from trainer.launch import execute

        print(f"training {execute(plan)}")
        return 0
    plan.run.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan.run.plan, plan.to_json())
    trainer = [*(prefix or [sys.executable]), "-m", "trainer", str(plan.run.plan.resolve())]
    if args.foreground:
        return subprocess.call(trainer + ["--console"])
    console = make_console(stderr=True)
    with console.status("starting the trainer") as status:
        pid = launch_detached(plan.run, trainer, args.wait, lambda line: status.update(line[:100]))
    print(f"trainer running as pid {pid} in {plan.run.root}")
    print(f"watch it:  vocodertui monitor --run {plan.run.name} --logs-dir {args.logs_dir}")
    print(f"stop it:   vocodertui stop --run {plan.run.name} --logs-dir {args.logs_dir}")
    return 0


def resolve_run_arg(args: argparse.Namespace):
    from trainer.rundir import run_in
    from vocodertui.runstate import list_runs

    logs = Path(args.logs_dir)
    if args.run:
        run = run_in(logs, args.run)
        if not run.root.is_dir():
            raise UserError(f"run {args.run} not found in {logs}")
        return run
    runs = list_runs(logs)
    if not runs:
        raise UserError(f"no runs in {logs}")
    return runs[0]


def cmd_monitor(args: argparse.Namespace) -> int:
    from vocodertui.dashboard.app import MonitorApp
    from vocodertui.dashboard.widgets import RUN_COLOURS

    names = list(dict.fromkeys(args.run or [None]))
    if len(names) > len(RUN_COLOURS):
        raise UserError(f"monitor compares at most {len(RUN_COLOURS)} runs at once, got {len(names)}: "
                        f"name fewer with --run")
    runs = [resolve_run_arg(argparse.Namespace(run=name, logs_dir=args.logs_dir)) for name in names]
    if not sys.stdout.isatty():
        raise UserError("monitor needs a terminal; use vocodertui status for a one-shot report")
    MonitorApp(runs, Path(args.logs_dir)).run()
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from vocodertui.control import stop

    run = resolve_run_arg(args)
    console = make_console(stderr=True)
    with console.status(f"stopping {run.name}") as status:
        outcome = stop(run, args.timeout, args.force, status.update)
    print(outcome)
    return 0


STATE_STYLE = {"running": "green", "stopping": "yellow", "stalled": "yellow", "crashed": "red",
               "finished": "cyan", "stopped": "white", "not started": "dim"}


def cmd_status(args: argparse.Namespace) -> int:
    from vocodertui.runstate import list_runs, run_status

    logs = Path(args.logs_dir)
    if args.run:
        runs = [resolve_run_arg(args)]
    else:
        runs = list_runs(logs)
    statuses = [run_status(r) for r in runs]
    if args.json:
        payload = [s.to_dict() for s in statuses]
        print(json.dumps(payload[0] if args.run else payload, indent=2))
        return 0
    if not statuses:
        print(f"no runs in {logs}")
        return 0
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for column in ("run", "state", "step", "steps/s", "ETA", "last metric", "last checkpoint", "pid", "memory"):
        table.add_column(column, justify="right" if column in ("step", "steps/s", "pid", "memory") else "left")
    for s in statuses:
        step = f"{s.step:,}" + (f" / {s.target_step:,}" if s.target_step else "")
        ckpt = f"{s.last_checkpoint.step:,}" if s.last_checkpoint else "-"
        table.add_row(
            s.name, f"[{STATE_STYLE.get(s.state, 'white')}]{s.state}[/]" + (f" [yellow]⚠ {len(s.warnings)}[/]" if s.warnings else ""), step,
            f"{s.steps_per_s:.2f}" if s.steps_per_s else "-", format_duration(s.eta_s),
            format_duration(s.last_metric_age_s) + (" ago" if s.last_metric_age_s is not None else ""),
            ckpt, str(s.pid or "-"), format_bytes(s.rss_bytes),
        )
    console = make_console()
    console.print(table)
    for s in statuses:
        if s.reason:
            console.print(f"{s.name}: {s.reason}", markup=False)
        if s.stale_pid_file:
            console.print(f"{s.name}: stale PID file, not trusted: {s.stale_pid_file}", markup=False)
        if s.skipped_records:
            console.print(f"{s.name}: {s.skipped_records} lines of its JSONL files are not records this version "
                          "reads (garbled, or from another version); they were skipped", markup=False)
        for w in s.warnings:
            console.print(Text(f"{s.name}: ⚠ {w.kind} since step {w.since_step:,}: {w.message}", style="yellow"))
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    from vocodertui.runstate import best_by, checkpoint_table, quality_cells, scored_metrics

    run = resolve_run_arg(args)
    rows = checkpoint_table(run)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    scored = scored_metrics(rows)
    ranking = best_by(run)
    table = Table(title=f"checkpoints of {run.name}", caption=f"★ best by {ranking.title} ({ranking.direction})",
                  box=box.SIMPLE_HEAD, show_edge=False)
    for column in ("step", "saved", "size", "val mel-L1", *(m.title for m in scored), "best"):
        table.add_column(column, justify="right" if column != "saved" else "left")
    for r in rows:
        table.add_row(f"{r.step:,}", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time)), format_bytes(r.size),
                      f"{r.val_mel:.4f}" if r.val_mel is not None else "-", *quality_cells(r, scored), "★" if r.best else "")
    make_console().print(table)
    if not rows:
        print("no checkpoints yet")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from trainer.synth import synthesize, synthesize_many

    inputs = [Path(p) for p in args.input]
    live = sys.stderr.isatty()  # a progress bar on a terminal, plain lines in a log or pipe
    progress = Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[speed]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), disable=not live)

    def say(line: str) -> None:
        if live:
            progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def chose(choice) -> None:
        say(f"vocodertui: {choice.line()}")

    if len(inputs) == 1 and not inputs[0].is_dir():  # one file: --out is that file, replaced if it exists
        seconds = synthesize(Path(args.checkpoint), inputs[0], Path(args.out), args.config, args.precision, chose,
                             args.backend)
        print(f"wrote {args.out} ({seconds:.2f} s of audio)")
        return 0

    task = progress.add_task("synth", total=None, speed="", visible=False)

    def started(total: int, skipped: int) -> None:
        if skipped:
            say(f"vocodertui: {skipped} outputs exist and are skipped (--overwrite replaces them)")
        say(f"vocodertui: synth {total} files into {args.out}/")
        progress.update(task, total=total, visible=True)

    def advance(p) -> None:
        speed = f"{p.files_per_second:.1f} files/s, {p.real_time_factor:.1f}x real time"
        progress.update(task, completed=p.done, speed=speed)
        if not live:
            failed = f", {p.failed} failed" if p.failed else ""
            say(f"synth {p.done}/{p.total} files{failed}: {speed}")

    with progress:
        report = synthesize_many(Path(args.checkpoint), inputs, Path(args.out), args.config, args.precision,
                                 args.batch_seconds, args.overwrite, started, advance, chose, args.backend)
    skipped = f"; {len(report.skipped)} existed and were skipped" if report.skipped else ""
    if report.written or not report.skipped:
        files = f"{len(report.written)} file{'' if len(report.written) == 1 else 's'}"
        print(f"wrote {files} ({report.audio_seconds:.1f} s of audio) to {args.out}/ in "
              f"{report.wall_seconds:.1f} s: {len(report.written) / max(report.wall_seconds, 1e-9):.1f} files/s, "
              f"{report.real_time_factor:.1f}x real time, {report.precision}{skipped}")
    else:
        print(f"nothing to do: all {len(report.skipped)} outputs exist in {args.out}/ (--overwrite replaces them)")
    if report.failed:
        print(f"vocodertui: {len(report.failed)} file{'s' if len(report.failed) > 1 else ''} failed "
              f"(the others were written):", file=sys.stderr)
        for source, reason in report.failed:
            print(f"  {reason if reason.startswith(str(source)) else f'{source}: {reason}'}", file=sys.stderr)
        return 1
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trainer.evaluate import evaluate, parse_metrics

    metrics = parse_metrics(args.metrics)
    with Progress(TextColumn("scoring {task.fields[file]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("eval", total=None, file="")
        report = evaluate([Path(c) for c in args.checkpoint], Path(args.data), Path(args.mels_dir) if args.mels_dir else None,
                          args.config, metrics, args.pitch_model, Path(args.out) if args.out else None,
                          advance=lambda file: progress.update(task, advance=1, file=file),
                          started=lambda total: progress.update(task, total=total))
    for metric, how in report.missing.items():
        print(f"vocodertui: {metric} is not scored: {how}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
        return 0
    console = make_console()
    console.print(eval_table(report))
    for skipped in report.skipped:
        console.print(f"skipped {skipped.file}: {skipped.reason}", markup=False)
    for e in report.checkpoints:
        for u in e.unscored:
            console.print(f"{Path(e.path).name}: {u.file} has no {u.metric}: {u.reason}", markup=False)
    if args.out:
        console.print(f"generated audio in {args.out}/", markup=False)
    return 0


def eval_table(report) -> Table:
    def cell(summary) -> str:
        if summary is None:
            return "-"
        return f"{summary.mean:.4g}" + (f" ± {summary.ci95:.2g}" if summary.ci95 is not None else "")

    files = {e.files for e in report.checkpoints}
    table = Table(title="quality", box=box.SIMPLE_HEAD, show_edge=False,
                  caption=f"mean ± 95 % CI over {'/'.join(map(str, sorted(files)))} files; ★ best per row; "
                          f"ground truth: the references' own score, the ceiling")
    table.add_column("metric")
    table.add_column("better")
    for e in report.checkpoints:
        table.add_column(f"{Path(e.path).name}" + (f"\nstep {e.step:,}" if e.step is not None else ""), justify="right")
    if report.ground_truth:
        table.add_column("ground truth", justify="right")
    for name in report.metrics:
        metric = QUALITY_METRICS[name]
        summaries = [e.metrics.get(name) for e in report.checkpoints]
        means = [s.mean for s in summaries if s is not None]
        best = (max if metric.higher_is_better else min)(means) if len(means) > 1 else None
        row = [metric.title, "↑" if metric.higher_is_better else "↓"]
        row += [cell(s) + (" ★" if s is not None and s.mean == best else "") for s in summaries]
        if report.ground_truth:
            row.append(cell(report.ground_truth.metrics.get(name)))
        table.add_row(*row)
    return table


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.format == "onnx":
        from trainer.onnx_export import export_onnx

        verify = Path(args.verify_input) if args.verify_input else None
        done = export_onnx(Path(args.checkpoint), out, args.config, verify)
        print(f"wrote {out} ({done.generator}, ONNX opset {done.opset}, dynamic batch and frames); onnxruntime "
              f"matches torch within {done.max_abs:.1e} (max abs) at {' and '.join(map(str, done.lengths))} frames "
              f"of {done.verified_on}")
        return 0
    if args.verify_input:
        raise UserError("--verify-input checks an ONNX export: add --format onnx, or drop --verify-input")
    if out.suffix.lower() == ".onnx":
        raise UserError(f"--out {out} names an ONNX file but --format is jik876: add --format onnx")
    from trainer.export import export

    for warning in export(Path(args.checkpoint), out, args.config):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {args.out} and {out.parent / 'config.json'}")
    return 0


def cmd_export_metrics(args: argparse.Namespace) -> int:
    from trainer.metrics_export import export_metrics

    run = resolve_run_arg(args)
    report = export_metrics(run, args.format, Path(args.out) if args.out else None, args.overwrite)
    if args.format == "csv":
        files = ", ".join(f"{name} ({rows} rows)" for name, rows in report.written.items())
        print(f"wrote {files} to {report.out}/")
    else:
        points = ", ".join(f"{count} {kind}{'' if count == 1 else 's'}" for kind, count in report.written.items())
        print(f"wrote {run.name}'s {points} to {report.out}/")
        print(f"view them:  tensorboard --logdir {report.out}")
    for problem in report.skipped:
        print(f"vocodertui: skipped {problem}", file=sys.stderr)
    return 0


class UsageError(Exception):
    """A command line argparse cannot parse; the message is one line."""


class Parser(argparse.ArgumentParser):
    """argparse, with a bad command line reported as one line that points at --help, not as a usage block."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vocodertui", description="Train HiFi-GAN vocoders and watch them train.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def add_run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config or jik876 config.json; a bare name looks in config/ (default: the run's own config when resuming it, else demo)")
        p.add_argument("--data", help="dataset folder: LJSpeech layout (metadata.csv + wavs/) or any folder of audio files")
        p.add_argument("--run", help="run name (folder under the logs directory); default: <config>-<date>-<time>")
        p.add_argument("--logs-dir", default="logs", help="where run directories live (default: logs)")
        p.add_argument("--resume", metavar="latest|PATH", help="continue from the run's latest checkpoint or from a checkpoint file (ours or jik876 g_########)")
        p.add_argument("--target-step", type=positive_int, help="train until this step (overrides the config; extends a finished run)")
        p.add_argument("--mels-dir", help="fine-tune on an acoustic model's teacher-forced mels: {mels_dir}/{utterance id}.npy")

    start = sub.add_parser("start", help="check, then train a vocoder in the background (or --foreground)")
    add_run_options(start)
    start.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    start.add_argument("--foreground", action="store_true", help="train in this terminal (Ctrl-C stops gracefully)")
    start.add_argument("--wait", type=float, default=600, help="seconds to wait for the trainer to report its start (default 600)")
    start.add_argument("--nproc-per-node", type=positive_int, default=1, help="processes on this machine (DDP under torchrun: gloo on CPU, NCCL on GPU)")
    start.add_argument("--nnodes", type=positive_int, default=1, help="machines taking part (default 1)")
    start.add_argument("--node-rank", type=int, default=0, help="this machine's index among --nnodes")
    start.add_argument("--master-addr", default="127.0.0.1", help="address of the node with rank 0")
    start.add_argument("--master-port", type=int, default=29500, help="a free TCP port on the rank-0 node")
    start.set_defaults(func=cmd_start)

    check = sub.add_parser("check", help="run the pre-flight checks of start without starting anything")
    add_run_options(check)
    check.set_defaults(func=cmd_check)

    stop = sub.add_parser("stop", help="stop a running trainer gracefully (checkpoint first)")
    stop.add_argument("--run", help="run name (default: the most recently active run)")
    stop.add_argument("--logs-dir", default="logs")
    stop.add_argument("--timeout", type=float, default=300, help="seconds to wait for the graceful stop (default 300)")
    stop.add_argument("--force", action="store_true", help="SIGKILL the trainer if it has not stopped after --timeout")
    stop.set_defaults(func=cmd_stop)

    monitor = sub.add_parser("monitor", help="the dashboard: watch a run or compare several, stop it, resume it from a checkpoint")
    monitor.add_argument("--run", action="append",
                         help="run name (default: the most recently active run); repeat it to compare runs in one "
                              "set of plots, the first is the one the keys steer")
    monitor.add_argument("--logs-dir", default="logs")
    monitor.set_defaults(func=cmd_monitor)

    status = sub.add_parser("status", help="state of one run, or of every run under the logs directory")
    status.add_argument("--run")
    status.add_argument("--logs-dir", default="logs")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    checkpoints = sub.add_parser("checkpoints", help="a run's checkpoints: step, time, size, val mel-L1, best")
    checkpoints.add_argument("--run", help="run name (default: the most recently active run)")
    checkpoints.add_argument("--logs-dir", default="logs")
    checkpoints.add_argument("--json", action="store_true")
    checkpoints.set_defaults(func=cmd_checkpoints)

    def positive_seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    synth = sub.add_parser("synth", help="turn mels (.npy) or audio files into audio with a checkpoint, one file or folders of them")
    synth.add_argument("--checkpoint", required=True,
                       help="our ckpt_XXXXXXXX.pt, a jik876 g_XXXXXXXX, a BigVGAN release folder, or (with "
                            "--backend onnxruntime) a model.onnx")
    synth.add_argument("--config", help="config for a jik876 checkpoint (default: config.json beside it)")
    synth.add_argument("--input", required=True, nargs="+", action="extend", metavar="IN",
                       help="IN.wav (any audio file), IN.npy mel [n_mels, frames], or a folder of them (searched "
                            "recursively); several may follow --input")
    synth.add_argument("--out", required=True,
                       help="one input file: the output file (its extension picks the format); a folder or several "
                            "inputs: the output folder, where each input's path (relative to its folder) becomes a .wav")
    synth.add_argument("--batch-seconds", type=positive_seconds, default=30.0, metavar="S",
                       help="vocode files of similar length together, padded, up to S seconds of audio a batch "
                            "(default 30; a longer file runs alone)")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace outputs that exist (default: skip them; one input file always replaces its --out)")
    synth.add_argument("--precision", default="auto",
                       help="auto (default): time fp32 and bf16 on the first batch, add what each new input shape "
                            "costs, and keep the one predicted to finish first (fp32 under onnxruntime); fp32; "
                            "bf16: autocast, ~45-50 dB SNR against fp32, faster only where the CPU or GPU has bf16 units")
    synth.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                       help="torch (default): any checkpoint; onnxruntime: an .onnx model from export --format onnx, "
                            "without importing torch (fp32)")
    synth.set_defaults(func=cmd_synth)

    evaluation = sub.add_parser("eval", help="vocode a dataset with checkpoints and score them: PESQ, M-STFT, pitch, DNSMOS")
    evaluation.add_argument("--checkpoint", action="append", required=True,
                            help="our ckpt_XXXXXXXX.pt, a jik876 g_XXXXXXXX or a BigVGAN release folder; repeat to compare several")
    evaluation.add_argument("--data", required=True, help="LJSpeech layout (metadata.csv + wavs/) or a folder of audio")
    evaluation.add_argument("--mels-dir", help="vocode an acoustic model's mels, {mels_dir}/{utterance id}.npy, instead of the audio's")
    evaluation.add_argument("--config", help="the config whose mels the data gets (default: the first checkpoint's; "
                                             "a jik876 checkpoint: config.json beside it)")
    evaluation.add_argument("--metrics", help="comma-separated, default all: " + ",".join(QUALITY_METRICS))
    evaluation.add_argument("--pitch-model", default="full", choices=PITCH_MODELS,
                            help="torchcrepe model for periodicity and vuv_f1 (tiny: ~10x faster, not comparable with full)")
    evaluation.add_argument("--json", action="store_true", help='one object: {"checkpoints": [{"path", "step", "files", "seconds", "metrics"}]}')
    evaluation.add_argument("--out", help="keep the generated WAVs here, a folder per checkpoint")
    evaluation.set_defaults(func=cmd_eval)

    export = sub.add_parser("export", help="write the generator as a file jik876/hifi-gan loads, or as an ONNX model")
    export.add_argument("--checkpoint", required=True,
                        help="our ckpt_XXXXXXXX.pt, a jik876 g_XXXXXXXX, or a BigVGAN release folder")
    export.add_argument("--config", help="config for a jik876 checkpoint (default: config.json beside it)")
    export.add_argument("--format", choices=("jik876", "onnx"), default="jik876",
                        help="jik876 (default): its g_ file and config.json, HiFi-GAN only; onnx: a model that "
                             "synth --backend onnxruntime runs without torch (HiFi-GAN or BigVGAN)")
    export.add_argument("--out", required=True,
                        help="output file: e.g. g_00500000 (jik876; config.json is written beside it) or model.onnx")
    export.add_argument("--verify-input", metavar="FILE",
                        help="onnx: the audio file or .npy mel whose mel checks onnxruntime against torch "
                             "(default: a synthetic demo clip)")
    export.set_defaults(func=cmd_export)

    export_metrics = sub.add_parser("export-metrics", help="a run's metrics, validation and quality as TensorBoard event files or CSV")
    export_metrics.add_argument("--run", help="run name (default: the most recently active run)")
    export_metrics.add_argument("--logs-dir", default="logs")
    export_metrics.add_argument("--format", required=True, choices=FORMATS)
    export_metrics.add_argument("--out", help="output folder (default: <run>/tensorboard for tensorboard, <run>/export for csv)")
    export_metrics.add_argument("--overwrite", action="store_true",
                                help="replace the event files or CSV files the folder already holds (default: refuse)")
    export_metrics.set_defaults(func=cmd_export_metrics)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"vocodertui: error: {exc}", file=sys.stderr)
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UserError, ControlError) as exc:
        print(f"vocodertui: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vocodertui: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into a line and a file
        print(f"vocodertui: internal error: {one_line(f'{type(exc).__name__}: {exc}')[:300]}, a bug — "
              f"full traceback in {keep_traceback()}", file=sys.stderr)
        return 70


def one_line(message: str) -> str:
    """The first line of a message (the lines after it, such as a log tail, are for ControlError's callers)."""
    first, _, rest = message.strip().partition("\n")
    return first if not rest else f"{first} …"


def keep_traceback() -> str:
    """Write the exception being handled, with the command line, to a file; returns its path."""
    import tempfile
    import traceback

    text = f"vocodertui {' '.join(sys.argv[1:])}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n{traceback.format_exc()}"
    for folder in (Path.home() / ".cache" / "vocodertui", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
            path.write_text(text, encoding="utf-8")
            return str(path)
        except OSError:
            continue
    return "(nowhere: no writable folder; here it is)\n" + text


if __name__ == "__main__":
    sys.exit(main())
