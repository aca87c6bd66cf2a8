"""Valid random inputs for any model, read off its IO declaration: the example the exporter traces with and
the inputs the parity suite feeds every backend."""

from __future__ import annotations

import numpy as np

from runtime.artifact import BATCH, TIME, IOSpec
from .models import CHARS_PER_WORD, NetConfig, TaggerConfig

CHARS_PER_WORD_EXAMPLE = 6  # the example's character axis (C); any C works at run time

Feed = dict[str, np.ndarray]


def make_feed(io: IOSpec, cfg: NetConfig | TaggerConfig, length: int, batch: int, *, initial_state: bool = True,
              seed: int = 0) -> Feed:
    """Ids cover the whole vocabulary (the unknown id included); ``lengths`` vary in [1, T] with one sentence of
    length T; each word gets 1..C characters. Without an initial state the state inputs are absent."""
    rng = np.random.default_rng(seed)
    feed: Feed = {}
    state_inputs = {i for i, _ in io.state}
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    for spec in io.inputs:
        if spec.name in state_inputs and not initial_state:
            continue
        shape = tuple(length if d == TIME else batch if d == BATCH else CHARS_PER_WORD_EXAMPLE if d == CHARS_PER_WORD else d
                      for d in spec.shape)
        if spec.name == "lengths":
            feed[spec.name] = lengths.astype(np.int64)
        elif CHARS_PER_WORD in spec.shape:  # a tagger's characters of each word
            chars = rng.integers(1, cfg.char_vocab, size=shape, dtype=np.int64)  # (T, B, C)
            n_chars = rng.integers(1, shape[2] + 1, size=shape[:2])
            chars[np.arange(shape[2]) >= n_chars[..., None]] = 0  # pad after each word's characters
            feed[spec.name] = chars
        elif spec.dtype == "int64":
            vocab = cfg.word_vocab if isinstance(cfg, TaggerConfig) else cfg.vocab_size
            feed[spec.name] = rng.integers(0, vocab, size=shape, dtype=np.int64)
        else:
            feed[spec.name] = rng.standard_normal(shape, dtype=np.float32)
    return feed
