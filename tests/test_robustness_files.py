"""Outputs never land outside --out or over an input, and links and special files cannot hang or widen a scan
(issue 23, items 1, 2 and 3).

Invariants:
- every output of ``tag ... --out DIR`` resolves inside DIR, or the command is refused before any work;
- ``--out`` equal to an input folder is refused; ``--out`` inside an input folder is left out of the scan;
- folder and glob scans follow no symbolic link (each skipped link is said in one ``note:`` line); a FIFO named
  as an input is refused, never read;
- an ORT-format load with no recorded embedding rows for an integer input is refused (ids could wrap silently).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

import runtime

from .conftest import ARTIFACTS, copy_artifact, run_cli

POS = str(ARTIFACTS / "pos-tutorial")


def _tree(tmp_path):
    """in/sub1/a.txt, in/sub2/b.txt, and an unrelated file beside in/ that must never be touched."""
    for rel in ("in/sub1/a.txt", "in/sub2/b.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("The dog ate the apple\n")
    (tmp_path / "X.txt").write_text("not yours\n")
    return tmp_path / "in"


def _tag(*args):
    return run_cli("runtime", "tag", POS, *args)


def test_a_dotdot_after_a_wildcard_is_refused_before_any_work(tmp_path):
    src = _tree(tmp_path)
    out = _tag(str(src / "sub*" / ".." / ".." / "*.txt"), "--out", str(src / "o"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "'..' after a wildcard" in out.stderr, out.stderr
    assert (tmp_path / "X.txt").read_text() == "not yours\n" and not (src / "o").exists()


def test_out_equal_to_an_input_folder_is_refused_and_inside_it_is_not_rescanned(tmp_path):
    src = _tree(tmp_path)
    out = _tag(str(src), "--out", str(src))
    assert out.returncode == 1 and "is the input folder" in out.stderr, out.stderr
    assert (src / "sub1" / "a.txt").read_text() == "The dog ate the apple\n"
    for run in range(2):  # --out inside the input folder: the second run sees the same two inputs
        out = _tag(str(src), "--out", str(src / "tagged"))
        assert out.returncode == 0 and "tagged 2 files" in out.stderr, (run, out.stderr)
    assert sorted(p.relative_to(src / "tagged").as_posix() for p in (src / "tagged").rglob("*") if p.is_file()) == \
        ["sub1/a.txt", "sub2/b.txt"]


def test_links_are_not_followed_and_are_reported(tmp_path):
    src = _tree(tmp_path)
    os.symlink(".", src / "loop1")
    os.symlink("..", src / "sub1" / "loop2")
    os.symlink(tmp_path / "X.txt", src / "outside.txt")
    os.symlink(src / "missing", src / "dangling.txt")
    out = _tag(str(src / "**" / "*.txt"), "--out", str(tmp_path / "o"))
    assert out.returncode == 0 and "tagged 2 files" in out.stderr, out.stderr
    note = [line for line in out.stderr.splitlines() if line.startswith("note: ")]
    assert len(note) == 1 and "skipped 4 symbolic link(s)" in note[0], out.stderr
    out = _tag(str(src), "--out", str(tmp_path / "p"))
    assert out.returncode == 0 and "tagged 2 files" in out.stderr and "skipped 4 symbolic link(s)" in out.stderr


def test_a_fifo_named_as_an_input_is_refused_not_read(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    out = _tag(str(fifo), "--out", str(tmp_path / "o"))
    assert out.returncode == 1 and "not a regular file" in out.stderr, out.stderr


@pytest.mark.parametrize("drop", ["embedding_rows", "ort"])
def test_an_ort_load_without_recorded_rows_is_refused(tmp_path, drop):
    folder = copy_artifact(tmp_path, "pos-tutorial")
    manifest = json.loads((folder / "manifest.json").read_text())
    if drop == "ort":
        del manifest["export"]["ort"]
    else:
        del manifest["export"]["ort"]["embedding_rows"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtime.ArtifactError, match="embedding rows"):
        runtime.load(folder, format="ort")
    assert runtime.load(folder).tag(["the", "dog"])  # the .onnx checks its ids itself


def test_write_failures_name_the_output_not_the_input(tmp_path, monkeypatch, capsys):
    """A full disk and a folder where the output goes are the output's failures: named so (issue 23, item 5)."""
    from runtime import files
    from runtime.__main__ import main as runtime_main

    src = _tree(tmp_path)
    real_fdopen = os.fdopen

    def full(fd, mode):  # every temporary output writes to /dev/full: ENOSPC, as on a full disk
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), mode)

    monkeypatch.setattr(files.os, "fdopen", full)
    assert runtime_main(["tag", POS, str(src), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'o' / 'sub1' / 'a.txt'}: cannot write the output: No space left on device" in err, err
    assert str(src / "sub1" / "a.txt") + ":" not in err, err
    monkeypatch.undo()
    (tmp_path / "p" / "sub1" / "a.txt").mkdir(parents=True)  # a folder where the output file goes
    assert runtime_main(["tag", POS, str(src), "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'p' / 'sub1' / 'a.txt'}: cannot write the output: Is a directory" in err, err


@pytest.mark.parametrize("where", ["a file", "unwritable"])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, where):
    src = _tree(tmp_path)
    out_dir = tmp_path / "file.txt" if where == "a file" else "/proc/seqedge-out"
    if where == "a file":
        out_dir.write_text("x")
    out = _tag(str(src), "--out", str(out_dir))
    expected = "expected a folder, got a file" if where == "a file" else "cannot write there"
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr
    assert "[1/" not in out.stderr  # no file was started


def test_a_sentence_over_the_limit_is_named_at_its_file_line_with_the_way_to_raise_it(tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("the dog\nthe cat\n" + "the dog ate the big apple\n" + "a b\n")
    out = _tag(str(text), "--out", str(tmp_path / "o"), "--max-words", "5")
    assert out.returncode == 1, out.stderr
    assert f"{text}: line 3: a sentence of 6 words, more than max_words_per_run (5" in out.stderr, out.stderr
    assert "--max-words N" in out.stderr
    out = _tag(str(text), "--out", str(tmp_path / "p"), "--max-words", "6")
    assert out.returncode == 0 and (tmp_path / "p" / "in.txt").read_text().count("\n") == 4, out.stderr


def test_valid_conllu_with_many_blank_or_comment_lines_or_a_bom_round_trips(tmp_path):
    import io

    from runtime import corpus

    word = "1\tdog\t_\t_\t_\t_\t_\t_\t_\t_\n"
    cases = {"10,001 blank lines": word + "\n" * 10_001 + word + "\n",
             "12,000 comment lines": "# c\n" * 12_000 + word + "\n",
             "a byte-order mark": "\ufeff# sent_id = 1\n" + word + "\n"}
    tagger = runtime.load(ARTIFACTS / "pos-tutorial")
    for case, text in cases.items():
        out = io.BytesIO()
        corpus.tag_file(tagger, io.BytesIO(text.encode()), out, "conllu", case)
        got, want = out.getvalue().decode().splitlines(True), text.splitlines(True)
        assert len(got) == len(want), case
        for g, w in zip(got, want):  # byte for byte but column 4 (UPOS) of word lines, the mark included
            if w.startswith("1\t"):
                g, w = g.split("\t"), w.split("\t")
                assert g[3] != "_" and g[:3] + g[4:] == w[:3] + w[4:], case
            else:
                assert g == w, case


def test_temporary_files_of_dead_runs_are_removed_and_never_inputs(tmp_path):
    src = _tree(tmp_path)
    out_dir = tmp_path / "o"
    (out_dir / "sub1").mkdir(parents=True)
    dead = out_dir / "sub1" / ".a.txt.4194305.x1y2.partial"  # above Linux's largest pid (2**22): never running
    live = out_dir / f".b.txt.{os.getpid()}.z3w4.partial"  # this test's own process: running
    dead.write_text("half")
    live.write_text("half")
    out = _tag(str(src), "--out", str(out_dir), "--resume")
    assert out.returncode == 0 and "removed 1 temporary file(s) a killed run left" in out.stderr, out.stderr
    assert not dead.exists() and live.exists()
    out = _tag(str(out_dir), "--out", str(tmp_path / "again"))  # the outputs folder as input: partials are not inputs
    assert out.returncode == 0 and "tagged 2 files" in out.stderr, out.stderr
