"""Part-of-speech taggers: words in, one tag per word out.

Graph IO: ``words`` int64 (T, B) -> ``scores`` float32 (T, B, V) log-probabilities over the tag set, plus the
recurrent state (``h_0``/``c_0`` in, ``h_n``/``c_n`` out).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .model import Model

WORDS, SCORES = "words", "scores"
BATCH_SENTENCES = 64  # sentences per session.run in tag_batch: enough to amortise the call, small enough for RAM


class Tagger(Model):
    """``tag(words)`` and ``tag_batch(sentences)``. Unknown words map to the artifact's unknown word."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        vocab = self.manifest.vocab
        self.tags: list[str] = list(vocab["tags"])
        self.words: list[str] = list(vocab["words"])
        self._index = {w: i for i, w in enumerate(self.words)}
        self.unk_id = self._index[vocab["unk"]]

    def encode(self, words: Sequence[str]) -> np.ndarray:
        """Word ids (T,) int64; words not in the vocabulary get the unknown word's id."""
        _check_sentence(words)
        return np.fromiter((self._index.get(w, self.unk_id) for w in words), dtype=np.int64, count=len(words))

    def scores_batch(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per sentence, its (T_i, V) log-probabilities, in input order.

        Sentences are sorted by length and padded into batches of ``BATCH_SENTENCES``, one session.run each.
        The graph reads left to right, so the padding after a sentence cannot change its scores.
        """
        if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
            raise TypeError(f"{self.name}: sentences: expected a list of lists of str, got {type(sentences).__name__}")
        encoded = [self.encode(s) for s in sentences]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        results: list[np.ndarray] = [np.zeros((0, len(self.tags)), np.float32)] * len(encoded)
        nonempty = [i for i in order if len(encoded[i])]
        for start in range(0, len(nonempty), BATCH_SENTENCES):
            chunk = nonempty[start:start + BATCH_SENTENCES]
            width = len(encoded[chunk[0]])  # longest first
            ids = np.full((width, len(chunk)), self.unk_id, dtype=np.int64)  # (T, B), padded with unk
            for b, i in enumerate(chunk):
                ids[: len(encoded[i]), b] = encoded[i]
            scores = self.time_major(SCORES, self.run(**{WORDS: self.time_major(WORDS, ids)})[SCORES])  # (T, B, V)
            for b, i in enumerate(chunk):
                results[i] = scores[: len(encoded[i]), b]
        return results

    def tag_batch(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        return [[self.tags[k] for k in s.argmax(-1)] for s in self.scores_batch(sentences)]

    def tag(self, words: Sequence[str]) -> list[str]:
        return self.tag_batch([words])[0]


def _check_sentence(words: Sequence[str]) -> None:
    if isinstance(words, (str, bytes)) or not isinstance(words, Sequence):
        raise TypeError(f"a sentence: expected a list of str, got {type(words).__name__}"
                        + (" (split it into words first)" if isinstance(words, str) else ""))
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise TypeError(f"a sentence: word {i}: expected str, got {type(w).__name__}")
