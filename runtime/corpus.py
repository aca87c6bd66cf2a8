"""Files of sentences for the tagger commands: plain text or CoNLL-U in, the same file tagged out.

A file is read as a sequence of ``Block``s, in chunks of ``CHUNK_BLOCKS``; each chunk is tagged with one
``Tagger.tag_batch`` call and written back before the next is read, so memory does not grow with the file. The
chunks are a function of the file alone, so every engine that tags a file (``python -m runtime tag``, the Ray
engine) gives the same bytes.

- text: one sentence of raw text per line, split into words by ``tokenize.tokenize`` (UD English style:
  ``barked.`` is ``barked`` ``.``, ``don't`` is ``do`` ``n't``); out, ``word/TAG`` separated by spaces, one line
  per input line (an empty line stays empty).
- pretokenized: the same, with the words split on whitespace alone (``--pretokenized``).
- conllu: blocks are sentences (their comment and token lines, and the blank lines after them). Out, every byte
  as read except column 4 (UPOS) of word lines, the lines whose ID is an integer: multiword token ranges
  (``3-4``) and empty nodes (``8.1``) are not tagged. Line endings (LF or CRLF), comments of any form, a missing
  final newline, ``=`` and ``|`` anywhere in FEATS or MISC: all kept. This is why the reader works on lines
  rather than through a CoNLL-U library: a library parses columns into values and serializes them again, which
  is not lossless (the ``conllu`` package drops a MISC value's second ``=`` and a repeated FEATS key).

Bounds: a line longer than ``MAX_LINE_BYTES``, a sentence of more than ``MAX_BLOCK_LINES`` words and a block of
more than ``MAX_BLOCK_CHARS`` characters (comments and blank lines, of which any number is valid, count only
here) are refused (``ValueError`` naming the file and line), as are invalid UTF-8, a malformed token line and a
damaged .xz file. A UTF-8 byte-order mark at the start is read past and written back.
"""

from __future__ import annotations

import lzma
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

from .tokenize import tokenize

FORMATS = ("text", "pretokenized", "conllu")
CHUNK_BLOCKS = 256  # sentences per tag_batch call (and per chunk written)
MAX_LINE_BYTES = 1 << 20  # 1 MiB: a longer line is refused before it is held in memory
MAX_BLOCK_LINES = 10_000  # words in one CoNLL-U sentence
MAX_BLOCK_CHARS = 64 * 2**20  # characters in one CoNLL-U block, comments and blank lines included: bounds memory
NO_TAG = "_"  # CoNLL-U's empty value: a gold UPOS of "_" is not scored

# CoNLL-U IDs: a word (1, 2, ...), a multiword token range (3-4), an empty node (8.1, or 0.1 before the first word).
_WORD_ID = re.compile(r"[1-9][0-9]*")
_OTHER_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*|[0-9]+\.[1-9][0-9]*")


@dataclass
class Block:
    """One sentence as read: its raw lines (with their line endings), its words and where they are."""

    line: int  # number of the block's first line in the file, from 1
    lines: list[str]
    words: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # conllu: index in ``lines`` of each word's token line

    def render(self, tags: list[str], fmt: str) -> str:
        """The block tagged: text, ``word/TAG ...``; conllu, the lines as read with column 4 of word lines set."""
        if fmt != "conllu":
            return " ".join(f"{w}/{t}" for w, t in zip(self.words, tags)) + "\n"
        lines = list(self.lines)
        for row, tag in zip(self.rows, tags):
            body, end = _split_ending(lines[row])
            cols = body.split("\t")
            cols[3] = tag
            lines[row] = "\t".join(cols) + end
        return "".join(lines)

    def gold(self) -> list[str]:
        """conllu: column 4 of each word line, as written (``_`` where the file has no tag)."""
        return [_split_ending(self.lines[row])[0].split("\t")[3] for row in self.rows]

    def to_row(self) -> list:
        """The block as JSON-ready data, ``[line, words, lines, rows]``: how the Ray engine ships a chunk from the task
        that reads it to the actor that tags it. ``from_row`` is its inverse (the line too, so the block an actor
        rebuilds is the one read)."""
        return [self.line, self.words, self.lines, self.rows]

    @classmethod
    def from_row(cls, row: list) -> "Block":
        """The block ``to_row`` gave (after a JSON round trip)."""
        line, words, lines, rows = row
        return cls(line, lines, words, rows)


def open_input(path: str) -> BinaryIO:
    """A file to read as bytes, decompressed when its name ends in .xz."""
    return lzma.open(path, "rb") if path.endswith(".xz") else open(path, "rb")


def check_format(fmt: str) -> None:
    """ValueError unless ``fmt`` is one of ``FORMATS``. Its own function because ``chunks``, a generator, checks only
    when first read: the Ray engine calls this before Ray starts, where a bad format is one error, not one per file."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {fmt!r}")


def chunks(stream: BinaryIO, fmt: str, name: str, size: int = CHUNK_BLOCKS) -> Iterator[list[Block]]:
    """The file's blocks, ``size`` at a time (1 for a terminal, to answer each line as typed). Malformed input
    raises ValueError naming ``name`` and the line; an unreadable one, OSError."""
    check_format(fmt)
    blocks = _conllu_blocks(stream, name) if fmt == "conllu" else _text_blocks(
        stream, name, tokenize if fmt == "text" else str.split)
    chunk: list[Block] = []
    for block in blocks:
        chunk.append(block)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tag_chunk(tagger, chunk: list[Block], fmt: str, name: str = "") -> str:
    """One chunk tagged and rendered, as one ``tag_batch`` call. A sentence longer than the tagger's
    ``max_words_per_run`` is a ValueError naming its line in the file ``name``."""
    limit = tagger.max_words_per_run
    for b in chunk:
        if len(b.words) > limit:
            raise ValueError(f"{name + ': ' if name else ''}line {b.line}: a sentence of {len(b.words):,} words, more "
                             f"than max_words_per_run ({limit:,}, which bounds memory): split it, or raise the limit "
                             f"(--max-words N; tagger.max_words_per_run in Python)")
    return "".join(b.render(t, fmt) for b, t in zip(chunk, tagger.tag_batch([b.words for b in chunk])))


def counts(chunk: list[Block]) -> tuple[int, int]:
    """(sentences, tokens) of a chunk: a sentence is a block with words (an empty text line, a CoNLL-U block of
    comments only: none). One definition for both engines, so that their summaries agree as their bytes do."""
    return sum(1 for b in chunk if b.words), sum(len(b.words) for b in chunk)


def tag_file(tagger, stream: BinaryIO, out: BinaryIO, fmt: str, name: str, size: int = CHUNK_BLOCKS) -> dict:
    """Tag every sentence of ``stream`` into ``out`` (UTF-8), chunk by chunk; returns sentences and tokens."""
    sentences = tokens = 0
    for chunk in chunks(stream, fmt, name, size):
        out.write(tag_chunk(tagger, chunk, fmt, name).encode("utf-8"))
        out.flush()
        s, t = counts(chunk)
        sentences += s
        tokens += t
    return {"sentences": sentences, "tokens": tokens}


def evaluate(tagger, stream: BinaryIO, name: str, progress: Callable[[int], None] | None = None) -> dict:
    """UPOS accuracy of a gold CoNLL-U file, with per-tag precision and recall. Words whose gold UPOS is ``_``
    are tagged but not scored (``unscored``); a file with nothing to score is a ValueError. ``progress(sentences
    so far)`` is called after each chunk."""
    pairs: Counter = Counter()  # (gold, predicted) -> count
    sentences = unscored = 0
    for chunk in chunks(stream, "conllu", name):
        for block, tags in zip(chunk, tagger.tag_batch([b.words for b in chunk])):
            sentences += bool(block.words)
            for g, p in zip(block.gold(), tags):
                if g == NO_TAG:
                    unscored += 1
                else:
                    pairs[g, p] += 1
        if progress is not None:
            progress(sentences)
    tokens = sum(pairs.values())
    if not tokens:
        raise ValueError(f"{name}: no gold UPOS to score ({sentences} sentences, {unscored} words tagged '_')")
    n_gold, n_pred, hits = Counter(), Counter(), Counter()
    for (g, p), n in pairs.items():
        n_gold[g] += n
        n_pred[p] += n
        if g == p:
            hits[g] += n
    correct = sum(hits.values())
    per_tag = {t: {"precision": hits[t] / n_pred[t] if n_pred[t] else 0.0,
                   "recall": hits[t] / n_gold[t] if n_gold[t] else 0.0,
                   "gold": n_gold[t], "predicted": n_pred[t]}
               for t in sorted(set(n_gold) | set(n_pred))}
    return {"sentences": sentences, "tokens": tokens, "correct": correct, "accuracy": correct / tokens,
            "unscored": unscored, "per_tag": per_tag}


def format_report(result: dict) -> Iterable[str]:
    yield f"{'tag':8} {'precision':>9} {'recall':>9} {'gold':>7} {'predicted':>9}"
    for tag, r in result["per_tag"].items():
        yield f"{tag:8} {r['precision']:9.4f} {r['recall']:9.4f} {r['gold']:7d} {r['predicted']:9d}"
    yield (f"UPOS accuracy {result['accuracy']:.4f} ({result['correct']}/{result['tokens']} tokens, "
           f"{result['sentences']} sentences)")
    if result["unscored"]:
        yield f"not scored: {result['unscored']} words whose gold UPOS is '_'"


def _lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, str]]:
    """(line number, line with its ending) of a UTF-8 byte stream, split at LF only; bounded line length."""
    number = 0
    while True:
        try:
            raw = stream.readline(MAX_LINE_BYTES + 1)
        except (lzma.LZMAError, EOFError) as e:  # a damaged or truncated .xz file
            raise ValueError(f"{name}: line {number + 1}: cannot decompress ({e})") from None
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise ValueError(f"{name}: line {number}: longer than {MAX_LINE_BYTES:,} bytes")
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: line {number}: not UTF-8 (byte {e.start + 1}: {raw[e.start:e.end]!r})") from None


def _text_blocks(stream: BinaryIO, name: str, split: Callable[[str], list[str]]) -> Iterator[Block]:
    for number, line in _lines(stream, name):
        yield Block(number, [], split(line))


def _conllu_blocks(stream: BinaryIO, name: str) -> Iterator[Block]:
    block: Block | None = None
    for number, line in _lines(stream, name):
        body = _split_ending(line)[0]
        if number == 1 and body.startswith("\ufeff"):  # a UTF-8 byte-order mark: read past, written back as it came
            body = body[1:]
        blank = not body.strip()
        if block is not None and not blank and block.lines and not _split_ending(block.lines[-1])[0].strip():
            yield block  # a sentence ends after its blank lines, where the next one starts
            block = None
        if block is None:
            block, size = Block(number, []), 0
        size += len(line)
        if size > MAX_BLOCK_CHARS:  # blank and comment lines count here only: any number of them is valid
            raise ValueError(f"{name}: line {number}: the sentence from line {block.line} holds more than "
                             f"{MAX_BLOCK_CHARS:,} characters (with its comments and blank lines)")
        block.lines.append(line)
        if blank or body.startswith("#"):
            continue
        if len(block.rows) + 1 > MAX_BLOCK_LINES and _WORD_ID.fullmatch(body.split("\t", 1)[0]):
            raise ValueError(f"{name}: line {number}: the sentence from line {block.line} has more than "
                             f"{MAX_BLOCK_LINES:,} words")
        cols = body.split("\t")
        if len(cols) != 10:
            raise ValueError(f"{name}: line {number}: expected 10 tab-separated columns, got {len(cols)}")
        if _WORD_ID.fullmatch(cols[0]):
            block.rows.append(len(block.lines) - 1)
            block.words.append(cols[1])
        elif not _OTHER_ID.fullmatch(cols[0]):
            raise ValueError(f"{name}: line {number}: ID {cols[0][:20]!r} is not a word, a range (3-4) or an "
                             f"empty node (8.1)")
    if block is not None:
        yield block


def _split_ending(line: str) -> tuple[str, str]:
    """(line without its ending, the ending: '\\r\\n', '\\n' or '' for a last line without one)."""
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith("\n"):
        return line[:-1], "\n"
    return line, ""
