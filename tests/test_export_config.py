"""Bad configuration or data makes ``python -m export`` fail early: one clear 'error:' line naming what was
expected and what came (and the file), a non-zero exit, no traceback, nothing written, no checkpoint touched."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import pytest

from export.zoo.ewt import CHECKPOINT, DATA, DEV_FILE, TRAIN_FILE
from runtime.artifact import sha256_bytes

from .conftest import run_cli

WORD_LINE = "1\tThe\tthe\tDET\tDT\t_\t0\troot\t_\t_\n"


def one_error_line(out, status: int) -> str:
    assert out.returncode == status, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    others = [line for line in out.stderr.splitlines() if not line.startswith("error:") and "train, export" not in line]
    assert len(errors) == 1 and not others, out.stderr
    return errors[0]


def ewt_data(folder: Path, train_text: str | None) -> Path:
    """A data folder with the given train split (None: no train file) and the real dev split."""
    folder.mkdir()
    if train_text is not None:
        (folder / TRAIN_FILE).write_bytes(lzma.compress(train_text.encode("utf-8")))
    shutil.copy(DATA / DEV_FILE, folder / DEV_FILE)
    return folder


@pytest.fixture
def checkpoint_untouched():
    before = sha256_bytes(CHECKPOINT.read_bytes())
    yield
    assert sha256_bytes(CHECKPOINT.read_bytes()) == before, "the committed checkpoint was modified"


def test_unknown_model_name(tmp_path):
    line = one_error_line(run_cli("export", "pos-ewtt", "--out", str(tmp_path)), 2)
    assert "unknown model(s) ['pos-ewtt']: expected names from:" in line and "pos-ewt" in line
    assert list(tmp_path.iterdir()) == []


def test_out_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert "--out" in one_error_line(run_cli("export", "lstm-tutorial", "--out", str(f)), 2)


def test_data_for_a_model_that_reads_none(tmp_path):
    line = one_error_line(run_cli("export", "lstm-tutorial", "--out", str(tmp_path), "--data", str(tmp_path)), 2)
    assert "--data: lstm-tutorial read(s) no data files" in line and "pos-ewt, char-shakespeare" in line


@pytest.mark.parametrize("name, missing", [("pos-ewt", TRAIN_FILE), ("char-shakespeare", "input.txt.xz")])
def test_missing_data_file_fails_before_any_work(tmp_path, name, missing):
    data = ewt_data(tmp_path / "data", None)
    out = run_cli("export", name, "--out", str(tmp_path / "out"), "--data", str(data), timeout=120)
    line = one_error_line(out, 1)
    assert f"{data / missing}: missing data file (expected" in line
    assert "train, export" not in out.stderr, "started work before checking the data"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("train_text, words", [
    ("# sent_id = 1\n" + WORD_LINE + "2\tdog  barks\n\n",
     [f"{TRAIN_FILE}: malformed CoNLL-U: line 3: expected 10 tab-separated columns, got 2", "dog  barks"]),
    ("# a comment and no sentence\n\n", [f"{TRAIN_FILE}: expected at least one sentence with words, got no sentences"]),
    ("1\tThe\tthe\t_\t_\t_\t0\troot\t_\t_\n\n", [f"{TRAIN_FILE}: malformed CoNLL-U: sentence 1", "FORM and UPOS"]),
])
def test_malformed_or_empty_training_data(tmp_path, checkpoint_untouched, train_text, words):
    data = ewt_data(tmp_path / "data", train_text)
    out = run_cli("export", "pos-ewt", "--retrain", "--out", str(tmp_path / "out"), "--data", str(data),
                  timeout=120)
    line = one_error_line(out, 1)
    assert line.startswith("error: pos-ewt: not written: ") and str(data) in line
    for w in words:
        assert w in line, line
    assert not (tmp_path / "out" / "pos-ewt").exists() and not list((tmp_path / "out").glob(".*"))


def test_data_that_is_not_xz(tmp_path, checkpoint_untouched):
    data = ewt_data(tmp_path / "data", "")
    (data / TRAIN_FILE).write_bytes(b"plain text, not xz")
    out = run_cli("export", "pos-ewt", "--retrain", "--out", str(tmp_path / "out"), "--data", str(data),
                  timeout=120)
    assert "unreadable: expected UTF-8 CoNLL-U (xz), got LZMAError" in one_error_line(out, 1)
