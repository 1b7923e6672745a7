"""synth, export and checkpoint loading: every bad input is one line naming the problem, and nothing
already on disk is lost."""

import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from trainer.audio import MIN_MEL_FRAMES, OUTPUT_FORMATS, load_mel_npy, write_wav
from trainer.config import load_config
from trainer.errors import UserError
from vocodertui.cli import main

from test_synth import trained  # noqa: F401  (the fixture: a checkpoint trained for 2 steps)

PREVIOUS = b"previous output, to be kept"
DEMO_AUDIO = load_config("demo").audio  # the trained checkpoint's audio settings

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_permissions = pytest.mark.skipif(AS_ROOT, reason="root writes into read-only folders")


def assert_one_line_error(code: int, err: str, problem: str) -> None:
    assert code == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("vocodertui: error: "), err
    assert re.search(problem, err), err


@pytest.fixture
def wav(demo_corpus) -> Path:
    return next((demo_corpus / "wavs").glob("*.wav"))


def save_object_array(path: Path) -> None:
    np.save(path, np.array([[{}] * 10] * 80, dtype=object), allow_pickle=True)


def save_npz_as_npy(path: Path) -> None:
    with open(path, "wb") as f:
        np.savez(f, mel=np.zeros((80, 10), np.float32))


EXPECTED = r"expected a mel of shape \[80, frames\] of floats"

BAD_MELS = {
    "text": (lambda p: np.save(p, np.array([["a"] * 10] * 80)), rf"\(<U1, shape \(80, 10\)\) holds text; {EXPECTED}"),
    "object": (save_object_array, rf"in\.npy \(object dtype\) was refused: it holds Python objects, which need pickle.*; {EXPECTED}"),
    "zero frames": (lambda p: np.save(p, np.zeros((80, 0), np.float32)),
                    rf"shape \(80, 0\)\) is too short: 0 frames, need at least {MIN_MEL_FRAMES}"),
    "one-dimensional": (lambda p: np.save(p, np.zeros(80, np.float32)), rf"shape \(80,\)\) has the wrong shape; {EXPECTED}"),
    "transposed": (lambda p: np.save(p, np.zeros((10, 80), np.float32)), r"wrong shape \(transposed\? save mel\.T\)"),
    "complex": (lambda p: np.save(p, np.zeros((80, 10), np.complex64)), rf"\(complex64, .*holds complex numbers; {EXPECTED}"),
    "bool": (lambda p: np.save(p, np.zeros((80, 10), bool)), rf"\(bool, .*holds booleans; {EXPECTED}"),
    "nan": (lambda p: np.save(p, np.full((80, 10), np.nan, np.float32)), r"\(float32, .*contains NaN or infinite values"),
    "inf": (lambda p: np.save(p, np.full((80, 10), -np.inf)), r"\(float64, .*contains NaN or infinite values"),
    "beyond float32": (lambda p: np.save(p, np.full((80, 10), 1e300)), r"\(float64, .*beyond float32's range"),
    "npz archive": (save_npz_as_npy, r"in\.npy is not a readable \.npy file"),
}


@pytest.mark.parametrize("save,problem", BAD_MELS.values(), ids=BAD_MELS.keys())
def test_bad_mel_is_one_line_and_keeps_the_previous_output(trained, tmp_path, capsys, save, problem):
    save(tmp_path / "in.npy")
    out = tmp_path / "o.wav"
    out.write_bytes(PREVIOUS)
    code = main(["synth", "--checkpoint", str(trained), "--input", str(tmp_path / "in.npy"), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, problem)
    assert out.read_bytes() == PREVIOUS and sorted(tmp_path.iterdir()) == [tmp_path / "in.npy", out]


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float16, np.float64])
def test_integer_and_other_float_mels_vocode_as_their_float32_values(trained, tmp_path, dtype):
    outputs = {}
    for name, array_dtype in (("converted", dtype), ("float32", np.float32)):
        np.save(tmp_path / f"{name}.npy", np.full((80, 3), 2, dtype=array_dtype))
        outputs[name] = tmp_path / f"{name}.flac"
        assert main(["synth", "--checkpoint", str(trained), "--input", str(tmp_path / f"{name}.npy"),
                     "--out", str(outputs[name])]) == 0
    np.testing.assert_array_equal(sf.read(outputs["converted"])[0], sf.read(outputs["float32"])[0])


def write_tiny_wav(path: Path) -> Path:
    sf.write(path, np.zeros(100, np.float32), 22050)
    return path


def make_readonly_folder(tmp: Path) -> Path:
    folder = tmp / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


# Each gives (--checkpoint, --input, --out) from (tmp folder, trained checkpoint, a wav in a tmp copy).
# The --out cases name a checkpoint that does not exist: --out must be refused before the model loads.
MISSING = "missing.pt"
BAD_PATHS = {
    "out is a folder": (lambda t, c, w: (t / MISSING, w, t), r"--out .* is a folder; name a file in it, e.g. .*out\.wav"),
    "out has no extension": (lambda t, c, w: (t / MISSING, w, t / "o"), r"o has no extension; .*: \.wav, \.flac"),
    "out has an unknown extension": (lambda t, c, w: (t / MISSING, w, t / "o.xyz"),
                                     r"o\.xyz has extension '\.xyz'; .*: \.wav, \.flac"),
    "out under a file": (lambda t, c, w: (t / MISSING, w, w / "sub" / "o.wav"), r"in\.wav is a file, not a folder"),
    "out is the input": (lambda t, c, w: (t / MISSING, w, w), r"--out .* is the --input file"),
    "out is the input, spelled otherwise": (lambda t, c, w: (t / MISSING, w, t / "." / ".." / t.name / "in.wav"),
                                            r"--out .* is the --input file"),
    "out links to the input": (lambda t, c, w: (t / MISSING, w, linked(t / "link.wav", w)), r"--out .* is the --input file"),
    "input is a folder": (lambda t, c, w: (c, t, t / "o.wav"), r"--input .* is a folder"),
    "input too short": (lambda t, c, w: (c, write_tiny_wav(t / "tiny.wav"), t / "o.wav"),
                        rf"tiny\.wav is too short: 100 samples, need at least {DEMO_AUDIO.n_fft}"),
    "checkpoint is a folder": (lambda t, c, w: (c.parent, w, t / "o.wav"), r"checkpoint .* is a folder; pass a checkpoint file"),
    "checkpoint truncated": (lambda t, c, w: (truncated(t / "half.pt", c), w, t / "o.wav"),
                             r"checkpoint .*half\.pt is corrupt or truncated \("),
}


def linked(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def truncated(path: Path, checkpoint: Path) -> Path:
    data = checkpoint.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("make,problem", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_bad_synth_path_is_one_line_and_keeps_the_input(trained, wav, tmp_path, capsys, make, problem):
    original = wav.read_bytes()
    copy = tmp_path / "in.wav"
    copy.write_bytes(original)
    checkpoint, input_path, out = make(tmp_path, trained, copy)
    code = main(["synth", "--checkpoint", str(checkpoint), "--input", str(input_path), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, problem)
    assert copy.read_bytes() == original
    assert not (tmp_path / "o.wav").exists()


@needs_permissions
def test_out_in_a_readonly_folder_is_one_line(wav, tmp_path, capsys):
    out = make_readonly_folder(tmp_path) / "o.wav"
    code = main(["synth", "--checkpoint", str(tmp_path / MISSING), "--input", str(wav), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, r"cannot write --out .*: Permission denied")


def test_synth_replaces_an_existing_output_whole(trained, wav, tmp_path):
    out = tmp_path / "o.wav"
    out.write_bytes(PREVIOUS)
    assert main(["synth", "--checkpoint", str(trained), "--input", str(wav), "--out", str(out)]) == 0
    assert sf.info(str(out)).frames > 0 and sorted(tmp_path.iterdir()) == [out]


@pytest.mark.skipif(".mp3" not in OUTPUT_FORMATS, reason="this libsndfile cannot write MP3")
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_other(tmp_path):
    out = tmp_path / "o.mp3"
    out.write_bytes(PREVIOUS)
    with pytest.raises(UserError, match=r"cannot write audio file .*o\.mp3: .*sample rates"):
        write_wav(out, np.zeros(256, np.float32), 1234)  # MP3 has no 1234 Hz: libsndfile fails after creating the file
    assert out.read_bytes() == PREVIOUS and sorted(tmp_path.iterdir()) == [out]


BAD_EXPORTS = {
    "out is a folder": (lambda t: t, r"--out .* is a folder; name a file in it, e.g. .*g_00000000"),
    "out under a file": (lambda t: write_tiny_wav(t / "f.wav") / "g_00000002", r"f\.wav is a file, not a folder"),
    "out exists": (lambda t: t / "o.wav", r"o\.wav exists; remove it or choose another --out"),
}


@pytest.mark.parametrize("make,problem", BAD_EXPORTS.values(), ids=BAD_EXPORTS.keys())
def test_bad_export_out_is_one_line_and_writes_nothing(tmp_path, capsys, make, problem):
    (tmp_path / "o.wav").write_bytes(PREVIOUS)
    out = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code = main(["export", "--checkpoint", str(tmp_path / MISSING), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, problem)
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "o.wav").read_bytes() == PREVIOUS


@needs_permissions
def test_export_into_a_readonly_folder_is_one_line(tmp_path, capsys):
    out = make_readonly_folder(tmp_path) / "g_00000002"
    code = main(["export", "--checkpoint", str(tmp_path / MISSING), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, r"cannot write --out .*: Permission denied")


def test_export_whose_config_cannot_be_written_leaves_no_generator(trained, tmp_path, capsys, monkeypatch):
    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("trainer.export.write_text_atomic", disk_full)
    code = main(["export", "--checkpoint", str(trained), "--out", str(tmp_path / "g_00000002")])
    assert_one_line_error(code, capsys.readouterr().err, r"cannot write .*config\.json: No space left on device; nothing was exported")
    assert list(tmp_path.iterdir()) == []


class RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class PlainObject:
    pass


@pytest.mark.parametrize("payload,named", [
    (RunsCodeWhenUnpickled, r"\w+\.system"),
    (lambda marker: PlainObject(), r"\S*PlainObject"),
])
def test_a_checkpoint_holding_python_objects_is_refused_without_running_them(tmp_path, capsys, wav, payload, named):
    marker = tmp_path / "payload-ran"
    torch.save({"generator": payload(marker)}, tmp_path / "evil.pt")
    code = main(["synth", "--checkpoint", str(tmp_path / "evil.pt"), "--input", str(wav), "--out", str(tmp_path / "o.wav")])
    assert_one_line_error(code, capsys.readouterr().err,
                          rf"checkpoint .*evil\.pt was refused: it holds Python objects other than tensors \({named}\), "
                          r"which could run code")
    assert not marker.exists()


NUM_MELS = 2  # small, so that random shapes often fit and reach the checks past the shape
mel_like_shapes = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    st.tuples(st.just(NUM_MELS), st.integers(0, 4)),
    st.tuples(st.just(1), st.just(NUM_MELS), st.integers(0, 4)),
)
any_dtype = st.one_of(
    hnp.boolean_dtypes(), hnp.integer_dtypes(endianness="?"), hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?", sizes=(16, 32, 64)), hnp.complex_number_dtypes(endianness="?"),
    hnp.unicode_string_dtypes(), hnp.byte_string_dtypes(), hnp.datetime64_dtypes(), hnp.timedelta64_dtypes(),
    st.just(np.dtype([("a", "<f4"), ("b", "<i2")])), st.just(np.dtype(object)),
)
any_array = any_dtype.flatmap(  # objects that pickle: the file must be written before it can be refused
    lambda dtype: hnp.arrays(dtype, mel_like_shapes, elements=st.integers() if dtype.kind == "O" else None))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=any_array)
def test_any_saved_array_is_a_usable_mel_or_one_line(tmp_path, array):
    path = tmp_path / "in.npy"
    np.save(path, array, allow_pickle=True)
    try:
        mel = load_mel_npy(path, NUM_MELS)
    except UserError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert mel.dtype == np.float32 and mel.ndim == 2 and mel.shape[0] == NUM_MELS and mel.shape[1] >= 1
        assert np.isfinite(mel).all()


# --- batch synthesis: a bad file fails alone, a bad command before anything is written ------------

def good_and_bad_folder(folder: Path, wav: Path) -> None:
    folder.mkdir()
    (folder / "good.wav").write_bytes(wav.read_bytes())
    np.save(folder / "half.npy", np.full((80, 20), -4, np.float16))  # float16: fine, converted
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    np.save(folder / "bins.npy", np.zeros((64, 20), np.float32))
    np.save(folder / "flat.npy", np.zeros(80, np.float32))
    np.save(folder / "transposed.npy", np.zeros((20, 80), np.float32))
    np.save(folder / "nan.npy", np.full((80, 20), np.nan, np.float32))
    write_tiny_wav(folder / "tiny.wav")


def test_a_folder_with_bad_files_writes_the_good_ones_and_lists_the_rest(trained, wav, tmp_path, capsys):
    good_and_bad_folder(tmp_path / "in", wav)
    code = main(["synth", "--checkpoint", str(trained), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.wav", "half.wav"]  # no half-written file
    assert out.startswith("wrote 2 files (")
    listed = err[err.index("vocodertui: 6 files failed (the others were written):\n"):].splitlines()[1:]
    expected = {"bins.npy": r"shape \(64, 20\)\) has the wrong shape; expected a mel of shape \[80, frames\]",
                "flat.npy": r"shape \(80,\)\) has the wrong shape",
                "transposed.npy": r"wrong shape \(transposed\? save mel\.T\)",
                "nan.npy": r"contains NaN or infinite values",
                "corrupt.wav": r"cannot read audio file .*corrupt\.wav: ",
                "tiny.wav": rf"tiny\.wav is too short: 100 samples, need at least {DEMO_AUDIO.n_fft}"}
    assert len(listed) == len(expected)
    for name, reason in expected.items():  # each line: the file, then why
        line = next(line for line in listed if line.startswith(f"  {tmp_path / 'in' / name}"))
        assert re.search(reason, line), line


def test_a_file_that_cannot_be_written_fails_alone(trained, wav, tmp_path, capsys):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.wav").write_bytes(wav.read_bytes())
    (tmp_path / "in" / "sub" / "b.wav").write_bytes(wav.read_bytes())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_bytes(PREVIOUS)  # a file where the output folder sub/ would go
    code = main(["synth", "--checkpoint", str(trained), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "vocodertui: 1 file failed (the others were written):\n" in err
    assert re.search(rf"  {re.escape(str(tmp_path / 'in' / 'sub' / 'b.wav'))}: cannot create folder .*sub: ", err)
    assert (tmp_path / "out" / "a.wav").is_file() and (tmp_path / "out" / "sub").read_bytes() == PREVIOUS


def in_folder(t: Path, w: Path) -> Path:
    return w.parent


# Each gives (inputs, --out) from (tmp folder, a wav in it); the checkpoint does not exist: a bad
# command is refused before the model loads, and nothing is written.
BAD_BATCHES = {
    "out is a file": (lambda t, w: ([in_folder(t, w)], w), r"--out .*in\.wav is a file: with a folder"),
    "out named like a file": (lambda t, w: ([in_folder(t, w)], t / "o.wav"),
                              r"--input .* is a folder, so --out names a folder for the outputs, not a file like .*o\.wav"),
    "several inputs, out named like a file": (lambda t, w: ([w, mel(t)], t / "o.flac"), r"2 inputs are given, so --out names a folder"),
    "a missing input": (lambda t, w: ([w, t / "gone.npy"], t / "out"), r"input not found: .*gone\.npy"),
    "two inputs, one output": (lambda t, w: ([w, mel(t, "in.npy")], t / "out"),
                               r"in\.wav and .*in\.npy would both be written to .*in\.wav: synthesise one of them into another --out"),
    "outputs would replace the inputs": (lambda t, w: ([in_folder(t, w)], t),
                                         r"the output of .*in\.wav would replace the input .*in\.wav: choose an --out outside"),
    "an empty folder": (lambda t, w: ([empty(t)], t / "out"), r"no \.npy mel or audio file \(\.wav, \.flac, \.ogg, \.mp3\) in .*empty"),
    "out under a file": (lambda t, w: ([w, mel(t)], w / "out"), r"in\.wav is a file, not a folder"),
}


def mel(tmp: Path, name: str = "m.npy") -> Path:
    np.save(tmp / name, np.zeros((80, 5), np.float32))
    return tmp / name


def empty(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


@pytest.mark.parametrize("make,problem", BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
def test_a_bad_batch_command_is_one_line_and_writes_nothing(wav, tmp_path, capsys, make, problem):
    copy = tmp_path / "in.wav"
    copy.write_bytes(wav.read_bytes())
    inputs, out = make(tmp_path, copy)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["synth", "--checkpoint", str(tmp_path / MISSING), "--input", *map(str, inputs), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, problem)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_output_folder_that_cannot_be_written_is_one_line(wav, tmp_path, capsys, monkeypatch):
    def denied(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("trainer.synth.tempfile.TemporaryFile", denied)  # as a read-only folder does, also for root
    code = main(["synth", "--checkpoint", str(tmp_path / MISSING), "--input", str(wav.parent), "--out", str(tmp_path / "out")])
    assert_one_line_error(code, capsys.readouterr().err,
                          rf"cannot write --out .*out: Permission denied in {re.escape(str(tmp_path))}; choose another folder")
    assert not (tmp_path / "out").exists()


@needs_permissions
def test_a_readonly_output_folder_is_one_line(wav, tmp_path, capsys):
    out = make_readonly_folder(tmp_path) / "out"
    code = main(["synth", "--checkpoint", str(tmp_path / MISSING), "--input", str(wav.parent), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, r"cannot write --out .*: Permission denied")


def test_batch_seconds_must_be_positive(wav, tmp_path, capsys):
    code = main(["synth", "--checkpoint", "c.pt", "--input", str(wav.parent), "--out", str(tmp_path), "--batch-seconds", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--batch-seconds: must be above 0, got 0" in err
