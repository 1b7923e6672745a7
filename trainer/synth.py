"""``vocodertui synth`` (one file, or every mel and audio file of folders, in length-sorted batches) through
either backend: ``trainer.inference.Vocoder`` (torch) or ``trainer.onnx_vocoder.OnnxVocoder`` (onnxruntime,
an exported .onnx model). This module imports neither torch nor onnxruntime itself: the discovery of
inputs, the batches, the progress, the failure list and the writing are the same for both, and
``--backend onnxruntime`` runs where torch is not installed."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence

import numpy as np
import soundfile as sf

from trainer.audio import AUDIO_EXTENSIONS, OUTPUT_FORMATS, load_audio, load_mel_npy, output_format, resampled_length, write_wav
from trainer.errors import UserError
from trainer.inference_input import BadInput, check_precision

if TYPE_CHECKING:  # torch: for the annotations only
    from trainer.inference import PrecisionChoice

MEL_EXTENSION = ".npy"
SYNTH_EXTENSIONS = (MEL_EXTENSION, *AUDIO_EXTENSIONS)
DEFAULT_BATCH_SECONDS = 30.0
BACKENDS = ("torch", "onnxruntime")


class AnyVocoder(Protocol):
    """What synth uses of either backend's vocoder (``Vocoder``, ``OnnxVocoder``)."""

    sampling_rate: int
    hop_size: int
    num_mels: int
    n_fft: int
    precision: str

    def __call__(self, mel: np.ndarray) -> np.ndarray: ...

    def mel(self, wav: np.ndarray, sr: int) -> np.ndarray: ...

    def vocode_list(self, mels: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def check_backend(backend: str, checkpoint: Path, precision: str, config: Optional[str]) -> None:
    """Refuse a backend, precision, config or checkpoint that do not go together, before any slow work."""
    from trainer.onnx_vocoder import is_onnx_file

    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    check_precision(precision)
    if backend == "torch" and is_onnx_file(checkpoint):
        raise UserError(f"{checkpoint} is an ONNX model: synthesise with it with --backend onnxruntime")
    if backend == "onnxruntime":
        if not is_onnx_file(checkpoint):
            raise UserError(f"--backend onnxruntime runs an exported .onnx model, not {checkpoint}: "
                            f"vocodertui export --format onnx --checkpoint {checkpoint} --out model.onnx")
        if precision == "bf16":
            raise UserError("--precision bf16 needs --backend torch: onnxruntime runs the exported model in fp32")
        if config:
            raise UserError("--config does not apply to an .onnx model: its settings are in the model; drop --config")


def load_vocoder(backend: str, checkpoint: Path, config: Optional[str], precision: str) -> AnyVocoder:
    """The checked backend's vocoder for ``checkpoint``; ``precision`` ``auto`` loads it in fp32."""
    if backend == "onnxruntime":
        from trainer.onnx_vocoder import OnnxVocoder

        return OnnxVocoder(checkpoint)
    from trainer.inference import Vocoder, load_generator_state

    return Vocoder.from_state(load_generator_state(checkpoint, config), checkpoint,
                              "fp32" if precision == "auto" else precision)


def read_input_mel(path: Path, vocoder: AnyVocoder) -> np.ndarray:
    """[num_mels, frames] float32 from a mel ``.npy`` or from any audio file (resampled to the vocoder's
    rate, its mel by the vocoder's backend)."""
    if path.suffix.lower() == MEL_EXTENSION:
        return load_mel_npy(path, vocoder.num_mels)
    loaded = load_audio(path, vocoder.sampling_rate)
    if len(loaded.samples) < vocoder.n_fft:
        raise UserError(f"{path} is too short: {len(loaded.samples)} samples, need at least {vocoder.n_fft}")
    try:
        return vocoder.mel(loaded.samples, vocoder.sampling_rate)
    except BadInput as why:
        raise UserError(f"{path}: {why}") from None


def check_output_file(out: Path, example_name: str) -> None:
    """Refuse an ``--out`` that is a folder or cannot be written, before any slow work; creates nothing."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name a file in it, e.g. {out / example_name}")
    check_writable(out)


def check_writable(out: Path) -> None:
    """Refuse an ``--out`` (file or folder) whose nearest existing folder is a file or cannot be written to."""
    nearest = out if out.is_dir() else next(folder for folder in out.parents if folder.exists())
    if not nearest.is_dir():
        raise UserError(f"cannot write --out {out}: {nearest} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as exc:
        raise UserError(f"cannot write --out {out}: {exc.strerror} in {nearest}; choose another folder") from None


def synthesize(checkpoint: Path, input_path: Path, out: Path, config: Optional[str] = None,
               precision: str = "fp32", chose: Callable[[PrecisionChoice], None] = lambda _: None,
               backend: str = "torch") -> float:
    """Write the waveform for ``input_path`` to ``out`` (format from its extension, replacing any
    file there only once the whole new one is written); returns its duration in seconds.
    ``precision="auto"`` (torch) times fp32 and bf16 on this input and calls ``chose`` with the result."""
    check_backend(backend, checkpoint, precision, config)
    if input_path.is_dir():
        raise UserError(f"--input {input_path} is a folder; name an audio file or a .npy mel in it")
    if not input_path.is_file():
        raise UserError(f"input file not found: {input_path}")
    if out.exists() and out.samefile(input_path):
        raise UserError(f"--out {out} is the --input file; choose another --out so the input is kept")
    check_output_file(out, "out.wav")
    output_format(out)
    vocoder = load_vocoder(backend, checkpoint, config, precision)
    mel = read_input_mel(input_path, vocoder)
    if precision == "auto" and backend == "torch":  # for this one run, on a shape not seen before
        chose(vocoder.choose_precision(mel, [vocoder.padded_frames(mel.shape[-1])]))
    audio = vocoder(mel)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(out, audio, vocoder.sampling_rate)
    return len(audio) / vocoder.sampling_rate


@dataclass
class Job:
    """One input file and the output it makes; ``frames``: its mel's length as its header tells (0: unknown)."""

    source: Path
    out: Path
    frames: int = 0


@dataclass
class SynthProgress:
    """Where a batch synthesis stands, after each batch."""

    done: int  # files finished, written or failed, of total
    total: int
    written: int
    failed: int
    audio_seconds: float  # of the files written
    wall_seconds: float  # since the first batch began

    @property
    def files_per_second(self) -> float:
        return self.done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio written per second of wall time (above 1: faster than real time)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass
class SynthReport:
    written: list[Path] = field(default_factory=list)  # output files
    skipped: list[Path] = field(default_factory=list)  # outputs that existed (no --overwrite)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # input, one-line reason
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    precision: str = "fp32"
    precision_choice: Optional[PrecisionChoice] = None  # what --precision auto measured (torch)

    @property
    def real_time_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def plan_jobs(inputs: list[Path], out: Path) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Every input file and its output under the folder ``out``: a folder's ``.npy`` and audio files
    (recursively, hidden ones and ``out`` itself left out) mirror their paths relative to it, a file
    named on its own goes to ``out/<stem>.wav``; a file given twice is made once. Returns the jobs and
    the folders that could not be read."""
    jobs: list[Job] = []
    unreadable: list[tuple[Path, str]] = []
    out_real = os.path.realpath(out)
    for given in inputs:
        if given.is_dir():
            jobs += [Job(path, out / path.relative_to(given).with_suffix(".wav"))
                     for path in _inputs_under(given, out_real, unreadable)]
        elif given.is_file():
            jobs.append(Job(given, out / f"{given.stem}.wav"))
        else:
            raise UserError(f"input not found: {given}")
    once: dict[str, Job] = {}  # a file named twice (or named and in a named folder) is made once, where it comes first
    for job in jobs:
        once.setdefault(os.path.realpath(job.source), job)
    return list(once.values()), unreadable


def _inputs_under(folder: Path, out_real: str, unreadable: list[tuple[Path, str]]) -> list[Path]:
    def failed(exc: OSError) -> None:
        unreadable.append((Path(exc.filename), f"cannot read folder {exc.filename}: {exc.strerror or exc}; "
                                                f"its files were not synthesised"))

    found = []
    for parent, folders, names in os.walk(folder, onerror=failed):
        folders[:] = sorted(f for f in folders if not f.startswith(".")
                            and os.path.realpath(os.path.join(parent, f)) != out_real)
        found += [Path(parent) / name for name in names
                  if not name.startswith(".") and Path(name).suffix.lower() in SYNTH_EXTENSIONS]
    return sorted(found)


def check_jobs(jobs: list[Job]) -> None:
    """Refuse two inputs with one output, and an output that is an input (nothing is written)."""
    by_output: dict[str, Job] = {}
    sources = {os.path.realpath(job.source): job.source for job in jobs}
    for job in jobs:
        key = os.path.normcase(os.path.realpath(job.out))
        if key in by_output:
            raise UserError(f"{by_output[key].source} and {job.source} would both be written to {job.out}: "
                            f"synthesise one of them into another --out")
        by_output[key] = job
        if os.path.realpath(job.out) in sources:
            raise UserError(f"the output of {job.source} would replace the input {sources[os.path.realpath(job.out)]}: "
                            f"choose an --out outside the input folders")


def estimated_frames(path: Path, vocoder: AnyVocoder) -> int:
    """The mel frames ``path`` gives, from its header alone (0 where that cannot be read: the file then
    fails when it is read, in a batch of the shortest)."""
    try:
        if path.suffix.lower() == MEL_EXTENSION:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            return int(shape[-1]) if len(shape) >= 2 else 0
        info = sf.info(str(path))
        return resampled_length(info.frames, info.samplerate, vocoder.sampling_rate) // vocoder.hop_size
    except Exception:  # noqa: BLE001 - any unreadable header: read_input_mel says why, in one line
        return 0


def length_batches(jobs: list[Job], seconds_per_frame: float, batch_seconds: float) -> list[list[Job]]:
    """Jobs sorted by length and grouped so that a batch, padded to its longest, holds at most
    ``batch_seconds`` of audio; a longer file runs alone."""
    batches: list[list[Job]] = []
    current: list[Job] = []
    for job in sorted(jobs, key=lambda j: (j.frames, str(j.source))):
        if current and (len(current) + 1) * max(job.frames, 1) * seconds_per_frame > batch_seconds:
            batches.append(current)
            current = []
        current.append(job)
    return batches + [current] if current else batches


def batch_shapes(batches: list[list[Job]], vocoder: AnyVocoder) -> tuple[list[int], float]:
    """The length in frames of each different input shape the torch generator will see for ``batches``,
    and the seconds of audio it will make, padding included (for ``Vocoder.choose_precision``)."""
    runs = [(len(batch), vocoder.padded_frames(max(1, max(job.frames for job in batch)))) for batch in batches]
    seconds = sum(count * length for count, length in runs) * vocoder.hop_size / vocoder.sampling_rate
    return [length for _, length in set(runs)], seconds


def synthesize_many(checkpoint: Path, inputs: list[Path], out: Path, config: Optional[str] = None,
                    precision: str = "fp32", batch_seconds: float = DEFAULT_BATCH_SECONDS, overwrite: bool = False,
                    started: Callable[[int, int], None] = lambda total, skipped: None,
                    advance: Callable[[SynthProgress], None] = lambda _: None,
                    chose: Callable[[PrecisionChoice], None] = lambda _: None, backend: str = "torch") -> SynthReport:
    """Vocode every input file (``.npy`` mels and audio files; folders searched recursively) into the
    folder ``out`` (see ``plan_jobs``), in batches of at most ``batch_seconds`` of audio.

    Outputs that exist are skipped unless ``overwrite``. A file that cannot be read or written is
    listed in the report's ``failed`` with its reason and the others are written (each whole or not
    at all). Whatever is wrong with the command as a whole (a missing input, an ``--out`` that is a
    file or cannot be written, two inputs with one output) is a UserError before anything is written.
    ``started(to_do, skipped)`` is called once the checkpoint is loaded, ``advance`` after each batch,
    ``chose`` with what ``precision="auto"`` measured on the first batch (torch; onnxruntime runs fp32).
    """
    check_backend(backend, checkpoint, precision, config)
    if not batch_seconds > 0:
        raise UserError(f"--batch-seconds must be above 0, got {batch_seconds}")
    for given in inputs:
        if not given.exists():
            raise UserError(f"input not found: {given}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: with a folder or several inputs, --out names a folder for the outputs")
    if not out.exists() and out.suffix.lower() in (*SYNTH_EXTENSIONS, *OUTPUT_FORMATS):
        given = f"--input {inputs[0]} is a folder" if len(inputs) == 1 else f"{len(inputs)} inputs are given"
        raise UserError(f"{given}, so --out names a folder for the outputs, not a file like {out}")
    check_writable(out)
    jobs, failed = plan_jobs(inputs, out)
    if not jobs and not failed:
        raise UserError(f"no .npy mel or audio file ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, inputs))}")
    check_jobs(jobs)
    report = SynthReport(failed=failed, precision="fp32" if backend == "onnxruntime" else precision)
    if not overwrite:
        report.skipped = [job.out for job in jobs if job.out.exists()]
        jobs = [job for job in jobs if not job.out.exists()]
    if not jobs:
        return report
    vocoder = load_vocoder(backend, checkpoint, config, precision)
    for job in jobs:
        job.frames = estimated_frames(job.source, vocoder)
    batches = length_batches(jobs, vocoder.hop_size / vocoder.sampling_rate, batch_seconds)
    started(len(jobs), len(report.skipped))
    began = time.perf_counter()
    done = 0
    for batch in batches:
        mels, ready = [], []
        for job in batch:
            try:
                mels.append(read_input_mel(job.source, vocoder))
                ready.append(job)
            except UserError as why:
                report.failed.append((job.source, str(why)))
        if ready and precision == "auto" and backend == "torch" and report.precision_choice is None:
            report.precision_choice = vocoder.choose_precision(mels, *batch_shapes(batches, vocoder))
            report.precision = vocoder.precision
            chose(report.precision_choice)
        for job, audio in zip(ready, vocoder.vocode_list(mels)):
            try:
                job.out.parent.mkdir(parents=True, exist_ok=True)
                write_wav(job.out, audio, vocoder.sampling_rate)
            except OSError as exc:
                report.failed.append((job.source, f"cannot create folder {job.out.parent}: {exc.strerror or exc}"))
            except UserError as why:
                report.failed.append((job.source, str(why)))
            else:
                report.written.append(job.out)
                report.audio_seconds += len(audio) / vocoder.sampling_rate
        done += len(batch)
        report.wall_seconds = time.perf_counter() - began
        advance(SynthProgress(done, len(jobs), len(report.written), len(report.failed), report.audio_seconds,
                              report.wall_seconds))
    return report
