"""Datasets: discovery, a deterministic train/validation split, an on-disk preprocessing cache, and
training crops whose randomness is a pure function of (seed, epoch, position) so that a resumed run
sees exactly the batches the uninterrupted one would have seen.

Crops start on a frame boundary (a multiple of hop), so the generator's input is a slice of the
utterance's cached mel and no STFT runs in the data path during training.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from trainer.audio import AUDIO_EXTENSIONS, load_audio, load_mel_npy, peak_normalize
from trainer.config import Config
from trainer.errors import UserError
from trainer.mel import input_mel

log = logging.getLogger("trainer")

CACHE_VERSION = 1
SILENCE_LOG_MEL = float(np.log(1e-5))


@dataclass
class Utterance:
    id: str
    audio_path: Path


def discover(data_dir: Path) -> list[Utterance]:
    """LJSpeech layout (``metadata.csv`` + ``wavs/``) or any folder of audio files (searched recursively)."""
    if not data_dir.exists():
        raise UserError(f"data directory not found: {data_dir}")
    if not data_dir.is_dir():
        raise UserError(f"data path is not a directory: {data_dir}")
    metadata = data_dir / "metadata.csv"
    if metadata.is_file():
        utterances = []
        with metadata.open(encoding="utf-8", newline="") as f:
            for line_no, row in enumerate(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE), 1):
                if not row or not row[0].strip():
                    continue
                uid = row[0].strip()
                wav = data_dir / "wavs" / f"{uid}.wav"
                if not wav.is_file():
                    raise UserError(f"{metadata}:{line_no}: entry '{uid}' has no audio file {wav}")
                utterances.append(Utterance(uid, wav))
        if not utterances:
            raise UserError(f"{metadata} lists no utterances")
        return utterances
    files = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise UserError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) and no metadata.csv in {data_dir}")
    ids = [str(p.relative_to(data_dir).with_suffix("")).replace(os.sep, "__") for p in files]
    return [Utterance(uid, p) for uid, p in zip(ids, files)]


def split(utterances: list[Utterance], val_count: int, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    """Deterministic split: the same files and seed always give the same validation set.

    The validation set takes ``val_count`` utterances but never more than a tenth of the data.
    """
    if len(utterances) < 2:
        raise UserError(f"need at least 2 audio files to split into training and validation, found {len(utterances)}")
    ordered = sorted(utterances, key=lambda u: u.id)
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(ordered))
    n_val = min(val_count, max(1, len(ordered) // 10))
    val = sorted((ordered[i] for i in order[:n_val]), key=lambda u: u.id)
    train = sorted((ordered[i] for i in order[n_val:]), key=lambda u: u.id)
    return train, val


def cache_key(cfg: Config, data_dir: Path) -> str:
    """The dataset and everything that changes its cached audio or mels; another key, another folder."""
    a = cfg.audio
    params = {
        "data": str(data_dir.resolve()),
        "version": CACHE_VERSION, "sampling_rate": a.sampling_rate, "n_fft": a.n_fft, "num_mels": a.num_mels,
        "hop_size": a.hop_size, "win_size": a.win_size, "fmin": a.fmin, "fmax": a.fmax,
        "normalize": cfg.data.normalize and cfg.data.mels_dir is None,
    }
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


class FeatureCache:
    """Resampled audio and input mels of every utterance, stored as .npy files beside an index.

    An entry is rebuilt when its source file's size or modification time changes.
    """

    def __init__(self, cfg: Config, data_dir: Path, root: Path):
        self.cfg = cfg
        self.dir = root / cache_key(cfg, data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index_path = self.dir / "index.json"
        try:
            self.index: dict[str, dict] = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            self.index = {}
        self._mel = input_mel(cfg.audio)

    def _fresh(self, utt: Utterance) -> bool:
        entry = self.index.get(utt.id)
        if entry is None or entry["source"] != str(utt.audio_path):
            return False
        st = utt.audio_path.stat()
        return (
            entry["size"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns
            and (self.dir / f"{utt.id}.audio.npy").is_file() and (self.dir / f"{utt.id}.mel.npy").is_file()
        )

    def prepare(self, utterances: list[Utterance]) -> None:
        stale = [u for u in utterances if not self._fresh(u)]
        if not stale:
            return
        log.info("preprocessing %d of %d files into %s", len(stale), len(utterances), self.dir)
        min_samples = self.cfg.audio.n_fft
        for utt in stale:
            loaded = load_audio(utt.audio_path, self.cfg.audio.sampling_rate)
            if loaded.channels > 1:
                log.info("%s: %d channels downmixed to mono", utt.audio_path, loaded.channels)
            if loaded.source_rate != self.cfg.audio.sampling_rate:
                log.info("%s: resampled %d -> %d Hz", utt.audio_path, loaded.source_rate, self.cfg.audio.sampling_rate)
            samples = loaded.samples
            if len(samples) < min_samples:
                raise UserError(
                    f"audio file {utt.audio_path} is too short: {len(samples)} samples at "
                    f"{self.cfg.audio.sampling_rate} Hz, need at least {min_samples} (one n_fft window)"
                )
            if self.cfg.data.normalize and self.cfg.data.mels_dir is None:
                samples = peak_normalize(samples)
            with torch.no_grad():
                mel = self._mel(torch.from_numpy(samples).unsqueeze(0))[0].numpy()
            _save_npy(self.dir / f"{utt.id}.audio.npy", samples)
            _save_npy(self.dir / f"{utt.id}.mel.npy", mel)
            st = utt.audio_path.stat()
            self.index[utt.id] = {
                "source": str(utt.audio_path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "samples": int(len(samples)),
            }
        tmp = self.index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.index))
        os.replace(tmp, self.index_path)

    def audio(self, uid: str) -> np.ndarray:
        return np.load(self.dir / f"{uid}.audio.npy", mmap_mode="r")

    def mel(self, uid: str) -> np.ndarray:
        return np.load(self.dir / f"{uid}.mel.npy", mmap_mode="r")

    def duration_s(self, utterances: list[Utterance]) -> float:
        return sum(self.index[u.id]["samples"] for u in utterances) / self.cfg.audio.sampling_rate


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
    os.replace(tmp, path)


def load_finetune_mel(mels_dir: Path, utt: Utterance, num_mels: int, n_samples: int, hop: int) -> np.ndarray:
    """An acoustic model's teacher-forced mel for ``utt``, checked for shape and alignment with its audio."""
    path = mels_dir / f"{utt.id}.npy"
    if not path.is_file():
        raise UserError(f"fine-tuning mel missing for '{utt.id}': {path}")
    mel = load_mel_npy(path, num_mels)
    expected = n_samples // hop
    if abs(mel.shape[1] - expected) > 1:
        raise UserError(
            f"fine-tuning mel {path} has {mel.shape[1]} frames but its audio has {n_samples} samples "
            f"= {expected} frames of hop {hop}: misaligned"
        )
    return mel


class VocoderData:
    """Everything the loop needs from the data: training batches by position, validation utterances."""

    def __init__(self, cfg: Config, data_dir: Path, cache_root: Path):
        self.cfg = cfg
        self.data_dir = data_dir
        utterances = discover(data_dir)
        self.train, self.val = split(utterances, cfg.data.val_count, cfg.training.seed)
        if len(self.train) < cfg.training.batch_size:
            raise UserError(
                f"{data_dir}: {len(self.train)} training files after the validation split, "
                f"fewer than training.batch_size ({cfg.training.batch_size})"
            )
        self.cache = FeatureCache(cfg, data_dir, cache_root)
        self.cache.prepare(utterances)
        self.mels_dir = Path(cfg.data.mels_dir) if cfg.data.mels_dir else None
        self._finetune_mels: dict[str, np.ndarray] = {}
        if self.mels_dir is not None:
            for utt in utterances:
                self._finetune_mels[utt.id] = load_finetune_mel(
                    self.mels_dir, utt, cfg.audio.num_mels, self.cache.index[utt.id]["samples"], cfg.audio.hop_size
                )

    @property
    def batches_per_epoch(self) -> int:
        return len(self.train) // self.cfg.training.batch_size

    def mel(self, uid: str) -> np.ndarray:
        return self._finetune_mels[uid] if self.mels_dir is not None else self.cache.mel(uid)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.cfg.training.seed, epoch]).permutation(len(self.train))

    def loader(self, epoch: int, first_batch: int, rank: int = 0, world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``first_batch`` .. end of ``epoch`` as (mel [B, M, F], audio [B, T]); the last partial
        batch is dropped. With several processes, each gets its own contiguous slice of every batch."""
        dataset = SegmentDataset(self, epoch)
        order = self.epoch_order(epoch)
        b = self.cfg.training.batch_size
        per_rank = b // world_size
        batches = [order[i * b + rank * per_rank : i * b + (rank + 1) * per_rank].tolist()
                   for i in range(first_batch, self.batches_per_epoch)]
        workers = self.cfg.training.num_workers
        return iter(torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, num_workers=workers, collate_fn=_stack,
            prefetch_factor=4 if workers else None, worker_init_fn=_leave_sigint_to_parent if workers else None,
        ))

    def validation_item(self, utt: Utterance) -> tuple[torch.Tensor, torch.Tensor]:
        """Full utterance: input mel [1, M, F] and audio [1, F * hop]."""
        mel = self.mel(utt.id)
        audio = np.asarray(self.cache.audio(utt.id))
        frames = min(mel.shape[1], len(audio) // self.cfg.audio.hop_size)
        return (
            torch.from_numpy(np.array(mel[:, :frames])).unsqueeze(0),
            torch.from_numpy(np.array(audio[: frames * self.cfg.audio.hop_size])).unsqueeze(0),
        )


class SegmentDataset(torch.utils.data.Dataset):
    """Random frame-aligned crops of ``segment_size`` samples; clips shorter than that are padded with silence."""

    def __init__(self, data: VocoderData, epoch: int):
        self.data = data
        self.epoch = epoch
        self.segment = data.cfg.training.segment_size
        self.hop = data.cfg.audio.hop_size

    def __len__(self) -> int:
        return len(self.data.train)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        utt = self.data.train[index]
        audio = self.data.cache.audio(utt.id)
        mel = self.data.mel(utt.id)
        seg_frames = self.segment // self.hop
        frames = min(mel.shape[1], len(audio) // self.hop)
        rng = np.random.default_rng([self.data.cfg.training.seed, self.epoch, index])
        if frames >= seg_frames:
            start = int(rng.integers(0, frames - seg_frames + 1))
            mel_crop = np.array(mel[:, start : start + seg_frames])
            audio_crop = np.array(audio[start * self.hop : start * self.hop + self.segment])
        else:
            mel_crop = np.full((mel.shape[0], seg_frames), SILENCE_LOG_MEL, dtype=np.float32)
            mel_crop[:, :frames] = mel[:, :frames]
            audio_crop = np.zeros(self.segment, dtype=np.float32)
            audio_crop[: frames * self.hop] = audio[: frames * self.hop]
        return mel_crop, audio_crop


def _leave_sigint_to_parent(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the trainer stops gracefully and needs its workers until then
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stack(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    mels, audios = zip(*items)
    return torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(audios))


def default_cache_root(logs_dir: Path, cfg: Config) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else logs_dir / ".cache" / "features"


def describe(data: VocoderData) -> str:
    return (
        f"{len(data.train)} training / {len(data.val)} validation files, "
        f"{data.cache.duration_s(data.train + data.val) / 60:.1f} min of audio"
    )
