"""The run directory's contract: every kind of line in ``metrics.jsonl`` and ``events.jsonl``, typed.

The trainer writes these structs and every reader decodes lines into them, so a field's name and
type are stated once, here. A line that does not decode (torn, not JSON, a field missing or of the
wrong type, an unknown event) is skipped and counted by the reader, never raised. The field tables
of docs/run-directory.md are generated from this module (``python -m trainer.records``) and a test
holds the document to them. Imports neither torch nor textual.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

import msgspec


def described(kind, meaning: str, title: Optional[str] = None):
    """``kind`` annotated with the meaning the docs table shows (and a short title for plots)."""
    extra = {"title": title} if title else {}
    return Annotated[kind, msgspec.Meta(description=meaning, **extra)]


# A step or epoch: a JSON integer that float64 holds exactly (the readers plot it); a line with
# anything larger is not one the trainer wrote, and is skipped like any other garbled line.
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Time = described(float, "Unix time when the line was written")
Step = described(int, "completed optimizer steps (see \"Step numbering\")")


class Metrics(msgspec.Struct):
    """One line of metrics.jsonl: means over the steps since the previous line."""

    time: Time
    step: described(Count, "completed steps (a multiple of `log_every`)")
    epoch: described(Optional[Count], "current epoch, from 0") = None
    loss_g: described(Optional[float], "generator loss: `loss_adv + loss_fm + lambda_mel * loss_mel + lambda_stft * loss_stft`",
                      "G total") = None
    loss_d: described(Optional[float], "discriminator loss, `loss.gan`'s form summed over `discriminator.kinds`; "
                      "0 before `training.discriminator_start_step`", "D total") = None
    loss_mel: described(Optional[float], "the mel loss, **not** weighted: L1 between the log-mels of real and generated audio "
                        "(loss mel, `fmax_for_loss`) with `loss.mel: single`; the sum over the scales with `multi_scale`",
                        "mel-L1") = None
    loss_adv: described(Optional[float], "generator adversarial loss over `discriminator.kinds`, **already multiplied by "
                        "`lambda_adv`**; 0 before `training.discriminator_start_step`", "adversarial") = None
    loss_fm: described(Optional[float], "feature-matching loss over `discriminator.kinds`, **already multiplied by "
                       "`lambda_fm`**; 0 before `training.discriminator_start_step`", "feature match") = None
    loss_stft: described(Optional[float], "multi-resolution STFT loss (spectral convergence + log magnitude), **not** "
                         "weighted; `null` with `loss.stft: none`", "MR-STFT") = None
    lr: described(Optional[float], "current learning rate of the generator optimizer (the discriminator's is not logged)") = None
    steps_per_s: described(Optional[float], "steps in the interval ÷ wall time of the interval; `null` if that time is 0") = None
    grad_norm_g: described(Optional[float], "total L2 gradient norm of the generator, after unscaling and before clipping") = None
    grad_norm_d: described(Optional[float], "the same for both discriminators") = None
    time_data: described(Optional[float], "seconds per step spent waiting for the batch (the data loader) and moving it to "
                         "the device; a mean over the interval, as the other `time_` fields", "data wait") = None
    time_d: described(Optional[float], "seconds per step in the discriminators' forward and backward passes", "D fwd+bwd") = None
    time_g: described(Optional[float], "seconds per step in the generator's forward and backward passes, with the "
                      "reconstruction losses and the generator-side pass through the discriminators", "G fwd+bwd") = None
    time_optim: described(Optional[float], "seconds per step in the optimiser steps, with unscaling and clipping", "optimiser") = None
    time_other: described(Optional[float], "seconds per step in everything else (bookkeeping, validation, checkpoints): "
                          "`1 / steps_per_s` minus the other four", "other") = None
    rss_bytes: described(Optional[int], "resident set size of the trainer process (rank 0) when the line was written",
                         "trainer RSS") = None


# The losses the training step returns, in this order; the dashboard plots the first five.
LOSSES = ("loss_g", "loss_d", "loss_mel", "loss_adv", "loss_fm", "loss_stft")


class QualityMetric(msgspec.Struct, frozen=True):
    """An objective quality metric (``trainer/quality.py`` computes each) or the validation mel-L1."""

    name: str
    title: str
    higher_is_better: bool
    needs_reference: bool = True

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


QUALITY_METRICS: dict[str, QualityMetric] = {m.name: m for m in (
    QualityMetric("pesq_wb", "PESQ wb", True),
    QualityMetric("mstft", "M-STFT", False),
    QualityMetric("periodicity", "periodicity", False),
    QualityMetric("vuv_f1", "V/UV F1", True),
    QualityMetric("mel_l1", "mel-L1", False),
    QualityMetric("dnsmos_ovrl", "DNSMOS ovrl", True, needs_reference=False),
    QualityMetric("dnsmos_sig", "DNSMOS sig", True, needs_reference=False),
    QualityMetric("dnsmos_bak", "DNSMOS bak", True, needs_reference=False),
)}
# What ``schedule.best_by`` may name: the validation's mel-L1 or a quality metric.
VAL_MEL_L1 = QualityMetric("val_mel_l1", "val mel-L1", False)
RANKINGS: dict[str, QualityMetric] = {VAL_MEL_L1.name: VAL_MEL_L1, **QUALITY_METRICS}


class Summary(msgspec.Struct):
    """One metric over the files it could score."""

    mean: float
    ci95: Optional[float]  # half-width of the 95 % confidence interval of the mean (Student's t); null for n = 1
    n: int


class UnscoredFile(msgspec.Struct):
    file: str
    metric: str
    reason: str


class Quality(msgspec.Struct, tag_field="kind", tag="quality"):
    """A line of metrics.jsonl that scores the generator's validation output (``kind`` is always
    ``"quality"``, written first, which is how a reader tells it from a metrics line)."""

    time: Time
    step: described(Count, "the step whose validation output was scored")
    files: described(int, "validation files scored (`schedule.quality_files`, fewer if the validation set is smaller)")
    seconds: described(float, "wall time of the scoring, rounded to ms")
    pitch_model: described(str, "torchcrepe model behind `periodicity` and `vuv_f1`: `full` or `tiny`")
    metrics: described(dict[str, Summary], "metric name → `{\"mean\", \"ci95\", \"n\"}` over the files it scored (see \"Quality\")")
    unscored: described(list[UnscoredFile], "`{\"file\", \"metric\", \"reason\"}` for each file a metric could not score") = []
    per_file: described(dict[str, dict[str, float]],
                        "file id → metric → its score, for every file and metric scored: the values behind `metrics`") = {}


QUALITY_PREFIX = b'{"kind":"quality"'


class Event(msgspec.Struct, tag_field="event"):
    """A line of events.jsonl; ``event`` names its kind (the struct's tag)."""

    time: Time
    step: described(Count, "the trainer's step when the event was written")


class Segment(Event):
    """What a start and a resume both say about the process that trains from here on."""

    config: described(str, "config name (`name` in the config)")
    pid: described(int, "process id of the trainer (rank 0 under torchrun), the same as in `trainer.pid`")
    target_step: described(Count, "step this process trains to")
    device: described(str, "`str(torch.device)`: `\"cpu\"`, `\"cuda\"`, or `\"cuda:<local rank>\"` under torchrun on GPUs")
    precision: described(str, "`fp32`, `bf16` or `fp16`: what this process trains in (`training.precision: auto` resolved)")
    threads: described(int, "`torch.get_num_threads()` of this process")
    milestones: described(list[int], "`schedule.milestones`")


# Where both a start and a resume say it (a Segment field with a default would have to come last).
PrecisionTimings = described(Optional[dict[str, float]], "with `training.precision: auto`: the median seconds per training step "
                             "measured for each candidate (`fp32`, `bf16`) before training, and `precision` is the faster; "
                             "`null` when the config sets the precision")


class Start(Segment, tag="start"):
    data: described(str, "data folder used")
    train_files: described(int, "utterances in the training set")
    val_files: described(int, "utterances in the validation set")
    params_g: described(int, "generator parameter count")
    params_d: described(int, "parameter count of all the discriminators (`discriminator.kinds`)")
    finetuned_from: described(Optional[str], "`training.finetune_from` resolved, and which networks it gave "
                              "(`generator` or `generator, mpd, msd`, …); `null` for a run from scratch") = None
    precision_timings: PrecisionTimings = None


class Resume(Segment, tag="resume"):
    checkpoint: described(str, "the file resumed from, relative to the run folder when it lies inside it, else absolute")
    epoch: described(Count, "the checkpoint's epoch")
    superseded: described(list[int], "steps of newer checkpoints set aside into `checkpoints/superseded/`")
    precision_timings: PrecisionTimings = None


class Validation(Event, tag="validation"):
    val_mel: described(Optional[float], "mean over the validation utterances of the mel L1 (loss mel, whole utterances, fp32)")
    seconds: described(float, "duration of the validation, rounded to ms")
    samples: described(Optional[str], "sample folder relative to the run (`samples/step_XXXXXXXX`); `null` when `val_samples` is 0")


class Checkpoint(Event, tag="checkpoint"):
    path: described(str, "relative to the run: `checkpoints/ckpt_XXXXXXXX.pt`")
    size: described(int, "file size in bytes")
    val_mel: described(Optional[float], "`val_mel` of a validation at this same step, else `null`")
    epoch: described(Count, "epoch at save time")
    reason: described(Literal["milestone", "requested", "scheduled", "stop", "final"],
                      "`milestone`, `requested`, `scheduled`, `stop` or `final` (see below)")
    quality: described(Optional[dict[str, float]],
                       "the means of a `quality` record at this same step (metric → mean), else `null`") = None


class Milestone(Event, tag="milestone"):
    milestone: described(int, "the milestone reached, the same as `step`")


class Stopping(Event, tag="stopping"):
    reason: described(str, "the signal's name, `SIGINT` or `SIGTERM`")


class Stopped(Event, tag="stopped"):
    reason: described(str, "the signal's name, or `stop on rank 0` (see below)")


class Finished(Event, tag="finished"):
    target_step: described(Count, "the same as `step`")


class SkippedBatch(msgspec.Struct):
    epoch: int
    batch: int


class NanRollback(Event, tag="nan_rollback"):
    failed_step: described(Count, "the step that gave the non-finite loss (the previous step + 1)")
    checkpoint: described(str, "the checkpoint rolled back to, relative to the run (`step` is its step)")
    skipped_batch: described(SkippedBatch, "`{\"epoch\": int, \"batch\": int}`: the batch that was skipped")
    strikes: described(int, "non-finite steps in a row so far: 1 or 2")


class Crashed(Event, tag="crashed"):
    reason: described(str, "`\"interrupted\"` for `KeyboardInterrupt`, else `\"<ExceptionType>: <message>\"`")
    traceback: described(str, "the formatted traceback")


class ReopenedFile(Event, tag="file_reopened"):
    file: described(str, "the file found deleted or replaced and opened again: `metrics.jsonl` or `events.jsonl`")
    reason: described(Literal["deleted", "replaced by another file"],
                      "`deleted`, or `replaced by another file` (one renamed onto it, an editor's save)")


EVENTS = (Start, Resume, Validation, Checkpoint, Milestone, Stopping, Stopped, Finished, NanRollback, Crashed, ReopenedFile)
AnyEvent = Union[EVENTS]
# A new timeline begins at these: records written before one for later steps are void (see supersede).
REWINDS = (Start, Resume, NanRollback)
SEGMENTS = (Start, Resume)
ENDINGS = (Stopped, Finished, Crashed)
# The last of these says what a trainer is doing: training, stopping, or gone.
CONTROLS = (Start, Resume, Stopping, Stopped, Finished, Crashed)

Record = Union[Metrics, Quality, AnyEvent]


def checkpoint_scores(val_mel: Optional[float], quality: Optional[dict[str, float]]) -> dict[str, float]:
    """What a checkpoint can be ranked by (``RANKINGS``): its validation mel-L1 and its quality means."""
    scores = dict(quality or {})
    if val_mel is not None:
        scores[VAL_MEL_L1.name] = val_mel
    return scores


def best_checkpoint(scores: dict[int, dict[str, float]], by: QualityMetric) -> Optional[int]:
    """The step of the best checkpoint by ``by`` (the earliest of equals); None if none has a finite score."""
    ranked = [(-v if by.higher_is_better else v, step) for step, s in scores.items()
              if (v := s.get(by.name)) is not None and math.isfinite(v)]
    return min(ranked)[1] if ranked else None


def kind_of(event_type: type[Event]) -> str:
    """The ``event`` value a struct is written with."""
    return event_type.__struct_config__.tag


def title(metric: str) -> str:
    """The short name of a metrics field (for plot titles)."""
    for field in msgspec.inspect.type_info(Metrics).fields:
        if field.name == metric:
            return field.type.extra_json_schema.get("title", metric)
    raise KeyError(metric)


def supersede(records: list[Record]) -> list[Record]:
    """Records in step order once resumes are accounted for.

    A run resumed (or rolled back after a non-finite loss, or started again) from the checkpoint at
    step S recomputes every step after S, so a ``REWINDS`` event at S drops earlier records with a
    step > S, and a metrics line for step s replaces any earlier line for a step >= s.
    """
    kept: list[Record] = []
    for record in records:
        if isinstance(record, Metrics):
            while kept and kept[-1].step >= record.step:
                kept.pop()
        elif isinstance(record, REWINDS):
            while kept and kept[-1].step > record.step:
                kept.pop()
        kept.append(record)
    return kept


METRICS_DECODER = msgspec.json.Decoder(Metrics)
QUALITY_DECODER = msgspec.json.Decoder(Quality)
EVENTS_DECODER = msgspec.json.Decoder(AnyEvent)
ENCODER = msgspec.json.Encoder()


def encode(record: Record) -> bytes:
    """One line of compact JSON; NaN and ±inf anywhere become null."""
    return ENCODER.encode(record) + b"\n"


def _type_name(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.Metadata):
        return _type_name(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        return "\\|".join(_type_name(t) for t in info.types)
    if isinstance(info, msgspec.inspect.ListType):
        return f"list of {_type_name(info.item_type)}"
    names = {msgspec.inspect.IntType: "int", msgspec.inspect.FloatType: "float", msgspec.inspect.StrType: "string",
             msgspec.inspect.NoneType: "null", msgspec.inspect.StructType: "object", msgspec.inspect.LiteralType: "string",
             msgspec.inspect.DictType: "object"}
    return names[type(info)]


def markdown_table(kind: type[msgspec.Struct]) -> str:
    """The docs table of a record kind's fields (the common ``time``, ``step`` and ``event`` first)."""
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for field in msgspec.inspect.type_info(kind).fields:
        meaning = field.type.extra_json_schema["description"] if isinstance(field.type, msgspec.inspect.Metadata) else ""
        rows.append(f"| `{field.name}` | {_type_name(field.type)} | {meaning} |")
    return "\n".join(rows)


def markdown_tables() -> dict[str, str]:
    """Each record kind's table, by the name the docs give it (``metrics`` or the event's kind)."""
    tables = {"metrics": markdown_table(Metrics), "quality": markdown_table(Quality)}
    tables.update({kind_of(e): markdown_table(e) for e in EVENTS})
    return tables


if __name__ == "__main__":
    for name, table in markdown_tables().items():
        print(f"### {name}\n\n{table}\n")
