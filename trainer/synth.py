"""``vocodertui synth`` (one file, or every mel and audio file of folders, in length-sorted padded
batches) through ``trainer.inference.Vocoder``, and ``export`` to the reference's generator format."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import soundfile as sf
import torch

from trainer import checkpoint as ckpt
from trainer.audio import AUDIO_EXTENSIONS, OUTPUT_FORMATS, load_audio, load_mel_npy, output_format, resampled_length, write_wav
from trainer.config import Config
from trainer.errors import UserError
from trainer.inference import (  # noqa: F401  (re-exported: bench/ and the tests import them from here)
    INFERENCE_PRECISIONS, GeneratorState, PrecisionChoice, Vocoder, bucketed, build_generator, check_precision,
    load_generator_state, vocode,
)
from trainer.mel import MelSpectrogram, input_mel
from trainer.rundir import write_text_atomic

MEL_EXTENSION = ".npy"
SYNTH_EXTENSIONS = (MEL_EXTENSION, *AUDIO_EXTENSIONS)
DEFAULT_BATCH_SECONDS = 30.0


def read_input_mel(path: Path, cfg: Config, mel: Optional[MelSpectrogram] = None) -> torch.Tensor:
    """[1, num_mels, frames] from a mel ``.npy`` or from any audio file (resampled to the config's rate);
    ``mel``: the config's ``input_mel``, when the caller keeps one."""
    if path.suffix.lower() == MEL_EXTENSION:
        return torch.from_numpy(load_mel_npy(path, cfg.audio.num_mels)).unsqueeze(0)
    loaded = load_audio(path, cfg.audio.sampling_rate)
    if len(loaded.samples) < cfg.audio.n_fft:
        raise UserError(f"{path} is too short: {len(loaded.samples)} samples, need at least {cfg.audio.n_fft}")
    with torch.inference_mode():
        return (mel if mel is not None else input_mel(cfg.audio))(torch.from_numpy(loaded.samples).unsqueeze(0))


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
               precision: str = "fp32", chose: Callable[[PrecisionChoice], None] = lambda _: None) -> float:
    """Write the waveform for ``input_path`` to ``out`` (format from its extension, replacing any
    file there only once the whole new one is written); returns its duration in seconds.
    ``precision="auto"`` times fp32 and bf16 on this input and calls ``chose`` with the result."""
    check_precision(precision)
    if input_path.is_dir():
        raise UserError(f"--input {input_path} is a folder; name an audio file or a .npy mel in it")
    if not input_path.is_file():
        raise UserError(f"input file not found: {input_path}")
    if out.exists() and out.samefile(input_path):
        raise UserError(f"--out {out} is the --input file; choose another --out so the input is kept")
    check_output_file(out, "out.wav")
    output_format(out)
    state = load_generator_state(checkpoint, config)
    mel = read_input_mel(input_path, state.cfg)
    vocoder = Vocoder.from_state(state, checkpoint, precision)
    if precision == "auto":  # for this one run, on a shape not seen before
        length = mel.shape[-1]
        chose(vocoder.choose_precision(mel, [bucketed(length) if vocoder.device.type == "cpu" else length]))
    audio = vocoder(mel[0])
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
    precision_choice: Optional[PrecisionChoice] = None

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


def estimated_frames(path: Path, vocoder: Vocoder) -> int:
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


def batch_shapes(batches: list[list[Job]], vocoder: Vocoder) -> tuple[list[int], float]:
    """The length in frames of each different input shape the generator will see for ``batches``, and
    the seconds of audio it will make, padding included (for ``Vocoder.choose_precision``)."""
    padded = bucketed if vocoder.device.type == "cpu" else (lambda frames: frames)
    runs = [(len(batch), padded(max(1, max(job.frames for job in batch)))) for batch in batches]
    seconds = sum(count * length for count, length in runs) * vocoder.hop_size / vocoder.sampling_rate
    return [length for _, length in set(runs)], seconds


def synthesize_many(checkpoint: Path, inputs: list[Path], out: Path, config: Optional[str] = None,
                    precision: str = "fp32", batch_seconds: float = DEFAULT_BATCH_SECONDS, overwrite: bool = False,
                    started: Callable[[int, int], None] = lambda total, skipped: None,
                    advance: Callable[[SynthProgress], None] = lambda _: None,
                    chose: Callable[[PrecisionChoice], None] = lambda _: None) -> SynthReport:
    """Vocode every input file (``.npy`` mels and audio files; folders searched recursively) into the
    folder ``out`` (see ``plan_jobs``), in batches of at most ``batch_seconds`` of audio.

    Outputs that exist are skipped unless ``overwrite``. A file that cannot be read or written is
    listed in the report's ``failed`` with its reason and the others are written (each whole or not
    at all). Whatever is wrong with the command as a whole (a missing input, an ``--out`` that is a
    file or cannot be written, two inputs with one output) is a UserError before anything is written.
    ``started(to_do, skipped)`` is called once the checkpoint is loaded, ``advance`` after each batch,
    ``chose`` with what ``precision="auto"`` measured on the first batch.
    """
    check_precision(precision)
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
    report = SynthReport(failed=failed, precision=precision)
    if not overwrite:
        report.skipped = [job.out for job in jobs if job.out.exists()]
        jobs = [job for job in jobs if not job.out.exists()]
    if not jobs:
        return report
    state = load_generator_state(checkpoint, config)
    vocoder = Vocoder.from_state(state, checkpoint, "fp32" if precision == "auto" else precision)
    mel_of_audio = input_mel(vocoder.config.audio)
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
                mels.append(read_input_mel(job.source, vocoder.config, mel_of_audio)[0])
                ready.append(job)
            except UserError as why:
                report.failed.append((job.source, str(why)))
        if ready and precision == "auto" and report.precision_choice is None:
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


def jik876_config(cfg: Config) -> dict:
    a, g, t = cfg.audio, cfg.generator, cfg.training
    return {
        "resblock": g.resblock, "num_gpus": 0, "batch_size": t.batch_size, "learning_rate": t.learning_rate_g,
        "adam_b1": t.adam_b1, "adam_b2": t.adam_b2, "lr_decay": t.lr_decay, "seed": t.seed,
        "upsample_rates": g.upsample_rates, "upsample_kernel_sizes": g.upsample_kernel_sizes,
        "upsample_initial_channel": g.upsample_initial_channel, "resblock_kernel_sizes": g.resblock_kernel_sizes,
        "resblock_dilation_sizes": g.resblock_dilation_sizes, "segment_size": t.segment_size,
        "num_mels": a.num_mels, "num_freq": a.n_fft // 2 + 1, "n_fft": a.n_fft, "hop_size": a.hop_size,
        "win_size": a.win_size, "sampling_rate": a.sampling_rate, "fmin": a.fmin, "fmax": a.fmax,
        "fmax_for_loss": a.fmax_for_loss, "num_workers": t.num_workers,
        "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321", "world_size": 1},
    }


def export(checkpoint: Path, out: Path, config: Optional[str] = None) -> list[str]:
    """Write ``out`` as a jik876 generator file and ``config.json`` beside it (both or neither); returns warnings."""
    check_output_file(out, "g_00000000")
    if out.exists():
        raise UserError(f"{out} exists; remove it or choose another --out")
    loaded = load_generator_state(checkpoint, config)
    state_dict, cfg = loaded.weights, loaded.cfg
    if cfg.generator.type != "hifigan":
        raise UserError(f"{checkpoint} holds a {cfg.generator.type} generator: the jik876 format holds HiFi-GAN's only")
    build_generator(state_dict, cfg, checkpoint)  # refuses weights that do not fit the config
    config_path = out.parent / "config.json"
    config_text = json.dumps(jik876_config(cfg), indent=4) + "\n"
    config_exists = config_path.exists()
    if config_exists and config_path.read_text(encoding="utf-8") != config_text:
        raise UserError(f"{config_path} exists and describes another model; export into another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt.save_atomic({"generator": {k: v.clone() for k, v in state_dict.items()}}, out)
    if not config_exists:
        write_config_or_undo(config_path, config_text, out)
    warnings = []
    if cfg.audio.num_mels != 80:
        warnings.append(
            f"the reference's Generator is built for 80 mels (its conv_pre is fixed); this model takes "
            f"{cfg.audio.num_mels}, so jik876's own code cannot load it without that one change"
        )
    return warnings


def write_config_or_undo(config_path: Path, config_text: str, generator_file: Path) -> None:
    """Write the exported generator's config.json; if that fails, remove the generator file too."""
    try:
        write_text_atomic(config_path, config_text)
    except OSError as exc:
        generator_file.unlink(missing_ok=True)
        raise UserError(f"cannot write {config_path}: {exc.strerror or exc}; nothing was exported") from None
