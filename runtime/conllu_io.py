"""CoNLL-U in and out for the tagger CLI, through the ``conllu`` library (an optional extra: seqedge[conllu]).

Words are the lines whose ID is an integer; multi-word token ranges (``3-4``) and empty nodes (``8.1``) are
not words to tag and pass through untouched, as do comments and every column but UPOS.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, TextIO

from .tagger import Tagger


def _conllu():
    try:
        import conllu
    except ImportError:
        raise ImportError("CoNLL-U support needs the 'conllu' package: pip install 'seqedge[conllu]'") from None
    return conllu


def read(stream: TextIO) -> list:
    """Parse every sentence (conllu TokenLists); a malformed line raises ValueError naming it."""
    conllu = _conllu()
    try:
        return list(conllu.parse_incr(stream))
    except conllu.exceptions.ParseException as e:
        raise ValueError(f"malformed CoNLL-U: {e}") from None


def words_of(sentence) -> list[str]:
    return [tok["form"] for tok in sentence if isinstance(tok["id"], int)]


def tag_sentences(tagger: Tagger, sentences: list) -> list[list[str]]:
    return tagger.tag_batch([words_of(s) for s in sentences])


def write_tagged(tagger: Tagger, sentences: list, out: TextIO) -> None:
    """Fill column 4 (UPOS) and write each sentence back; everything else is serialized as read."""
    for sentence, tags in zip(sentences, tag_sentences(tagger, sentences)):
        for tok, tag in zip((t for t in sentence if isinstance(t["id"], int)), tags):
            tok["upos"] = tag
        out.write(sentence.serialize())


def evaluate(tagger: Tagger, sentences: list) -> dict:
    """UPOS accuracy against the gold column, with per-tag precision and recall."""
    gold = [[tok["upos"] for tok in s if isinstance(tok["id"], int)] for s in sentences]
    pred = tag_sentences(tagger, sentences)
    pairs = [(g, p) for gs, ps in zip(gold, pred) for g, p in zip(gs, ps)]
    correct = sum(g == p for g, p in pairs)
    n_gold, n_pred = Counter(g for g, _ in pairs), Counter(p for _, p in pairs)
    hits = Counter(g for g, p in pairs if g == p)
    per_tag = {t: {"precision": hits[t] / n_pred[t] if n_pred[t] else 0.0,
                   "recall": hits[t] / n_gold[t] if n_gold[t] else 0.0,
                   "gold": n_gold[t], "predicted": n_pred[t]}
               for t in sorted(set(n_gold) | set(n_pred))}
    return {"sentences": len(sentences), "tokens": len(pairs), "correct": correct,
            "accuracy": correct / len(pairs) if pairs else 0.0, "per_tag": per_tag}


def format_report(result: dict) -> Iterable[str]:
    yield f"{'tag':8} {'precision':>9} {'recall':>9} {'gold':>7} {'predicted':>9}"
    for tag, r in result["per_tag"].items():
        yield f"{tag:8} {r['precision']:9.4f} {r['recall']:9.4f} {r['gold']:7d} {r['predicted']:9d}"
    yield (f"UPOS accuracy {result['accuracy']:.4f} ({result['correct']}/{result['tokens']} tokens, "
           f"{result['sentences']} sentences)")
