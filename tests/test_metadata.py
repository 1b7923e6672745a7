"""metadata.csv as other tools write it: accepted when its ids name wavs/<id>.wav, refused in one line otherwise."""

import codecs
import errno
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings, strategies as st

from trainer.data import MAX_LINE_BYTES, discover
from trainer.errors import UserError

IDS = ("LJ001-0001", "LJ001-0002", "LJ001-0003")


def ljspeech(root: Path, ids=IDS) -> Path:
    (root / "wavs").mkdir(parents=True)
    for uid in ids:
        sf.write(root / "wavs" / f"{uid}.wav", np.zeros(64, np.float32), 22050)
    return root


def with_metadata(root: Path, content: bytes | str, ids=IDS) -> Path:
    ljspeech(root, ids)
    path = root / "metadata.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def found(root: Path) -> list[tuple[str, Path]]:
    return [(u.id, u.audio_path) for u in discover(root)]


def expected(root: Path, ids=IDS) -> list[tuple[str, Path]]:
    return [(uid, root / "wavs" / f"{uid}.wav") for uid in ids]


def refusal(root: Path) -> str:
    with pytest.raises(UserError) as info:
        discover(root)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    return message


def test_utf8_byte_order_mark_is_dropped(tmp_path):
    root = with_metadata(tmp_path, codecs.BOM_UTF8 + b"LJ001-0001|a|a\nLJ001-0002|b|b\nLJ001-0003|c|c\n")
    assert found(root) == expected(root)


@pytest.mark.parametrize("end", ["\r\n", "\r", "\n"])
def test_line_ends_blank_lines_and_trailing_whitespace(tmp_path, end):
    lines = ["LJ001-0001 \t|a|a", "", "   ", "LJ001-0002|b|b", "LJ001-0003  |c|c", ""]
    root = with_metadata(tmp_path, end.join(lines))
    assert found(root) == expected(root)


def test_mixed_line_ends_count_lines_like_an_editor(tmp_path):
    root = with_metadata(tmp_path, "LJ001-0001|a\r\nLJ001-0002|b\rLJ001-0003|c\nLJ009-9999|d\n")
    assert "metadata.csv:4: entry 'LJ009-9999' has no audio file" in refusal(root)


def test_quoted_ids_lose_their_quotes_and_texts_keep_unpaired_quotes(tmp_path):
    root = with_metadata(tmp_path, '"LJ001-0001"|He said "no|He said "no\n" LJ001-0002 "|b|b\nLJ001-0003|"c|"c\n')
    assert found(root) == expected(root)


@pytest.mark.parametrize("separator,name", [(",", "comma"), ("\t", "tab")])
def test_spreadsheet_separators_are_read_when_no_line_has_a_bar(tmp_path, caplog, separator, name):
    text = "".join(f"{uid}{separator}Printing, in the only sense{separator}Printing\n" for uid in IDS)
    root = with_metadata(tmp_path, text)
    with caplog.at_level("INFO", logger="trainer"):
        assert found(root) == expected(root)
    assert f"read as {name}-separated" in caplog.text


def test_comma_separated_ids_that_name_no_wav_say_how_the_file_was_read(tmp_path):
    root = with_metadata(tmp_path, "LJ001-0001,a\nLJ009-9999,b\n")
    message = refusal(root)
    assert "metadata.csv:2: entry 'LJ009-9999' has no audio file" in message
    assert "read as comma-separated" in message


def test_excel_unicode_text_is_utf16_with_tabs_and_crlf(tmp_path):
    text = "".join(f"{uid}\tcafé «{i}»\r\n" for i, uid in enumerate(IDS))
    root = with_metadata(tmp_path, codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert found(root) == expected(root)


def test_big_endian_utf16_is_read(tmp_path):
    root = with_metadata(tmp_path, codecs.BOM_UTF16_BE + "\n".join(f"{uid}|t" for uid in IDS).encode("utf-16-be"))
    assert found(root) == expected(root)


def test_lines_that_are_only_an_existing_id_are_accepted(tmp_path):
    root = with_metadata(tmp_path, "LJ001-0001\nLJ001-0002\nLJ001-0003\n")
    assert found(root) == expected(root)


@pytest.mark.parametrize("content,line", [
    ("LJ001-0001 Printing in the only sense\n", 1),
    ("LJ001-0001|a\nLJ001-0002;b\n", 2),
    ("LJ001-0001;" + "x" * 5000 + "\n", 1),
])
def test_a_line_without_the_separator_asks_for_it(tmp_path, content, line):
    message = refusal(with_metadata(tmp_path, content))
    assert f"metadata.csv:{line}: expected 'id|text' (LJSpeech's '|' separator); found 'LJ001-000" in message
    assert message.endswith("fix the separator")


def test_a_tab_file_names_tab_as_the_expected_separator(tmp_path):
    message = refusal(with_metadata(tmp_path, "LJ001-0001\ta\nLJ001-0002\tb\nLJ001-0003 c\n"))
    assert "metadata.csv:3: expected 'id<tab>text'" in message


@pytest.mark.parametrize("uid,problem", [
    ("../outside", "is a path"),
    ("wavs/../../outside", "is a path"),
    ("sub\\LJ001-0001", "is a path"),
    ("\x01LJ001-0001", "control or line-break characters"),
    ("LJ\u2028001", "control or line-break characters"),
    ("é" * 101, "is 202 bytes long, more than 200"),
    ("", "is empty"),
])
def test_ids_that_are_not_plain_file_names_are_refused_with_their_line(tmp_path, uid, problem):
    root = with_metadata(tmp_path, f"LJ001-0001|a\n{uid}|b|b\n")
    sf.write(tmp_path / "outside.wav", np.zeros(64, np.float32), 22050)
    message = refusal(root)
    assert "metadata.csv:2: id " in message and problem in message


def test_an_error_while_checking_a_wav_names_the_line(tmp_path, monkeypatch):
    root = with_metadata(tmp_path, "LJ001-0001|a\nLJ001-0002|b\n")
    real_is_file = Path.is_file

    def failing_disk(path):
        if path.name == "LJ001-0002.wav":
            raise OSError(errno.EIO, "Input/output error")
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", failing_disk)
    message = refusal(root)
    assert "metadata.csv:2: cannot check" in message and message.endswith("LJ001-0002.wav: Input/output error")


def test_latin1_metadata_is_refused_with_its_byte_and_line(tmp_path):
    root = with_metadata(tmp_path, "LJ001-0001|cafe|cafe\nLJ001-0002|café|café\n".encode("latin-1"))
    assert "metadata.csv is not UTF-8 text (byte 0xe9 at line 2): save it as UTF-8" in refusal(root)


def test_broken_utf16_is_refused(tmp_path):
    root = with_metadata(tmp_path, codecs.BOM_UTF16_LE + "LJ001-0001|a\n".encode("utf-16-le") + b"\x00\xd8a\x00")
    assert "is not valid UTF-16: save it as UTF-8" in refusal(root)


@pytest.mark.parametrize("content,says", [
    ("LJ001-0001|a\n".encode("utf-16-le"), "NUL bytes"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text (byte 0x89 at line 1)"),
    (bytes(range(256)) * 8, "metadata.csv:1: NUL bytes"),
])
def test_binary_files_named_metadata_csv_are_refused(tmp_path, content, says):
    assert says in refusal(with_metadata(tmp_path, content))


def test_a_wav_renamed_metadata_csv_is_refused(tmp_path):
    ljspeech(tmp_path)
    (tmp_path / "metadata.csv").write_bytes((tmp_path / "wavs" / "LJ001-0001.wav").read_bytes())
    assert "metadata.csv" in refusal(tmp_path)


def test_duplicate_ids_name_both_lines(tmp_path):
    root = with_metadata(tmp_path, "LJ001-0001|a\nLJ001-0002|b\n\n\"LJ001-0001\"|again\n")
    assert "metadata.csv: lines 1 and 4 both list 'LJ001-0001'" in refusal(root)


def test_a_huge_line_is_refused_without_being_held_whole(tmp_path):
    huge = b"LJ001-0002|" + b"x" * (20 * MAX_LINE_BYTES)
    root = with_metadata(tmp_path, b"LJ001-0001|a\n\n" + huge + b"\n")
    tracemalloc.start()
    try:
        message = refusal(root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "metadata.csv:3: line longer than 1 MiB" in message
    assert peak < 4 * MAX_LINE_BYTES


def test_metadata_without_a_wavs_folder_says_where_audio_goes(tmp_path):
    (tmp_path / "metadata.csv").write_text("LJ001-0001|a\n")
    assert "wavs is not a folder" in refusal(tmp_path)


def test_metadata_of_blank_lines_lists_no_utterances(tmp_path):
    assert "lists no utterances" in refusal(with_metadata(tmp_path, codecs.BOM_UTF8 + b"\r\n \r\n\t\n"))


# --- any bytes at all: utterances that exist inside wavs/, or one line naming the problem

REAL_IDS = ("LJ001-0001", "clip 2", "café")
# ids that name a file only by leaving wavs/, or that break file names or one-line messages
TRICKY_IDS = ("../outside", "wavs/café", "a\x00b", "LJ\u2028001", "\x85", "a" * 300, "..", "missing", "")
ids = st.one_of(st.sampled_from(REAL_IDS), st.sampled_from(TRICKY_IDS), st.text(max_size=12))
separators = st.sampled_from(("|", ",", "\t", ";", " ", ""))
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@st.composite
def metadata_line(draw, uid: str, separator: str) -> str:
    if draw(st.booleans()):
        uid = f'"{uid}"'
    padding = draw(st.sampled_from(("", " ", "\t ")))
    return separator.join([uid + padding, *draw(st.lists(texts, max_size=2))])


@st.composite
def metadata_files(draw) -> bytes:
    kind = draw(st.sampled_from(("bytes", "real ids", "any ids")))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    if kind == "real ids":
        separator = draw(st.sampled_from(("|", ",", "\t")))
        uids = [*REAL_IDS, *draw(st.lists(st.sampled_from(TRICKY_IDS), max_size=1))]
        lines = [draw(metadata_line(uid, separator)) for uid in draw(st.permutations(uids))]
    else:
        lines = [draw(metadata_line(draw(ids), draw(separators))) for _ in range(draw(st.integers(0, 6)))]
    blanks = draw(st.lists(st.sampled_from(("", "  ", "\t")), max_size=3))
    ends = st.sampled_from(("\n", "\r\n", "\r"))
    text = "".join(line + draw(ends) for line in draw(st.permutations(lines + blanks)))
    encoding = draw(st.sampled_from(("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1")))
    return text.encode(encoding, errors="replace") + draw(st.binary(max_size=3) if draw(st.booleans()) else st.just(b""))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = ljspeech(tmp_path_factory.mktemp("corpus"), REAL_IDS)
    sf.write(root / "outside.wav", np.zeros(64, np.float32), 22050)
    return root


@settings(max_examples=300, deadline=None)
@given(content=metadata_files())
def test_any_metadata_gives_existing_wavs_or_one_line(corpus, content):
    (corpus / "metadata.csv").write_bytes(content)
    try:
        utterances = discover(corpus)
    except UserError as error:
        assert len(str(error).splitlines()) == 1, str(error)
        return
    assert len({u.id for u in utterances}) == len(utterances)
    for utt in utterances:
        assert utt.audio_path.parent == corpus / "wavs" and utt.audio_path.name == f"{utt.id}.wav"
        assert utt.audio_path.is_file()
