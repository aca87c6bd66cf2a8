"""How well ``runtime.tokenize`` splits raw text into UD English EWT words, and what that does to POS tagging.

    python benchmarks/tokenizer_eval.py            # the vendored EWT dev split
    python benchmarks/tokenizer_eval.py FILE.conllu[.xz]

Each sentence's raw text (its ``# text =`` comment) is tokenized and compared with the gold words (word lines:
multiword token ranges such as ``3-4 don't`` and empty nodes such as ``8.1`` are skipped, so the gold is ``do``
``n't``). Scores, as in the CoNLL 2018 shared task, align tokens by character span over the text with its
whitespace removed: precision, recall and F1 of the spans, and the fraction of sentences tokenized exactly;
the most common errors are the gold-vs-ours token runs between shared boundaries. Plain ``text.split()`` is the
baseline. Tagging: ``artifacts/pos-ewt`` tags the gold words, ours and split()'s; the F1 of (span, UPOS) pairs
against gold is the tagging accuracy when the tokens are gold. ``token_scores`` is what tests/test_tokenize.py
asserts a floor on.
"""

from __future__ import annotations

import argparse
import lzma
import sys
import time
from collections import Counter
from itertools import accumulate
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import conllu

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402  (after the path: the script runs from a checkout)
from runtime.tokenize import tokenize  # noqa: E402

DEV = ROOT / "export" / "zoo" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu.xz"
TAGGER = ROOT / "artifacts" / "pos-ewt"
TOP_ERRORS = 10

Tokenizer = Callable[[str], Sequence[str]]


class Sentence(NamedTuple):
    text: str  # raw, as in the ``# text =`` comment
    words: list[str]  # gold word forms
    tags: list[str]  # gold UPOS


def read_sentences(path: Path = DEV) -> list[Sentence]:
    """Raw text, gold words and UPOS of every sentence of a CoNLL-U file (.xz read as lzma)."""
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        sentences = []
        for sent in conllu.parse_incr(f):
            words = [tok for tok in sent if isinstance(tok["id"], int)]  # ranges and empty nodes are tuples
            sentences.append(Sentence(sent.metadata["text"], [w["form"] for w in words], [w["upos"] for w in words]))
    return sentences


def spans(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Each token's (start, end) over the tokens joined (the text with its whitespace removed)."""
    ends = list(accumulate(len(t) for t in tokens))
    return list(zip([0, *ends[:-1]], ends))


def tokenized(sentences: Sequence[Sentence], tokenizer: Tokenizer) -> list[list[str]]:
    """Each sentence's text tokenized; ValueError if the tokens are not the text's non-space characters."""
    token_lists = []
    for s in sentences:
        tokens = list(tokenizer(s.text))
        if "".join(tokens) != "".join(s.text.split()):
            raise ValueError(f"tokens {tokens!r:.200} are not the non-space characters of {s.text!r:.200}")
        token_lists.append(tokens)
    return token_lists


def _f1(matched: int, predicted: int, gold: int) -> tuple[float, float, float]:
    p, r = matched / max(predicted, 1), matched / max(gold, 1)
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def token_scores(sentences: Sequence[Sentence], token_lists: Sequence[list[str]]) -> dict[str, float]:
    """Token precision, recall and F1 by character span, and the fraction of sentences tokenized exactly."""
    matched = predicted = gold = exact = 0
    for s, tokens in zip(sentences, token_lists, strict=True):
        matched += len(set(spans(tokens)) & set(spans(s.words)))
        predicted, gold, exact = predicted + len(tokens), gold + len(s.words), exact + (tokens == s.words)
    p, r, f1 = _f1(matched, predicted, gold)
    return {"precision": p, "recall": r, "f1": f1, "exact": exact / max(len(sentences), 1)}


def errors(sentences: Sequence[Sentence], token_lists: Sequence[list[str]],
           top: int = TOP_ERRORS) -> list[tuple[str, str, int]]:
    """The most common (gold run, our run, count): token runs that differ between boundaries both have."""
    counts: Counter = Counter()
    for s, tokens in zip(sentences, token_lists, strict=True):
        gold_ends, our_ends = list(accumulate(map(len, s.words))), list(accumulate(map(len, tokens)))
        i = j = 0
        for end in sorted(set(gold_ends) & set(our_ends)):
            gi, oj = gold_ends.index(end, i) + 1, our_ends.index(end, j) + 1
            if s.words[i:gi] != tokens[j:oj]:
                counts[" ".join(s.words[i:gi]), " ".join(tokens[j:oj])] += 1
            i, j = gi, oj
    return [(g, o, n) for (g, o), n in counts.most_common(top)]


def tagging_f1(sentences: Sequence[Sentence], token_lists: Sequence[list[str]], tagger) -> float:
    """F1 of (span, UPOS) pairs against gold when ``tagger`` tags ``token_lists`` (gold tokens: the accuracy)."""
    matched = predicted = gold = 0
    for s, tokens, tags in zip(sentences, token_lists, tagger.tag_batch(token_lists), strict=True):
        matched += len(set(zip(spans(tokens), tags)) & set(zip(spans(s.words), s.tags)))
        predicted, gold = predicted + len(tokens), gold + len(s.words)
    return _f1(matched, predicted, gold)[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("conllu", nargs="?", type=Path, default=DEV, help="CoNLL-U file (default: EWT dev)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sentences = read_sentences(args.conllu)
    tagger = runtime.load(TAGGER)
    print(f"{args.conllu.name}: {len(sentences):,} sentences, {sum(len(s.words) for s in sentences):,} gold words")
    print(f"{'tokens':<18} {'P':>7} {'R':>7} {'F1':>7} {'exact':>7} {'tag F1':>7}")
    t0 = time.perf_counter()
    ours = tokenized(sentences, tokenize)
    tokenize_ms = (time.perf_counter() - t0) * 1e3
    rows = {"gold": [s.words for s in sentences], "runtime.tokenize": ours,
            "text.split()": tokenized(sentences, str.split)}
    for name, token_lists in rows.items():
        scores = token_scores(sentences, token_lists)
        cells = " ".join(f"{scores[k]:7.4f}" for k in ("precision", "recall", "f1", "exact"))
        print(f"{name:<18} {cells} {tagging_f1(sentences, token_lists, tagger):7.4f}")
    print(f"\nruntime.tokenize: {tokenize_ms:.0f} ms for the {len(sentences):,} sentences")
    print("most common errors of runtime.tokenize (gold -> ours):")
    for gold, mine, n in errors(sentences, ours):
        print(f"{n:5d}  {gold!r} -> {mine!r}")
    print(f"\nrun time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
