"""Tagging files through the CLI and ``runtime.corpus``: lossless CoNLL-U, damaged input, many files into a folder,
and the command line's behaviour on interrupts, closed output and out-of-memory (issue 13 items 2 and 10)."""

from __future__ import annotations

import io
import json
import lzma
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime
from runtime import corpus
from runtime.__main__ import main as runtime_main

from .conftest import ARTIFACTS, ROOT, loaded, run_cli

POS_EWT = ARTIFACTS / "pos-ewt"
DEV = ROOT / "export" / "zoo" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu.xz"
tagger = loaded("pos-ewt")

# Legal but odd CoNLL-U: comments of every form (no space, no '=', '#' alone), a multiword token, empty nodes
# (one before the first word), FEATS with a repeated key, MISC with '=' and '|' in values, CRLF on some lines,
# tabs inside comments, blank lines with spaces, and no final newline.
ODD = (
    "#nospace comment\n"
    "# sent_id = a=b\n"
    "#\n"
    "# text = I don't go.\t(tab in a comment)\r\n"
    "0.1\tpre\t_\t_\t_\t_\t_\t_\t0:root\t_\n"
    "1\tI\tI\tPRON\tPRP\tCase=Nom|Case=Acc|Number=Sing\t3\tnsubj\t_\t_\r\n"
    "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No\n"
    "2\tdo\tdo\t_\t_\t_\t3\taux\t_\t_\n"
    "3\tn't\tnot\t_\t_\t_\t0\troot\t_\tUrl=http://x.org/?a=b|Gloss=a|b=c\r\n"
    "3.1\tgo\tgo\t_\t_\t_\t_\t_\t0:root\t_\n"
    "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\tSpaceAfter=No\n"
    " \n"
    "\n"
    "# second sentence, last line without a newline\n"
    "1\tHi\thi\t_\t_\t_\t0\troot\t_\tA=b=c|d"
)


def masked(data: bytes) -> list[bytes]:
    """The file's lines (split at LF only, endings kept) with column 4 of word lines (integer ID) blanked."""
    lines = []
    for line in data.split(b"\n"):
        cols = line.split(b"\t")
        if len(cols) == 10 and cols[0].isdigit():
            cols[3] = b"*"
        lines.append(b"\t".join(cols))
    return lines


def word_tags(data: bytes) -> list[str]:
    return [line.split(b"\t")[3].decode() for line in data.split(b"\n")
            if len(line.split(b"\t")) == 10 and line.split(b"\t")[0].isdigit()]


def tag_cli(*args: str) -> bytes:
    """``python -m runtime tag ARGS``'s standard output as bytes (no newline translation)."""
    proc = subprocess.run(_python_m("runtime", "tag", *args), cwd=ROOT, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def tag_bytes(tagger, data: bytes, fmt: str = "conllu") -> bytes:
    out = io.BytesIO()
    corpus.tag_file(tagger, io.BytesIO(data), out, fmt, "in.conllu")
    return out.getvalue()


def test_conllu_round_trip_keeps_every_byte_but_upos(tagger, tmp_path):
    src = tmp_path / "odd.conllu"
    src.write_bytes(ODD.encode())
    got = tag_cli(str(POS_EWT), str(src), "--format", "conllu")
    assert masked(got) == masked(ODD.encode())
    assert word_tags(got) == tagger.tag_batch([["I", "do", "n't", "."], ["Hi"]])[0] + tagger.tag(["Hi"])
    assert len(got) - len(ODD.encode()) == sum(map(len, word_tags(got))) - sum(map(len, word_tags(ODD.encode())))


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), max_size=12)
_value = st.text(st.characters(blacklist_categories=("Cs", "Z"), blacklist_characters="\t\n\r"), min_size=1,
                 max_size=10)


@st.composite
def conllu_files(draw) -> bytes:
    """Sentences of random words with random comments, multiword tokens, empty nodes, FEATS/MISC with '=' and
    '|', per-line LF or CRLF, blank separator lines, and a final newline or not."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(0, 2))):
            lines.append("#" + draw(_text))
        n = draw(st.integers(1, 6))
        for i in range(1, n + 1):
            if i < n and draw(st.booleans()):
                lines.append(f"{i}-{i + 1}\t{draw(_value)}\t_\t_\t_\t_\t_\t_\t_\t_")
            lines.append("\t".join([str(i), draw(_value), draw(_value), draw(st.sampled_from(["_", "NOUN", "X"])),
                                    "_", draw(_value), str(i - 1), "dep", "_", draw(_value)]))
            if draw(st.booleans()):
                lines.append(f"{i}.1\t{draw(_value)}\t_\t_\t_\t_\t_\t_\t{i}:dep\t_")
        lines.append("")
    ends = [draw(st.sampled_from(["\n", "\r\n"])) for _ in lines]
    text = "".join(line + end for line, end in zip(lines, ends))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text.encode("utf-8")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conllu_files())
def test_any_legal_conllu_comes_back_byte_for_byte_except_upos(tagger, data):
    got = tag_bytes(tagger, data)
    assert masked(got) == masked(data)
    assert set(word_tags(got)) <= set(tagger.tags)


def test_conllu_is_tagged_in_chunks_equal_to_one_batch(tagger):
    """Chunking (CHUNK_BLOCKS sentences per tag_batch) gives the tags the whole file gives in one batch."""
    data = lzma.decompress(DEV.read_bytes())
    blocks = [b for chunk in corpus.chunks(io.BytesIO(data), "conllu", "dev") for b in chunk]
    assert len(blocks) == 2001 and sum(len(b.words) for b in blocks) == 25147
    got = tag_bytes(tagger, data)
    assert word_tags(got) == [t for tags in tagger.tag_batch([b.words for b in blocks]) for t in tags]
    assert masked(got) == masked(data)


@pytest.mark.parametrize("data, where", [
    (b"1\tx\tx\t_\t_\t_\t0\troot\t_\t_\n2\ty\n", "line 2: expected 10 tab-separated columns, got 2"),
    (b"# c\n1x\tx\tx\t_\t_\t_\t0\troot\t_\t_\n", "line 2: ID '1x'"),
    (b"1\t\xff\tx\t_\t_\t_\t0\troot\t_\t_\n", "line 1: not UTF-8"),
])
def test_malformed_conllu_is_one_error_naming_file_and_line(tmp_path, data, where):
    src = tmp_path / "bad.conllu"
    src.write_bytes(data)
    out = run_cli("runtime", "tag", str(POS_EWT), str(src), "--format", "conllu")
    assert out.returncode == 1 and out.stderr.startswith(f"error: {src}: {where}"), out.stderr
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


def test_a_line_longer_than_the_bound_is_refused_before_it_is_held(tmp_path):
    src = tmp_path / "long.txt"
    src.write_bytes(b"ok line\n" + b"x" * (corpus.MAX_LINE_BYTES + 10) + b"\n")
    out = run_cli("runtime", "tag", str(POS_EWT), str(src))
    assert out.returncode == 1 and f"{src}: line 2: longer than" in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", ["tag", "eval", "loss"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_xz_input_is_one_line(tmp_path, command, damage):
    line = b"1\tdog\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n\n" if command == "eval" else b"The dog barked .\n"
    good = lzma.compress(line * 2000)
    src = tmp_path / "in.txt.xz"
    src.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"\xfd7zXZ\x00" + os.urandom(200))
    artifact = "artifacts/char-hello" if command == "loss" else str(POS_EWT)
    out = run_cli("runtime", command, artifact, str(src))
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"error: {src}") and "cannot decompress" in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


def test_eval_with_nothing_to_score_fails(tmp_path):
    src = tmp_path / "untagged.conllu"
    src.write_text("1\tHello\thello\t_\t_\t_\t0\troot\t_\t_\n\n", encoding="utf-8")
    out = run_cli("runtime", "eval", str(POS_EWT), str(src))
    assert out.returncode == 1 and "no gold UPOS to score" in out.stderr and len(out.stderr.splitlines()) == 1
    empty = tmp_path / "empty.conllu"
    empty.write_text("", encoding="utf-8")
    assert run_cli("runtime", "eval", str(POS_EWT), str(empty)).returncode == 1


def test_eval_skips_gold_underscore_and_says_so(tmp_path):
    data = lzma.decompress(DEV.read_bytes()).decode("utf-8")
    sentences = data.split("\n\n")[:40]
    # Blank the gold UPOS of the first word of every other sentence.
    blanked = 0
    for i in range(0, len(sentences), 2):
        lines = sentences[i].split("\n")
        first = next(k for k, line in enumerate(lines) if line.split("\t")[0].isdigit())
        cols = lines[first].split("\t")
        cols[3] = "_"
        lines[first] = "\t".join(cols)
        sentences[i] = "\n".join(lines)
        blanked += 1
    full, part = tmp_path / "full.conllu", tmp_path / "part.conllu"
    full.write_text("\n\n".join(data.split("\n\n")[:40]) + "\n\n", encoding="utf-8")
    part.write_text("\n\n".join(sentences) + "\n\n", encoding="utf-8")
    a = json.loads(run_cli("runtime", "eval", str(POS_EWT), str(full), "--json").stdout.splitlines()[-1])
    out = run_cli("runtime", "eval", str(POS_EWT), str(part), "--json")
    b = json.loads(out.stdout.splitlines()[-1])
    assert b["tokens"] == a["tokens"] - blanked and b["unscored"] == blanked and a["unscored"] == 0
    assert f"not scored: {blanked} words whose gold UPOS is '_'" in out.stdout


def test_out_of_memory_is_one_line(monkeypatch, capsys):
    def exhausted(self, sentences):
        raise MemoryError()
    monkeypatch.setattr(runtime.Tagger, "tag_batch", exhausted)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"The dog barked\n")))
    assert runtime_main(["tag", str(POS_EWT)]) == 1
    assert capsys.readouterr().err == "error: out of memory running 'tag'\n"


def _python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("how", ["SIGINT", "SIGINT, started with SIGINT ignored", "SIGTERM"])
def test_ctrl_c_exits_130_with_one_line(how):
    """A shell without job control (a script's ``cmd &``, a CI runner) starts commands with SIGINT ignored, and
    Python then leaves it ignored: the command went on generating after its SIGINT (issue 23, item 12). The CLI
    sets its own handlers, so SIGINT and SIGTERM stop it however it was started."""
    proc = subprocess.Popen(_python_m("runtime", "generate", "artifacts/char-shakespeare", "-n", "1000000",
                                      "--temperature", "1", "--seed", "1"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_ignore_sigint if "ignored" in how else None)
    assert proc.stdout.read(1)  # generating: the handlers are set before the first character
    proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
    _, err = proc.communicate(timeout=600)  # a hang is the failure; the bound only stops a stuck run
    assert proc.returncode == 130 and err == b"interrupted\n", (how, err)


def test_sigterm_on_the_local_engine_leaves_no_partial_file(tmp_path):
    text = lzma.decompress(DEV.read_bytes()).decode()
    words = [line.split("\t")[1] for line in text.splitlines() if line and line[0].isdigit() and "\t" in line]
    big = tmp_path / "in" / "big.txt"
    big.parent.mkdir()
    big.write_text("\n".join(" ".join(words[i:i + 20]) for i in range(0, len(words), 20)) * 20 + "\n")
    out = tmp_path / "out"
    proc = subprocess.Popen(_python_m("runtime", "tag", str(POS_EWT), str(big), "--out", str(out)), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not list(out.glob(".*.partial")) and proc.poll() is None:  # tagging into the temporary file
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be stopped: make the input bigger"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130 and err.endswith(b"interrupted\n"), err
    assert list(out.iterdir()) == [], list(out.iterdir())  # no .partial, no half output


@pytest.mark.parametrize("command", [["tag", str(POS_EWT), "-"], ["generate", "artifacts/char-hello"],
                                     ["eval", str(POS_EWT), str(DEV)], ["info", "artifacts/char-hello"]])
def test_closed_standard_output_is_an_error(command):
    proc = subprocess.run(["bash", "-c", '"$@" >&-', "bash", *_python_m("runtime", *command)], cwd=ROOT,
                          input=b"The dog barked\n", capture_output=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr == b"error: standard output is closed: nothing could be written\n"


def test_a_reader_that_goes_away_is_one_line_not_a_traceback():
    proc = subprocess.run(["bash", "-c", '"$@" | head -c 10 >/dev/null', "bash",
                           *_python_m("runtime", "generate", "artifacts/char-shakespeare", "-n", "100000",
                                      "--temperature", "1")],
                          cwd=ROOT, capture_output=True, timeout=120)
    assert b"Traceback" not in proc.stderr and b"Exception ignored" not in proc.stderr, proc.stderr
    assert proc.stderr == b"error: standard output closed before everything was written\n"


# ---- raw text: one tokenizer on every route ----------------------------------------------------------------------

RAW = "The dog barked.\nI don't think Mr. Smith's e-mail cost $5.\n\nIt's 5:30 at www.example.com!\n"


def test_raw_text_is_split_into_words_the_same_on_every_route(tagger, tmp_path):
    """``tag`` takes raw text (issue 24 item 7): standard input, a file, --out and --resume give the bytes that
    ``Tagger.tag_text`` gives, line by line. (The Ray engine's raw-text run is in test_ray_engine.py.)"""
    expected = "".join(" ".join(f"{w}/{t}" for w, t in tagger.tag_text(line)) + "\n"
                       for line in RAW.splitlines()).encode()
    assert expected.splitlines()[0] == b"The/DET dog/NOUN barked/VERB ./PUNCT", expected
    assert expected.splitlines()[1].split()[:3] == [b"I/PRON", b"do/AUX", b"n't/PART"], expected
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text(RAW, encoding="utf-8")
    got = {"stdin": subprocess.run(_python_m("runtime", "tag", str(POS_EWT)), input=RAW.encode(), cwd=ROOT,
                                   capture_output=True, timeout=300).stdout,
           "- after an option": subprocess.run(_python_m("runtime", "tag", str(POS_EWT), "--format", "text", "-"),
                                               input=RAW.encode(), cwd=ROOT, capture_output=True, timeout=300).stdout,
           "file": tag_cli(str(POS_EWT), str(src / "a.txt")),
           "file after an option": tag_cli(str(POS_EWT), "--format", "text", str(src / "a.txt"))}
    out = run_cli("runtime", "tag", str(POS_EWT), str(src), "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    got["--out"] = (tmp_path / "out" / "a.txt").read_bytes()
    (src / "b.txt").write_text(RAW, encoding="utf-8")
    out = run_cli("runtime", "tag", str(POS_EWT), str(src), "--out", str(tmp_path / "out"), "--resume")
    assert out.returncode == 0 and "1 complete already" in out.stderr, out.stderr
    got["--resume"] = (tmp_path / "out" / "b.txt").read_bytes()
    for route, data in got.items():
        assert data == expected, f"route {route}: {data!r} != {expected!r}"


def test_pretokenized_splits_on_spaces_only(tmp_path):
    proc = subprocess.run(_python_m("runtime", "tag", str(POS_EWT), "--pretokenized"), input=RAW.encode(), cwd=ROOT,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    words = [[p.rsplit(b"/", 1)[0].decode() for p in line.split()] for line in proc.stdout.splitlines()]
    assert words == [line.split() for line in RAW.splitlines()], words
    out = run_cli("runtime", "tag", str(POS_EWT), "-", "--pretokenized", "--format", "conllu")
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "error: --pretokenized: only with --format text (CoNLL-U is split into words already)"], out.stderr


# ---- many files into a folder (the local engine) ------------------------------------------------------------------

def _corpus(tmp_path):
    """Three text files (one in a subfolder, one xz-compressed) and two CoNLL-U files, from EWT dev."""
    data = lzma.decompress(DEV.read_bytes()).decode("utf-8")
    sentences = data.split("\n\n")[:90]
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    texts = [" ".join(line.split("\t")[1] for line in s.split("\n") if line.split("\t")[0].isdigit())
             for s in sentences]
    (src / "a.txt").write_text("\n".join(texts[:30]) + "\n", encoding="utf-8")
    (src / "sub" / "b.txt").write_text("\n".join(texts[30:60]), encoding="utf-8")
    (src / "c.txt.xz").write_bytes(lzma.compress(("\n".join(texts[60:]) + "\n").encode()))
    conllu = tmp_path / "ud"
    conllu.mkdir()
    (conllu / "x.conllu").write_text("\n\n".join(sentences[:45]) + "\n\n", encoding="utf-8")
    (conllu / "y.conllu").write_bytes(("\n\n".join(sentences[45:]) + "\n\n").replace("\n", "\r\n").encode())
    return src, conllu


def _single(path, fmt):
    return tag_cli(str(POS_EWT), str(path), "--format", fmt)


def test_many_files_into_a_folder_equal_the_single_file_command(tmp_path):
    src, ud = _corpus(tmp_path)
    out_dir = tmp_path / "out"
    out = run_cli("runtime", "tag", str(POS_EWT), str(src), "--out", str(out_dir / "text"))
    assert out.returncode == 0, out.stderr
    assert "tagged 3 files (0 complete already, 0 failed)" in out.stderr.splitlines()[-1]
    for rel in ("a.txt", "sub/b.txt", "c.txt"):
        source = src / rel if rel != "c.txt" else src / "c.txt.xz"
        assert (out_dir / "text" / rel).read_bytes() == _single(source, "text"), rel
    out = run_cli("runtime", "tag", str(POS_EWT), str(ud / "*.conllu"), "--format", "conllu",
                  "--out", str(out_dir / "ud"))
    assert out.returncode == 0, out.stderr
    for name in ("x.conllu", "y.conllu"):
        got = (out_dir / "ud" / name).read_bytes()
        assert got == _single(ud / name, "conllu") and masked(got) == masked((ud / name).read_bytes()), name


def test_resume_skips_complete_outputs_and_a_bad_file_fails_alone(tmp_path):
    src, _ = _corpus(tmp_path)
    (src / "bad.txt").write_bytes(b"fine line\nbad \xff byte\n")
    out_dir = tmp_path / "out"
    out = run_cli("runtime", "tag", str(POS_EWT), str(src), "--out", str(out_dir))
    assert out.returncode == 1
    assert f"error: {src / 'bad.txt'}: line 2: not UTF-8" in out.stderr and "Traceback" not in out.stderr
    assert "tagged 3 files (0 complete already, 1 failed)" in out.stderr
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")) == ["a.txt", "c.txt", "sub",
                                                                                      "sub/b.txt"]
    before = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*.txt")}
    (out_dir / "a.txt").unlink()
    (src / "bad.txt").write_text("now fine\n", encoding="utf-8")
    out = run_cli("runtime", "tag", str(POS_EWT), str(src), "--out", str(out_dir), "--resume")
    assert out.returncode == 0 and "tagged 2 files (2 complete already, 0 failed)" in out.stderr, out.stderr
    assert (out_dir / "a.txt").read_bytes() == _single(src / "a.txt", "text")
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.name != "a.txt")


def test_inputs_that_collide_or_match_nothing_are_refused_before_work(tmp_path):
    src, _ = _corpus(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("x\n", encoding="utf-8")
    out = run_cli("runtime", "tag", str(POS_EWT), str(src / "a.txt"), str(tmp_path / "other" / "a.txt"),
                  "--out", str(tmp_path / "out"))
    assert out.returncode == 1 and "would both be written to" in out.stderr and not (tmp_path / "out").exists()
    out = run_cli("runtime", "tag", str(POS_EWT), str(tmp_path / "none*.txt"), "--out", str(tmp_path / "out"))
    assert out.returncode == 1 and "no files match" in out.stderr
    out = run_cli("runtime", "tag", str(POS_EWT), str(src / "a.txt"), str(src / "sub" / "b.txt"))
    assert out.returncode == 1 and "need --out DIR" in out.stderr
