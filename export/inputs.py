"""Valid random inputs for any model, read off its IO declaration: the example the exporter traces with and
the inputs the parity suite feeds every backend."""

from __future__ import annotations

import numpy as np

from runtime.artifact import BATCH, TIME, IOSpec
from runtime.tagger import spell
from .models import NetConfig, TaggerConfig

Feed = dict[str, np.ndarray]


def make_feed(io: IOSpec, cfg: NetConfig | TaggerConfig, length: int, batch: int, *, initial_state: bool = True,
              seed: int = 0) -> Feed:
    """Ids cover the whole vocabulary (the unknown id included); ``lengths`` vary in [1, T] with one sentence of
    length T. Without an initial state the state inputs are absent. A tagger's words get random spellings of
    0 to max_word_chars characters, some repeated, encoded as the runtime encodes text (``spell``)."""
    rng = np.random.default_rng(seed)
    if isinstance(cfg, TaggerConfig):
        return _tagger_feed(cfg, length, batch, rng)
    feed: Feed = {}
    state_inputs = {i for i, _ in io.state}
    for spec in io.inputs:
        if spec.name in state_inputs and not initial_state:
            continue
        shape = tuple(length if d == TIME else batch if d == BATCH else d for d in spec.shape)
        if spec.dtype == "int64":
            feed[spec.name] = rng.integers(0, cfg.vocab_size, size=shape, dtype=np.int64)
        else:
            feed[spec.name] = rng.standard_normal(shape, dtype=np.float32)
    return feed


def _tagger_feed(cfg: TaggerConfig, length: int, batch: int, rng: np.random.Generator) -> Feed:
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    sizes = rng.integers(0, cfg.max_word_chars + 1, 2 * length)  # a pool of spellings, drawn with repeats
    vocab = [tuple(rng.integers(1, cfg.char_vocab, size=n)) for n in sizes]
    spellings = [[vocab[i] for i in rng.integers(0, len(vocab), size=n)] for n in lengths]
    words = np.zeros((length, batch), dtype=np.int64)  # (T, B), 0 = padding
    for b, n in enumerate(lengths):
        words[:n, b] = rng.integers(1, cfg.word_vocab, size=n)
    return {"words": words, "lengths": lengths.astype(np.int64), **spell(spellings, cfg.char_buckets)}
