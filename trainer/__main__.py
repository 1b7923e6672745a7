"""The trainer's own entry point: ``python -m trainer PLAN [--console]`` executes a start plan that
``vocodertui start`` wrote (see trainer/plan.py), detached or under torchrun."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="Train what a start plan says.")
    parser.add_argument("plan", help="a start-plan.json that vocodertui start wrote")
    parser.add_argument("--console", action="store_true", help="log to the terminal too, not only to trainer.log")
    args = parser.parse_args(argv)
    try:
        from trainer.launch import execute
        from trainer.plan import StartPlan

        path = Path(args.plan)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read the start plan {path}: {exc.strerror}") from None
        print(f"training {execute(StartPlan.from_json(text, str(path)), console=args.console)}")
        return 0
    except UserError as exc:
        print(f"trainer: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trainer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
