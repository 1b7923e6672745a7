"""The ``vocodertui`` command line.

Each command imports what it needs when it runs, so commands that only read a run directory never
load torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from trainer.errors import UserError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_start(args: argparse.Namespace) -> int:
    if not args.foreground:
        raise UserError("training in the background is not available yet: add --foreground")
    from trainer.launch import StartRequest, start_training

    outcome = start_training(StartRequest(
        config=args.config, data=args.data, run=args.run, logs_dir=args.logs_dir, resume=args.resume,
        target_step=args.target_step, mels_dir=args.mels_dir,
    ))
    print(f"training {outcome}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from trainer.synth import synthesize

    seconds = synthesize(Path(args.checkpoint), Path(args.input), Path(args.out), args.config)
    print(f"wrote {args.out} ({seconds:.2f} s of audio)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from trainer.synth import export

    for warning in export(Path(args.checkpoint), Path(args.out), args.config):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {args.out} and {Path(args.out).parent / 'config.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vocodertui", description="Train HiFi-GAN vocoders and watch them train.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = sub.add_parser("start", help="train a vocoder (a new run, or resume one)")
    start.add_argument("--config", help="YAML config or jik876 config.json; a bare name looks in config/ (default: the run's own config when resuming it, else demo)")
    start.add_argument("--data", help="dataset folder: LJSpeech layout (metadata.csv + wavs/) or any folder of audio files")
    start.add_argument("--run", help="run name (folder under the logs directory); default: <config>-<date>-<time>")
    start.add_argument("--logs-dir", default="logs", help="where run directories live (default: logs)")
    start.add_argument("--resume", metavar="latest|PATH", help="continue from the run's latest checkpoint or from a checkpoint file (ours or jik876 g_########)")
    start.add_argument("--target-step", type=positive_int, help="train until this step (overrides the config; extends a finished run)")
    start.add_argument("--mels-dir", help="fine-tune on an acoustic model's teacher-forced mels: {mels_dir}/{utterance id}.npy")
    start.add_argument("--foreground", action="store_true", help="train in this terminal (Ctrl-C stops gracefully)")
    start.set_defaults(func=cmd_start)

    synth = sub.add_parser("synth", help="turn a mel (.npy) or an audio file into audio with a checkpoint")
    synth.add_argument("--checkpoint", required=True, help="our ckpt_XXXXXXXX.pt or a jik876 g_XXXXXXXX")
    synth.add_argument("--config", help="config for a jik876 checkpoint (default: config.json beside it)")
    synth.add_argument("--input", required=True, help="IN.wav (any audio file) or IN.npy mel [n_mels, frames]")
    synth.add_argument("--out", required=True, help="output WAV file")
    synth.set_defaults(func=cmd_synth)

    export = sub.add_parser("export", help="write a generator file that jik876/hifi-gan loads")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--config", help="config for a jik876 checkpoint (default: config.json beside it)")
    export.add_argument("--out", required=True, help="output file, e.g. g_00500000 (config.json is written beside it)")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"vocodertui: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vocodertui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
