"""Checkpoint files: ours (everything needed to resume exactly) and jik876's g_/do_ pairs.

Ours are written atomically (temporary file, fsync, rename, fsync of the folder) and read with
``torch.load(weights_only=True)``, so a checkpoint can never execute code and a crash mid-write
leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.errors import UserError
from trainer.rundir import RunPaths

log = logging.getLogger("trainer")

FORMAT = "vocodertui-checkpoint"
VERSION = 1


class _WriteErrors:
    """A file wrapper that remembers the OSError of a failed write: torch.save reports it only as a
    RuntimeError from its zip writer, which would hide a full disk behind an internal message."""

    def __init__(self, f):
        self.f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.f.flush()


def save_atomic(obj: Any, path: Path) -> int:
    """torch.save ``obj`` to ``path`` so that readers see the old file or the new one, never half of it.

    Returns the file size in bytes. A failed write (a full disk) is a UserError; nothing but the
    temporary file is touched, and that is removed.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    writer = None
    try:
        with open(tmp, "wb") as f:
            writer = _WriteErrors(f)
            torch.save(obj, writer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        failure = writer.error if writer is not None and writer.error else exc if isinstance(exc, OSError) else None
        if failure is not None:
            reason = failure.strerror or str(failure)
            raise UserError(f"cannot write checkpoint {path}: {reason}; the previous checkpoints are intact") from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path.stat().st_size


def load_file(path: Path) -> dict[str, Any]:
    """Load a checkpoint-like file safely; UserError if it is missing, truncated, not a checkpoint or
    holds objects that could run code."""
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder; pass a checkpoint file, e.g. a ckpt_########.pt in it")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty")
    try:
        with warnings.catch_warnings():
            # torch warns about a pickle protocol it may not read; the error (if any) says all we need
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(_load_failure(path, exc)) from None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} does not hold a dictionary of states")
    return obj


def _load_failure(path: Path, exc: Exception) -> str:
    """One line for torch.load's failure: the weights-only unpickler refusing a class or function
    (torch names it as ``GLOBAL module.name``), or a file that is damaged."""
    text = str(exc).strip()
    refused = re.search(r"GLOBAL ([\w.]+)", text) if isinstance(exc, pickle.UnpicklingError) else None
    if refused:
        return (f"checkpoint {path} was refused: it holds Python objects other than tensors ({refused[1]}), "
                f"which could run code when loaded; only use checkpoints you trust, re-saved as plain "
                f"dictionaries of tensors (torch.save(model.state_dict(), ...))")
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+)", text)  # the cause, after torch's advice
    detail = unpickler[1] if unpickler else text.splitlines()[0] if text else type(exc).__name__
    return f"checkpoint {path} is corrupt or truncated ({detail[:160]})"


def is_ours(obj: dict[str, Any]) -> bool:
    return obj.get("format") == FORMAT


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def latest_valid(run: RunPaths, passed_over: list[str] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of ``run`` that loads; corrupt ones are logged, added to
    ``passed_over`` when given, and passed over."""
    for _, path in reversed(run.checkpoint_files()):
        try:
            obj = load_file(path)
        except UserError as exc:
            reason = f"{exc}; using the previous checkpoint"
        else:
            if is_ours(obj):
                return path, obj
            reason = f"{path} is not a vocodertui checkpoint; skipped"
        log.warning("%s", reason)
        if passed_over is not None:
            passed_over.append(reason)
    return None


def load_jik876_pair(path: Path) -> dict[str, Any]:
    """A jik876 ``g_########`` (and its ``do_########`` beside it, when present) as one state dict.

    Returns keys ``generator`` and, with the do_ file, ``mpd``, ``msd``, ``optim_g``, ``optim_d``,
    ``step`` (completed steps: jik876 stores the index of the last step) and ``epoch``.
    """
    g = load_file(path)
    if "generator" not in g:
        raise UserError(f"{path} is neither a vocodertui checkpoint nor a jik876 generator file (no 'generator' key)")
    out = {"generator": g["generator"]}
    if path.name.startswith("g_"):
        do_path = path.with_name("do_" + path.name[2:])
        if do_path.is_file():
            do = load_file(do_path)
            missing = {"mpd", "msd", "optim_g", "optim_d", "steps", "epoch"} - do.keys()
            if missing:
                raise UserError(f"{do_path} lacks {', '.join(sorted(missing))}")
            out.update(mpd=do["mpd"], msd=do["msd"], optim_g=do["optim_g"], optim_d=do["optim_d"],
                       step=int(do["steps"]) + 1, epoch=int(do["epoch"]))
    return out


def fit_problem(expected: dict[str, torch.Tensor], given: dict[str, Any], name: str) -> str | None:
    """Why the weights ``given`` for network ``name`` cannot load into one whose state is
    ``expected`` (names and shapes), in one line; None when they fit."""
    if not isinstance(given, dict):
        return f"has no weights for {name}"
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        which = f"lacks {name}.{missing[0]}" if missing else f"has {name}.{unexpected[0]}, which this model has not"
        return f"{which} ({len(missing)} missing, {len(unexpected)} unexpected): another architecture"
    for key, tensor in expected.items():
        shape = tuple(getattr(given[key], "shape", ()))
        if shape != tuple(tensor.shape):
            return f"has {name}.{key} of shape {list(shape)}, where this config has {list(tensor.shape)}"
    return None

