import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from trainer.config import load_config
from trainer.data import VocoderData, discover, split
from trainer.errors import UserError
from trainer.mel import input_mel


def tone(seconds: float, sr: int, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(int(freq)).standard_normal(len(t))
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def make_folder(root, n=12, sr=22050, seconds=1.0, ext="wav"):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(root / f"clip{i:02d}.{ext}", tone(seconds, sr, 150 + 10 * i), sr)
    return root


def small_cfg(**training):
    cfg = load_config("demo")
    cfg.training.batch_size = 2
    cfg.training.segment_size = 2048
    cfg.data.val_count = 2
    for key, value in training.items():
        setattr(cfg.training, key, value)
    return cfg


def test_ljspeech_layout_reads_metadata(tmp_path):
    make_folder(tmp_path / "wavs", n=3)
    (tmp_path / "metadata.csv").write_text("clip00|a|a\nclip01|b|b\nclip02|c \"quoted\"|c\n")
    assert [u.id for u in discover(tmp_path)] == ["clip00", "clip01", "clip02"]


def test_missing_metadata_entry_is_named(tmp_path):
    make_folder(tmp_path / "wavs", n=2)
    (tmp_path / "metadata.csv").write_text("clip00|a|a\nclip07|b|b\n")
    with pytest.raises(UserError, match=r"metadata.csv:2: entry 'clip07' has no audio file"):
        discover(tmp_path)


def test_missing_and_empty_data_dirs(tmp_path):
    with pytest.raises(UserError, match="data directory not found"):
        discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no audio files"):
        discover(tmp_path / "empty")


@pytest.mark.parametrize("names", [("a.wav", "a.flac"), ("x/y.wav", "x__y.wav")])
def test_files_that_make_the_same_id_are_named(tmp_path, names):
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        sf.write(tmp_path / name, tone(0.1, 22050), 22050)
    with pytest.raises(UserError, match=r"audio files .* both make the id .*: rename one") as info:
        discover(tmp_path)
    assert all(str(tmp_path / name) in str(info.value) for name in names)


def test_an_unreadable_folder_is_named_not_skipped(tmp_path, monkeypatch):
    make_folder(tmp_path / "open", n=2)
    make_folder(tmp_path / "locked", n=2)
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == tmp_path / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UserError, match=r"cannot read folder .*locked: Permission denied — fix its permissions"):
        discover(tmp_path)


def test_an_id_too_long_for_cache_file_names_is_refused(tmp_path):
    deep = tmp_path / ("d" * 120) / ("e" * 120)
    make_folder(deep, n=1)
    with pytest.raises(UserError, match=r"makes an id of 250 bytes from its path, more than 200"):
        discover(tmp_path)


def test_split_is_deterministic_and_disjoint(tmp_path):
    utts = discover(make_folder(tmp_path, n=30))
    train, val = split(utts, val_count=5, seed=1)
    again_train, again_val = split(list(reversed(utts)), val_count=5, seed=1)
    assert [u.id for u in val] == [u.id for u in again_val] and len(val) == 3  # at most a tenth
    assert not {u.id for u in train} & {u.id for u in val}
    assert len(train) + len(val) == 30


def test_crops_are_frame_aligned_slices_of_the_cached_mel(tmp_path):
    cfg = small_cfg()
    data = VocoderData(cfg, make_folder(tmp_path / "d", n=12, seconds=1.0), tmp_path / "cache")
    mel, audio = next(data.loader(epoch=0, first_batch=0))
    assert mel.shape == (2, 80, 2048 // 256) and audio.shape == (2, 2048)
    # the interior frames of the crop's own mel equal the cached slice (edges differ only by padding)
    recomputed = input_mel(cfg.audio)(audio)
    torch.testing.assert_close(recomputed[:, :, 2:-2], mel[:, :, 2:-2], atol=1e-4, rtol=0)


def test_batches_depend_only_on_epoch_and_position(tmp_path):
    data = VocoderData(small_cfg(), make_folder(tmp_path / "d", n=12), tmp_path / "cache")
    all_batches = list(data.loader(epoch=3, first_batch=0))
    later = list(data.loader(epoch=3, first_batch=2))
    assert len(all_batches) == data.batches_per_epoch == 5
    for (m1, a1), (m2, a2) in zip(all_batches[2:], later, strict=True):
        assert torch.equal(m1, m2) and torch.equal(a1, a2)
    other_epoch = next(data.loader(epoch=4, first_batch=0))
    assert not torch.equal(other_epoch[1], all_batches[0][1])


def test_workers_give_the_same_batches(tmp_path):
    folder = make_folder(tmp_path / "d", n=12)
    serial = list(VocoderData(small_cfg(), folder, tmp_path / "cache").loader(1, 0))
    parallel = list(VocoderData(small_cfg(num_workers=2), folder, tmp_path / "cache").loader(1, 0))
    assert len(serial) == len(parallel) == 5
    for (m1, a1), (m2, a2) in zip(serial, parallel):
        assert torch.equal(m1, m2) and torch.equal(a1, a2)


def test_short_clips_are_padded_with_silence(tmp_path):
    cfg = small_cfg()
    cfg.training.segment_size = 8192
    data = VocoderData(cfg, make_folder(tmp_path / "d", n=12, seconds=0.2), tmp_path / "cache")
    mel, audio = next(data.loader(0, 0))
    frames = int(0.2 * 22050) // 256
    assert audio.shape == (2, 8192)
    assert audio[:, frames * 256 :].abs().max() == 0
    assert mel[:, :, frames:].max() == pytest.approx(np.log(1e-5))


def test_cache_is_reused_and_refreshed_when_a_file_changes(tmp_path, caplog):
    folder = make_folder(tmp_path / "d", n=12)
    cache = tmp_path / "cache"
    VocoderData(small_cfg(), folder, cache)
    caplog.clear()
    with caplog.at_level("INFO", logger="trainer"):
        VocoderData(small_cfg(), folder, cache)
    assert "preprocessing" not in caplog.text
    sf.write(folder / "clip03.wav", tone(1.5, 22050, 999), 22050)
    with caplog.at_level("INFO", logger="trainer"):
        data = VocoderData(small_cfg(), folder, cache)
    assert "preprocessing 1 of 12" in caplog.text
    assert data.cache.index["clip03"]["samples"] == int(1.5 * 22050)


def test_stereo_and_other_rates_are_downmixed_and_resampled(tmp_path, caplog):
    folder = tmp_path / "d"
    make_folder(folder, n=11, sr=22050)
    sf.write(folder / "stereo44k.flac", tone(1.0, 44100, channels=2), 44100)
    with caplog.at_level("INFO", logger="trainer"):
        data = VocoderData(small_cfg(), folder, tmp_path / "cache")
    assert "2 channels downmixed to mono" in caplog.text
    assert "resampled 44100 -> 22050 Hz" in caplog.text
    assert data.cache.index["stereo44k"]["samples"] == 22050
    assert max(abs(float(np.max(data.cache.audio(u.id)))) for u in data.train) <= 0.95 + 1e-6


@pytest.mark.parametrize("problem,content,message", [
    ("corrupt", b"RIFF\x00\x00\x00\x00WAVEjunkjunk", "cannot read audio file"),
    ("empty", None, "is empty"),
    ("nan", "nan", "NaN or infinite"),
    ("short", "short", "too short"),
])
def test_bad_audio_is_reported_with_its_file(tmp_path, problem, content, message):
    folder = make_folder(tmp_path / "d", n=12)
    bad = folder / f"bad_{problem}.wav"
    if problem == "empty":
        sf.write(bad, np.zeros(0), 22050)
    elif problem == "nan":
        y = tone(1.0, 22050)
        y[100] = np.nan
        sf.write(bad, y, 22050, subtype="FLOAT")
    elif problem == "short":
        sf.write(bad, tone(0.01, 22050), 22050)
    else:
        bad.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        VocoderData(small_cfg(), folder, tmp_path / "cache")
    assert str(bad) in str(info.value)


def test_too_few_files_for_a_batch(tmp_path):
    cfg = small_cfg(batch_size=16)
    with pytest.raises(UserError, match="fewer than training.batch_size"):
        VocoderData(cfg, make_folder(tmp_path / "d", n=12), tmp_path / "cache")


def test_fine_tuning_mels_are_used_and_checked(tmp_path):
    folder = make_folder(tmp_path / "d", n=12)
    mels = tmp_path / "mels"
    mels.mkdir()
    frames = 22050 // 256
    for i in range(12):
        np.save(mels / f"clip{i:02d}.npy", np.full((80, frames), float(i), np.float32))
    cfg = small_cfg()
    cfg.data.mels_dir = str(mels)
    data = VocoderData(cfg, folder, tmp_path / "cache")
    mel, audio = data.validation_item(data.val[0])
    assert mel.shape == (1, 80, frames) and float(mel[0, 0, 0]) == int(data.val[0].id[-2:])
    np.save(mels / "clip05.npy", np.zeros((80, frames - 5), np.float32))
    with pytest.raises(UserError, match="clip05.npy has 81 frames .* misaligned"):
        VocoderData(cfg, folder, tmp_path / "cache")
    (mels / "clip05.npy").unlink()
    with pytest.raises(UserError, match="fine-tuning mel missing for 'clip05'"):
        VocoderData(cfg, folder, tmp_path / "cache")


def test_ljspeech_mini_preprocesses(ljspeech_mini, tmp_path):
    cfg = load_config("hifigan_v1")
    data = VocoderData(cfg, ljspeech_mini, tmp_path / "cache")
    assert len(data.train) + len(data.val) == 76 and len(data.val) == 7
    assert data.cache.index[data.train[0].id]["samples"] > 22050  # resampled from 44.1 kHz, seconds long
