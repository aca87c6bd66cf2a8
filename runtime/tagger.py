"""Part-of-speech taggers: words in, one tag per word out.

Graph IO: ``words`` int64 (T, B) -> ``scores`` float32 (T, B, V) log-probabilities over the tag set. Seed taggers
also carry recurrent state (``h_0``/``c_0`` in, ``h_n``/``c_n`` out); the EWT tagger instead takes ``lengths``
int64 (B,), each sentence's true length, and the batch's spellings (see ``spell``): ``spelling`` int64 (T, B),
each word's row among ``chars_1``, ``chars_2``, ``chars_3`` int64 (N_k, C_k), the character ids of each distinct
spelling in the batch, grouped by length so that short words do not pay for the longest one.

The text preprocessing here (``normalize_word``, ``word_chars``) is the one definition of it: training
imports it from here, so what the model saw in training is what it sees at run time.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from itertools import chain
from typing import Any, Mapping, Sequence

import numpy as np

from .model import Model
from .tokenize import tokenize

WORDS, LENGTHS, SPELLING, SCORES = "words", "lengths", "spelling", "scores"
BATCH_SENTENCES = 64  # sentences per session.run in tag_batch: enough to amortise the call, small enough for RAM
# Most padded words (T x B) in one session.run, and so the longest sentence: bounds memory (pos-ewt peaks at
# about 13 KB per word: 8,192 words ~ 0.1 GB). ``Tagger.max_words_per_run`` changes it per tagger.
MAX_WORDS_PER_RUN = 8192


class Tagger(Model):
    """``tag(words)`` and ``tag_batch(sentences)``. Unknown words map to the artifact's unknown word.

    Words are any ``str`` (empty, Unicode, control characters: unknown ones map to the unknown word and
    character); an empty sentence gets no tags. A sentence longer than ``max_words_per_run`` is refused with
    ValueError (raise the attribute to allow it: memory grows with the words in one session.run).
    """

    _max_words_per_run: int = MAX_WORDS_PER_RUN

    @property
    def max_words_per_run(self) -> int:
        """Most padded words in one session.run (bounds memory); assign an int >= 1 to change it."""
        return self._max_words_per_run

    @max_words_per_run.setter
    def max_words_per_run(self, value: int) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
            raise TypeError(f"{self.name}: max_words_per_run: expected an int >= 1, got {type(value).__name__} "
                            f"{value!r:.40}")
        self._max_words_per_run = int(value)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        vocab = self.manifest.vocab
        self.tags: list[str] = list(vocab["tags"])
        self.words: list[str] = list(vocab["words"])
        self._check_vocab("tags", len(self.tags), self.output_dim(SCORES), f"output {SCORES!r} scores that many")
        self._check_vocab("words", len(self.words), self.embedding_rows(WORDS), "rows in the word embedding")
        for name in sorted(n for n in self._declared if n.startswith("chars")):  # chars, or chars_1, chars_2...
            self._check_vocab("chars", len(vocab.get("chars", ())), self.embedding_rows(name),
                              f"rows in the char embedding {name!r} indexes")
        self._index = {w: i for i, w in enumerate(self.words)}
        self.unk_id = self._index[vocab["unk"]]
        self.pad_id = self._index[vocab.get("pad", vocab["unk"])]
        self._normalize = vocab.get("normalize", False)
        index, unk_id, normalize = self._index, self.unk_id, self._normalize
        # Closures over the tables, not bound methods: a cache holding a bound method would make every loaded
        # tagger a reference cycle (freed only by the garbage collector, not on ``del``).
        self._word_id = _bounded_cache(lambda w: index.get(normalize_word(w) if normalize else w, unk_id))
        self._spelled = SPELLING in self._declared
        if self._spelled:
            self._char_buckets = tuple(int(b) for b in self.manifest.config["char_buckets"])
            self._char_index = {c: i for i, c in enumerate(vocab["chars"])}
            self._char_unk = self._char_index[vocab["unk"]]
            self._max_chars = int(self.manifest.config["max_word_chars"])
            char_index, char_unk, max_chars = self._char_index, self._char_unk, self._max_chars
            self._char_ids = _bounded_cache(lambda w: tuple(char_index.get(ch, char_unk)
                                                            for ch in word_chars(w, max_chars)))

    def encode(self, words: Sequence[str]) -> np.ndarray:
        """Word ids (T,) int64; words not in the vocabulary get the unknown word's id."""
        _check_sentence(words)
        return self._encode(words)

    def _encode(self, words: Sequence[str]) -> np.ndarray:
        return np.fromiter(map(self._word_id, words), dtype=np.int64, count=len(words))

    def inputs(self, sentences: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
        """The graph's inputs for one padded batch of non-empty sentences, in the given order: ``words`` (T, B),
        and where the graph takes them ``lengths`` (B,) and the spellings (``spell``), or a zero initial state."""
        for s in sentences:
            _check_sentence(s)
        return self._inputs(sentences)

    def _inputs(self, sentences: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
        """``inputs`` for sentences already checked (``scores_batch`` checks them all before any work)."""
        encoded = [self._encode(s) for s in sentences]
        lengths = [len(e) for e in encoded]
        if not encoded or min(lengths) < 1:
            raise ValueError(f"{self.name}: inputs() needs one or more non-empty sentences, got lengths {lengths}")
        ids = np.full((max(lengths), len(encoded)), self.pad_id, dtype=np.int64)  # (T, B)
        for b, e in enumerate(encoded):
            ids[: len(e), b] = e
        feed = {WORDS: np.ascontiguousarray(self.time_major(WORDS, ids))}
        if LENGTHS in self._declared:
            feed[LENGTHS] = np.asarray(lengths, dtype=np.int64)
        if self._spelled:
            feed.update(spell([[self._char_ids(w) for w in s] for s in sentences], self._char_buckets))
        for state_in, _ in self.io.state:  # seed taggers: each sentence starts from a zero state
            feed[state_in] = self.zero_state(state_in, len(encoded))
        return feed

    def _check_feed(self, arrays: Mapping[str, Any], **kwargs: Any) -> dict[str, np.ndarray]:
        feed = super()._check_feed(arrays, **kwargs)  # lengths within [1, T] included (the manifest names the lengths input)
        if self._spelled:
            rows = sum(feed[char_input(k)].shape[0] for k in range(1, len(self._char_buckets) + 2))
            bad = feed[SPELLING][(feed[SPELLING] < 0) | (feed[SPELLING] >= rows)]
            if bad.size:
                raise ValueError(f"{self.name}: input 'spelling': expected row numbers in [0, {rows}) (the rows of "
                                 f"the chars_k inputs), got {bad[:5].tolist()}")
        return feed

    def scores_batch(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per sentence, its (T_i, V) log-probabilities, in input order.

        Sentences are sorted by length and padded into batches of ``BATCH_SENTENCES``, one session.run each.
        Padding cannot change a sentence's scores: unidirectional graphs read left to right, and bidirectional
        ones take each sentence's true length (``lengths``).
        """
        if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
            raise TypeError(f"{self.name}: sentences: expected a list of lists of str, got {type(sentences).__name__}")
        for i, s in enumerate(sentences):  # every sentence is checked before any work
            _check_sentence(s, where=f"sentence {i}")
            if len(s) > self.max_words_per_run:
                raise ValueError(f"{self.name}: sentence {i}: expected at most {self.max_words_per_run} words "
                                 f"(max_words_per_run, which bounds memory), got {len(s)}; split the text into "
                                 f"sentences, or raise tagger.max_words_per_run")
        sizes = [len(s) for s in sentences]
        order = sorted((i for i in range(len(sizes)) if sizes[i]), key=lambda i: sizes[i], reverse=True)
        results: list[np.ndarray] = [np.zeros((0, len(self.tags)), np.float32)] * len(sizes)
        chunks, start = [], 0  # longest first: a chunk's first sentence sets its padded length T
        while start < len(order):
            size = max(1, min(BATCH_SENTENCES, self.max_words_per_run // sizes[order[start]]))
            chunks.append(order[start:start + size])
            start += size
        for chunk in chunks:
            out = self._run(self._inputs([sentences[i] for i in chunk]))  # built here: valid by construction
            scores = self.time_major(SCORES, out[SCORES])  # (T, B, V)
            for b, i in enumerate(chunk):
                results[i] = scores[: sizes[i], b]
        return results

    def tag_batch(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        return [[self.tags[k] for k in s.argmax(-1)] for s in self.scores_batch(sentences)]

    def tag(self, words: Sequence[str]) -> list[str]:
        return self.tag_batch([words])[0]

    def tag_text(self, text: str) -> list[tuple[str, str]]:
        """Raw text of one sentence, split into words by ``runtime.tokenize.tokenize`` (UD English style), tagged:
        ``[(word, tag), ...]``. ``tag_text("The dog barked.")`` -> ``[('The', 'DET'), ('dog', 'NOUN'), ('barked',
        'VERB'), ('.', 'PUNCT')]``. It does not split sentences: give it one (the CLI: one per line)."""
        words = tokenize(text)
        return list(zip(words, self.tag(words)))


def char_input(k: int) -> str:
    """The name of the k-th (from 1) character input: the spellings of the k-th length bucket."""
    return f"chars_{k}"


def spell(spellings: Sequence[Sequence[tuple[int, ...]]], buckets: Sequence[int]) -> dict[str, np.ndarray]:
    """The character inputs of a batch, from each sentence's words as character-id tuples.

    Each distinct spelling is encoded once, in the length bucket it falls in: bucket k (from 1) holds the
    spellings of length in (buckets[k-2], buckets[k-1]], the last bucket everything longer than buckets[-1].
    A recurrent layer runs every row for as many steps as the longest row, so grouping by length is what keeps
    short words from paying for long ones. Returns ``spelling`` (T, B), each word's row in the buckets stacked
    in order (0 in padding slots), and ``chars_k`` (N_k, C_k), 0-padded; an empty bucket is one row of padding.
    """
    groups: list[list[tuple[int, ...]]] = [[] for _ in range(len(buckets) + 1)]
    for word in dict.fromkeys(chain.from_iterable(spellings)):  # distinct, in order of first appearance
        groups[bisect_left(buckets, len(word))].append(word)
    feed, row, offset = {}, {}, 0
    for k, group in enumerate(groups, 1):
        width = max(map(len, group), default=0) or 1
        rows = [w + (0,) * (width - len(w)) for w in group] or [(0,)]
        feed[char_input(k)] = np.array(rows, dtype=np.int64)  # (N_k, C_k)
        row.update(zip(group, range(offset, offset + len(group))))
        offset += len(rows)
    t = max(map(len, spellings))
    index = [[row[w] for w in s] + [0] * (t - len(s)) for s in spellings]  # (B, T)
    return {SPELLING: np.array(index, dtype=np.int64).T.copy(), **feed}  # (T, B)


def normalize_word(word: str) -> str:
    """The word-embedding key: lower case, every digit 0 (the characters keep case and digits)."""
    return _DIGITS.sub("0", word.lower())


def word_chars(word: str, max_chars: int) -> str:
    """The characters the model reads: all of them, or for long words the first and last ``max_chars // 2``."""
    if len(word) <= max_chars:
        return word
    head = max_chars // 2
    return word[:head] + word[len(word) - (max_chars - head):]


_DIGITS = re.compile(r"\d")


def _check_sentence(words: Sequence[str], where: str = "a sentence") -> None:
    if isinstance(words, (str, bytes)) or not isinstance(words, Sequence):
        raise TypeError(f"{where}: expected a list of str, got {type(words).__name__}"
                        + (" (split it into words first)" if isinstance(words, str) else ""))
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise TypeError(f"{where}: word {i}: expected str, got {type(w).__name__} {w!r:.40}")


# Word lookups are cached (words recur: 78% of EWT dev's 25,147 tokens repeat one of its 5,494 distinct words), but
# what tagging untrusted text leaves alive must not grow with it: at most CACHE_ENTRIES words of at most
# CACHE_WORD_CHARS characters are kept (2.6 MB measured with tracemalloc after 40,000 distinct 48-character words on
# pos-ewt), and the cache starts over when full.
CACHE_ENTRIES = 16384
CACHE_WORD_CHARS = 48


def _bounded_cache(fn):
    """``fn`` of a word, memoised for short words only and for at most CACHE_ENTRIES of them. Thread-safe: dict
    operations are atomic, and a lost race only computes a value twice."""
    cache: dict[str, Any] = {}

    def lookup(word: str):
        hit = cache.get(word)
        if hit is None:
            hit = fn(word)
            if len(word) <= CACHE_WORD_CHARS:
                if len(cache) >= CACHE_ENTRIES:
                    cache.clear()
                cache[word] = hit
        return hit
    return lookup
