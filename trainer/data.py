"""Datasets: discovery, a deterministic train/validation split, an on-disk preprocessing cache, and
training crops whose randomness is a pure function of (seed, epoch, position) so that a resumed run
sees exactly the batches the uninterrupted one would have seen.

Crops start on a frame boundary (a multiple of hop), so the generator's input is a slice of the
utterance's cached mel and no STFT runs in the data path during training.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import logging
import os
import signal
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import torch

from trainer.audio import AUDIO_EXTENSIONS, load_audio, load_mel_npy, peak_normalize, read_audio_file, resampled_length
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


# Longer ids make cache file names ({id}.audio.npy) past the 255-byte limit of most file systems;
# LJSpeech's are 10 characters.
MAX_ID_BYTES = 200
# No metadata line is near this long (LJSpeech's longest is under 1 KB): a longer one means this is
# not a metadata file, and it is refused before it is held in memory whole.
MAX_LINE_BYTES = 1 << 20
_CHUNK_BYTES = 1 << 16
_SEPARATOR_SAMPLE_LINES = 100
# Other tools' exports of the same table: tab from spreadsheets' "Unicode text", comma from CSV.
_OTHER_SEPARATORS = {"\t": "tab", ",": "comma"}
_LINE_BREAKING_OR_CONTROL = ("Cc", "Zl", "Zp")
_LAYOUTS = {
    "|": "'id|text' (LJSpeech's '|' separator)",
    "\t": "'id<tab>text' (tab-separated like the first lines)",
    ",": "'id,text' (comma-separated like the first lines)",
}


def discover(data_dir: Path) -> list[Utterance]:
    """LJSpeech layout (``metadata.csv`` + ``wavs/``) or any folder of audio files (searched recursively)."""
    if not data_dir.exists():
        raise UserError(f"data directory not found: {data_dir}")
    if not data_dir.is_dir():
        raise UserError(f"data path is not a directory: {data_dir}")
    metadata = data_dir / "metadata.csv"
    if _is_file(metadata, where=str(data_dir)):
        return _read_metadata(metadata, data_dir / "wavs")
    return _scan_folder(data_dir)


def _read_metadata(metadata: Path, wavs: Path) -> list[Utterance]:
    if not wavs.is_dir():
        raise UserError(f"{metadata} is there but {wavs} is not a folder: the LJSpeech layout keeps audio in wavs/<id>.wav")
    try:
        with metadata.open("rb") as f:
            utterances = _utterances(metadata, _text_lines(metadata, f), wavs)
    except OSError as exc:
        raise UserError(f"cannot read {metadata}: {_reason(exc)}") from None
    if not utterances:
        raise UserError(f"{metadata} lists no utterances")
    return utterances


def _utterances(metadata: Path, lines: Iterator[tuple[int, str]], wavs: Path) -> list[Utterance]:
    head = list(itertools.islice(lines, _SEPARATOR_SAMPLE_LINES))
    separator = _separator([text for _, text in head])
    if separator != "|":
        log.info("%s: no '|' in the first lines, read as %s-separated", metadata, _OTHER_SEPARATORS[separator])
    utterances = []
    first_line_of: dict[str, int] = {}
    for line_no, text in itertools.chain(head, lines):
        uid = _utterance_id(metadata, line_no, text, separator, wavs)
        if uid in first_line_of:
            raise UserError(f"{metadata}: lines {first_line_of[uid]} and {line_no} both list {uid!r}: remove one")
        first_line_of[uid] = line_no
        utterances.append(Utterance(uid, wavs / f"{uid}.wav"))
    return utterances


def _separator(sample: list[str]) -> str:
    """LJSpeech's '|' wherever it appears; otherwise tab or comma when most sampled lines have it, so that
    a stray line is reported against the separator of the lines around it."""
    if any("|" in text for text in sample):
        return "|"
    counts = {separator: sum(separator in text for text in sample) for separator in _OTHER_SEPARATORS}
    commonest = max(counts, key=counts.__getitem__)
    return commonest if 2 * counts[commonest] > len(sample) else "|"


def _utterance_id(metadata: Path, line_no: int, text: str, separator: str, wavs: Path) -> str:
    fields = text.split(separator, 1)
    uid = _unquoted(fields[0].strip())
    problem = _id_problem(uid)
    found = problem is None and _is_file(wavs / f"{uid}.wav", where=f"{metadata}:{line_no}")
    if len(fields) == 1 and not found:
        # a line that is all id is fine when it names a wav; otherwise its separator is wrong
        raise UserError(f"{metadata}:{line_no}: expected {_LAYOUTS[separator]}; found {_shown(text)} — fix the separator")
    if problem is not None:
        raise UserError(f"{metadata}:{line_no}: id {_shown(uid)} {problem}")
    if not found:
        read_as = "" if separator == "|" else f" (read as {_OTHER_SEPARATORS[separator]}-separated: no '|' in the first lines)"
        raise UserError(f"{metadata}:{line_no}: entry {uid!r} has no audio file {wavs / f'{uid}.wav'}{read_as}")
    return uid


def _unquoted(field: str) -> str:
    """A spreadsheet's quoted field ("LJ001-0001") without its quotes. Only the id is unquoted: LJSpeech's
    texts hold unpaired double quotes, so the rest of a line is never parsed as CSV."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"').strip()
    return field


def _id_problem(uid: str) -> str | None:
    """Why ``uid`` cannot name a file directly inside wavs/, or None."""
    if not uid:
        return "is empty: each line starts with the id of its wavs/<id>.wav"
    if "/" in uid or "\\" in uid:
        return "is a path, not a file name: ids name files directly inside wavs/"
    if any(unicodedata.category(c) in _LINE_BREAKING_OR_CONTROL for c in uid):
        return "contains control or line-break characters: not a file name"
    if len(uid.encode()) > MAX_ID_BYTES:
        return f"is {len(uid.encode())} bytes long, more than {MAX_ID_BYTES}: not a file name"
    return None


def _is_file(path: Path, where: str) -> bool:
    try:
        return path.is_file()
    except OSError as exc:
        raise UserError(f"{where}: cannot check {path}: {_reason(exc)}") from None


def _shown(text: str, limit: int = 60) -> str:
    return repr(text[:limit] + "…" if len(text) > limit else text)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _text_lines(metadata: Path, f: BinaryIO) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line, without its line end (LF, CRLF or a lone CR)."""
    for line_no, line in _byte_lines(metadata, _utf8_chunks(metadata, f)):
        text = _decoded(metadata, line_no, line)
        if text.strip():
            yield line_no, text


def _utf8_chunks(metadata: Path, f: BinaryIO) -> Iterator[bytes]:
    """The file's bytes as UTF-8: a UTF-8 byte-order mark dropped, UTF-16 (Excel's "Unicode text") re-encoded."""
    first = f.read(_CHUNK_BYTES)
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        yield from _utf16_as_utf8(metadata, first, f)
        return
    yield first.removeprefix(codecs.BOM_UTF8)
    while chunk := f.read(_CHUNK_BYTES):
        yield chunk


def _utf16_as_utf8(metadata: Path, first: bytes, f: BinaryIO) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder("utf-16")()
    chunk = first
    try:
        while chunk:
            yield decoder.decode(chunk).encode()
            chunk = f.read(_CHUNK_BYTES)
        yield decoder.decode(b"", final=True).encode()
    except UnicodeDecodeError:
        raise UserError(f"{metadata} starts like UTF-16 text but is not valid UTF-16: save it as UTF-8") from None


def _byte_lines(metadata: Path, chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """Numbered lines split at LF, CRLF or a lone CR, none held longer than MAX_LINE_BYTES."""
    line_no = 0
    pending = b""
    for chunk in chunks:
        lines = (pending + chunk).splitlines(keepends=True)
        # the last piece may go on in the next chunk, and a CR there may be the first half of a CRLF
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for line in lines:
            line_no += 1
            yield line_no, line.rstrip(b"\r\n")
        if len(pending) > MAX_LINE_BYTES:
            raise UserError(
                f"{metadata}:{line_no + 1}: line longer than {MAX_LINE_BYTES >> 20} MiB: "
                "not a metadata line (is this LJSpeech's metadata.csv?)"
            )
    if pending:
        yield line_no + 1, pending.rstrip(b"\r")


def _decoded(metadata: Path, line_no: int, line: bytes) -> str:
    try:
        text = line.decode()
    except UnicodeDecodeError as exc:
        raise UserError(f"{metadata} is not UTF-8 text (byte 0x{line[exc.start]:02x} at line {line_no}): save it as UTF-8") from None
    if "\0" in text:
        raise UserError(
            f"{metadata}:{line_no}: NUL bytes, so not a text file (or UTF-16 without its byte-order mark): save it as UTF-8 text"
        )
    return text


def _scan_folder(data_dir: Path) -> list[Utterance]:
    files = sorted(p for p in _files_under(data_dir) if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise UserError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) and no metadata.csv in {data_dir}")
    file_of: dict[str, Path] = {}
    for path in files:
        uid = str(path.relative_to(data_dir).with_suffix("")).replace(os.sep, "__")
        if uid in file_of:
            raise UserError(f"audio files {file_of[uid]} and {path} both make the id {uid!r} (ids name the cached features): rename one")
        if len(uid.encode()) > MAX_ID_BYTES:
            raise UserError(
                f"audio file {path} makes an id of {len(uid.encode())} bytes from its path, more than {MAX_ID_BYTES}: "
                "shorten its name or its folders' names"
            )
        file_of[uid] = path
    return [Utterance(uid, path) for uid, path in file_of.items()]


def _files_under(data_dir: Path) -> Iterator[Path]:
    # os.walk rather than rglob, which skips unreadable folders without a word: their files would be missing
    for folder, _, names in os.walk(data_dir, onerror=_unreadable_folder):
        for name in names:
            yield Path(folder) / name


def _unreadable_folder(exc: OSError) -> None:
    raise UserError(f"cannot read folder {exc.filename}: {_reason(exc)} — fix its permissions or move it out of the data folder")


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
        for utt in stale:
            loaded = load_audio(utt.audio_path, self.cfg.audio.sampling_rate)
            if loaded.channels > 1:
                log.info("%s: %d channels downmixed to mono", utt.audio_path, loaded.channels)
            if loaded.source_rate != self.cfg.audio.sampling_rate:
                log.info("%s: resampled %d -> %d Hz", utt.audio_path, loaded.source_rate, self.cfg.audio.sampling_rate)
            samples = loaded.samples
            check_length(utt.audio_path, len(samples), self.cfg)
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


def check_length(path: Path, samples: int, cfg: Config) -> None:
    """Refuse audio shorter than one STFT window at the config's rate."""
    a = cfg.audio
    if samples < a.n_fft:
        raise UserError(f"audio file {path} is too short: {samples} samples at {a.sampling_rate} Hz, need at least "
                        f"{a.n_fft} (one n_fft window, {1000 * a.n_fft / a.sampling_rate:.0f} ms)")


@dataclass
class AudioFacts:
    seconds: float
    source_rate: int
    channels: int


def check_utterance(cfg: Config, utt: Utterance) -> AudioFacts:
    """Everything the trainer's preprocessing refuses about one utterance, without preprocessing it:
    its samples (readable, present, finite), its length once resampled, and its fine-tuning mel."""
    data, rate = read_audio_file(utt.audio_path)
    samples = resampled_length(len(data), rate, cfg.audio.sampling_rate)
    check_length(utt.audio_path, samples, cfg)
    if cfg.data.mels_dir:
        load_finetune_mel(Path(cfg.data.mels_dir), utt, cfg.audio.num_mels, samples, cfg.audio.hop_size)
    return AudioFacts(len(data) / rate, rate, data.shape[1])


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
