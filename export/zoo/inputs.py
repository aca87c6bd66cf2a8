"""The registered models' example inputs (what the exporter traces with and the verification plan is read
from), and pos-ewt's structured inputs (spellings that index each other), which random tensors cannot be."""

from __future__ import annotations

import numpy as np
import torch

from runtime.artifact import BATCH, TIME, IOSpec
from runtime.tagger import spell
from ..feeds import Custom, Feed
from .models import NetConfig, TaggerConfig


def example_args(io: IOSpec, cfg: NetConfig | TaggerConfig, length: int, batch: int) -> tuple[torch.Tensor, ...]:
    """One tensor per input, in order. Ids span the whole vocabulary, the unknown id included: the first is 0 and
    the last vocab_size - 1, so the generated inputs of verification (drawn over the example's range) do too."""
    rng = np.random.default_rng(0)
    if isinstance(cfg, TaggerConfig):
        feed = tagger_inputs(cfg)({TIME: length, BATCH: batch}, rng)
    else:
        feed = {}
        for spec in io.inputs:
            shape = tuple(length if d == TIME else batch if d == BATCH else d for d in spec.shape)
            if spec.dtype == "int64":
                ids = rng.integers(0, cfg.vocab_size, size=shape, dtype=np.int64)
                ids.flat[0], ids.flat[-1] = 0, cfg.vocab_size - 1
                feed[spec.name] = ids
            else:
                feed[spec.name] = rng.standard_normal(shape, dtype=np.float32)
    return tuple(torch.from_numpy(feed[spec.name]) for spec in io.inputs)


def tagger_inputs(cfg: TaggerConfig) -> Custom:
    """Sentences of valid lengths in [1, T] (one of length T) whose words get random spellings of 0 to
    max_word_chars characters, some repeated, encoded as the runtime encodes text (``spell``)."""
    def make(sizes: dict[str, int], rng: np.random.Generator) -> Feed:
        length, batch = sizes[TIME], sizes[BATCH]
        lengths = rng.integers(1, length + 1, size=batch)
        lengths[0] = length
        word_sizes = rng.integers(0, cfg.max_word_chars + 1, 2 * length)  # a pool of spellings, drawn with repeats
        vocab = [tuple(rng.integers(1, cfg.char_vocab, size=n)) for n in word_sizes]
        spellings = [[vocab[i] for i in rng.integers(0, len(vocab), size=n)] for n in lengths]
        words = np.zeros((length, batch), dtype=np.int64)  # (T, B), 0 = padding
        for b, n in enumerate(lengths):
            words[:n, b] = rng.integers(1, cfg.word_vocab, size=n)
        return {"words": words, "lengths": lengths.astype(np.int64), **spell(spellings, cfg.char_buckets)}
    return make
