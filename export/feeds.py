"""Valid random inputs for a model at any sizes of its symbolic axes, read off its example: what verification
feeds every backend.

Rules (recorded in the manifest as the verification plan, so a feed can be rebuilt from the artifact alone):
- float inputs: standard normal;
- integer inputs: uniform over the example's own value range [min, max] (give an example whose ids span the
  vocabulary); the ``lengths`` input: valid lengths in [1, T], mixed, the first sequence of length T, sorted
  longest first when the example's were (``pack_padded_sequence(enforce_sorted=True)`` needs it);
- bool inputs: fair coin flips;
- without an initial state, state inputs are left out (the runtime and the torch backends fill zeros).

Models whose inputs are structured beyond this (pos-ewt's spellings, which index each other) pass ``custom``:
a function of (sizes, numpy Generator) returning the whole feed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from runtime.artifact import BATCH, TIME, IOSpec, TensorSpec

Feed = dict[str, np.ndarray]
Custom = Callable[[dict[str, int], np.random.Generator], Feed]


@dataclass
class Plan:
    """How to make inputs: each symbol's example size and verified sizes, integer inputs' value ranges."""

    example: dict[str, int]  # symbol -> its size in the example
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)  # integer input -> [low, high] of the example
    sorted_lengths: bool = False
    sizes: dict[str, list[int]] = field(default_factory=dict)  # symbol -> sizes verification runs it at

    @classmethod
    def from_example(cls, inputs: list[TensorSpec], leaves: list[Any], example: dict[str, int],
                     lengths: str | None) -> "Plan":
        ranges = {spec.name: (int(t.min()), int(t.max())) if t.numel() else (0, 0)
                  for spec, t in zip(inputs, leaves) if spec.dtype in ("int64", "int32")}
        sorted_lengths = False
        if lengths is not None:
            values = leaves[[s.name for s in inputs].index(lengths)].tolist()
            sorted_lengths = len(values) > 1 and values == sorted(values, reverse=True)
        return cls(dict(example), ranges, sorted_lengths)

    def to_json(self) -> dict:
        return {"example": self.example, "ranges": {k: list(v) for k, v in self.ranges.items()},
                "sorted_lengths": self.sorted_lengths, "sizes": self.sizes}

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        return cls(dict(d["example"]), {k: (int(a), int(b)) for k, (a, b) in d.get("ranges", {}).items()},
                   bool(d.get("sorted_lengths")), {k: list(v) for k, v in d.get("sizes", {}).items()})


def make_feed(io: IOSpec, plan: Plan, sizes: dict[str, int], *, initial_state: bool = True, seed: int = 0,
              custom: Custom | None = None) -> Feed:
    """Inputs at ``sizes`` (symbol -> size; symbols not named keep the example's size)."""
    rng = np.random.default_rng(seed)
    sizes = {**plan.example, **sizes}
    state_inputs = {i for i, _ in io.state}
    if custom is not None:
        feed = custom(sizes, rng)
        return {k: v for k, v in feed.items() if initial_state or k not in state_inputs}
    feed: Feed = {}
    for spec in io.inputs:
        if spec.name in state_inputs and not initial_state:
            continue
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)
        if spec.name == io.lengths:
            feed[spec.name] = _lengths(rng, sizes[TIME], sizes[BATCH], plan.sorted_lengths, spec.dtype)
        elif spec.dtype in ("int64", "int32"):
            low, high = plan.ranges.get(spec.name, (0, 0))
            feed[spec.name] = rng.integers(low, high + 1, size=shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            feed[spec.name] = rng.random(shape) < 0.5
        else:
            feed[spec.name] = rng.standard_normal(shape, dtype=np.float32)
    return feed


def _lengths(rng: np.random.Generator, time: int, batch: int, descending: bool, dtype: str) -> np.ndarray:
    lengths = rng.integers(1, time + 1, size=batch)
    lengths[0] = time
    if descending:
        lengths = np.sort(lengths)[::-1]
    return np.ascontiguousarray(lengths.astype(dtype))


def batch_of(io: IOSpec, feed: Feed) -> int:
    """B, read off the first input of ``feed`` that has a batch axis (1 when none has)."""
    for spec in io.inputs:
        if spec.name in feed and BATCH in spec.shape:
            return int(feed[spec.name].shape[spec.axis(BATCH)])
    return 1


def complete(io: IOSpec, feed: Feed) -> Feed:
    """``feed`` with absent state inputs as zeros, as the runtime fills them: for the torch backends and the other
    ONNX runtimes, which need every input."""
    batch = batch_of(io, feed)
    zeros = {i: np.zeros([batch if d == BATCH else d for d in io.input(i).shape], np.dtype(io.input(i).dtype))
             for i, _ in io.state if i not in feed}
    return {**feed, **zeros} if zeros else feed
