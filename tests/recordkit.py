"""Records for crafted run directories: any kind from trainer.records, with the fields a test does
not care about filled with typed placeholders, so the readers decode it as the trainer's own."""

from __future__ import annotations

import json
import socket

import msgspec
import psutil

PLACEHOLDERS = {msgspec.inspect.IntType: 0, msgspec.inspect.FloatType: 0.0, msgspec.inspect.StrType: "",
                msgspec.inspect.ListType: [], msgspec.inspect.DictType: {}}


def _placeholder(info):
    if isinstance(info, msgspec.inspect.Metadata):
        return _placeholder(info.type)
    if isinstance(info, msgspec.inspect.StructType):
        return make(info.cls)
    if isinstance(info, msgspec.inspect.UnionType):
        return None
    if isinstance(info, msgspec.inspect.LiteralType):
        return info.values[0]
    return PLACEHOLDERS[type(info)]


def make(kind, **given):
    """A ``kind`` record with ``given`` fields and placeholders for its other required ones."""
    fields = {f.name: _placeholder(f.type) for f in msgspec.inspect.type_info(kind).fields
              if f.required and f.name not in given}
    return kind(**fields, **given)


def line(kind, **given) -> str:
    """The same record as the line the trainer would write (with its newline)."""
    return msgspec.json.encode(make(kind, **given)).decode() + "\n"


def write_pid_record(run, pid: int, **given) -> dict:
    """A PID file for process ``pid`` as a trainer of ``run`` would write it, with ``given`` fields replaced."""
    process = psutil.Process(pid)
    record = {"pid": pid, "create_time": process.create_time(), "host": socket.gethostname(), "argv": process.cmdline(),
              "start_time": process.create_time(), "run_dir": str(run.root.resolve()), "token": "t", **given}
    run.pid.write_text(json.dumps(record))
    return record
