"""Serving any artifact: a stream that carries recurrent state from call to call, many streams in one
session.run, and padded batches of sequences of different lengths.

- ``Stream``: ``s = model.stream()``, then ``s.run(**inputs)`` per chunk (any length along ``time``, or one call of
  a per-call model); the state outputs become the next call's state inputs. Feeding chunks equals feeding the
  whole sequence: the export verified it (a state pair is detected only where two halves equal the whole).
- ``stacked_run``: complete feeds of one artifact, stacked on the batch axis and run together; what
  ``Model.run_streams`` and ``Model.run_batch`` are built on.

Shape letters: T time steps, B batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .artifact import BATCH, TIME

if TYPE_CHECKING:  # model.py imports this module
    from .model import Model

Feed = dict[str, np.ndarray]


class Stream:
    """One stream of an artifact with state pairs: ``run(**inputs)`` per chunk, the state carried between calls.

    ``state``: {state input name: array}, read (a copy) or assigned (checked like a run's input: names, dtype,
    fixed axes, finite values, one batch size). ``outputs``: the last run's outputs (None before the first).
    ``reset()`` starts over from zeros. The batch size is the first chunk's (or the assigned state's); later
    chunks must have it too. The state outputs ``run`` returns are the arrays the next call reads (no copy on the
    hot path): copy them before changing them in place.
    """

    def __init__(self, model: "Model"):
        if not model.io.state:
            raise ValueError(f"{model.name}: stream: the artifact has no state pairs (nothing is carried between "
                             f"calls): call run() on each whole sequence")
        self.model = model
        self._carried = frozenset(i for i, _ in model.io.state)  # the state inputs: never given to run()
        self.ended = False  # a stream that cannot take more input (a char-lm's end symbol); generic ones never end
        self.reset()

    def reset(self) -> None:
        """Back to the start: the state is zeros at the next chunk's batch size; no outputs yet."""
        self._state: Feed = {}  # empty: zeros at the batch size of the next run
        self._outputs: Feed | None = None

    @property
    def state(self) -> Feed:
        """The state carried to the next run (zeros at batch 1 before any run). Copies in both directions."""
        state = self._state or {i: self.model.zero_state(i, 1) for i, _ in self.model.io.state}
        return {k: v.copy() for k, v in state.items()}

    @state.setter
    def state(self, value: Mapping[str, Any]) -> None:
        self._state = self.model.check_state(value, "stream state")

    @property
    def outputs(self) -> Feed | None:
        return self._outputs

    def run(self, **inputs: Any) -> Feed:
        """Run one chunk with the carried state; returns every output and carries the state outputs on."""
        if not self._carried.isdisjoint(inputs):
            carried = sorted(self._carried.intersection(inputs))
            raise ValueError(f"{self.model.name}: stream.run: {carried} are carried by the stream; assign "
                             f"stream.state to set them, or call reset()")
        return self._carry(self.model._check_feed(inputs, trusted=self._state))

    def _carry(self, feed: Mapping[str, np.ndarray]) -> Feed:
        """Run a complete feed (state included) and keep its state outputs for the next call."""
        out = self.model._run(feed)
        self._keep(out)
        return out

    def _keep(self, out: Feed) -> None:
        self._state = {i: out[o] for i, o in self.model.io.state}
        self._outputs = out


def check_pairs(model: "Model", pairs: Any) -> list[tuple[Stream, Mapping[str, Any]]]:
    """``run_streams``' argument, checked whole before any stream moves: (stream, inputs) pairs, streams of
    ``model``, each once, none ended; inputs a mapping without the carried state."""
    if isinstance(pairs, (str, bytes, Mapping)) or not isinstance(pairs, Sequence):
        raise TypeError(f"{model.name}: run_streams: expected a list of (stream, inputs) pairs, got "
                        f"{type(pairs).__name__}")
    seen: dict[int, int] = {}
    checked = []
    state = {i for i, _ in model.io.state}
    for k, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"{model.name}: run_streams: item {k}: expected a (stream, inputs) pair, got "
                            f"{type(pair).__name__}")
        s, inputs = pair
        if not isinstance(s, Stream):
            raise TypeError(f"{model.name}: run_streams: item {k}: expected a Stream, got {type(s).__name__}")
        if s.model is not model:
            raise ValueError(f"{model.name}: run_streams: item {k}: expected a stream of this loaded model, "
                             f"{model.loaded_as}, got one of {s.model.loaded_as} (each load is its own model)")
        if id(s) in seen:
            raise ValueError(f"{model.name}: run_streams: item {k}: expected distinct streams, got the stream of "
                             f"item {seen[id(s)]} again")
        if s.ended:
            raise ValueError(f"{model.name}: run_streams: item {k}: the stream has ended; reset() it first")
        if not isinstance(inputs, Mapping):
            raise TypeError(f"{model.name}: run_streams: item {k}: expected the inputs as a mapping, got "
                            f"{type(inputs).__name__}")
        if set(inputs) & state:
            raise ValueError(f"{model.name}: run_streams: item {k}: {sorted(set(inputs) & state)} are carried by "
                             f"the stream; assign stream.state to set them")
        seen[id(s)] = k
        checked.append((s, inputs))
    return checked


def stacked_run(model: "Model", feeds: Sequence[Feed], max_rows: int, max_steps: int, check: Sequence[str] = (),
                what: str = "feed") -> list[Feed]:
    """Run complete feeds (each with its own batch size B_i) as few session.runs as the model allows, stacked
    on the batch axis; returns each feed's outputs, as its own run would give them.

    Feeds run together when every input without a batch axis is equal and every other axis but batch agrees;
    where the model has a ``lengths`` input, the time axis may differ too: shorter feeds are zero-padded along
    time, their lengths say where they end, and time outputs are cut back to each feed's own length. A group runs
    at most ``max_rows`` rows and ``max_rows`` x padded T <= ``max_steps`` per session.run (longest first). An
    artifact whose outputs cannot be split back by batch (an output with no batch axis, or one like
    ``time*batch``) runs each feed alone. The inputs named in ``check`` get their value checks (finite, ids in
    range) on the stacked arrays, all before the first run; a failure names the feed (``what`` k)."""
    lay = _layout(model)
    plan = _plan(model, lay, feeds, max_rows, max_steps)
    for members, stacked in plan:
        for name in check:
            try:
                model._check_values(name, stacked[name])
            except ValueError:
                for k in members:  # which one: the error path only
                    try:
                        model._check_values(name, feeds[k][name])
                    except ValueError as e:
                        raise ValueError(f"{what} {k}: {str(e).removeprefix(model.name + ': ')}") from None
                raise
    results: list[Feed | None] = [None] * len(feeds)
    for members, stacked in plan:
        out = model._run(stacked)
        if len(members) == 1:
            results[members[0]] = out
            continue
        offset = 0
        for k in members:
            b, t = model.batch_size(feeds[k]), lay.time(feeds[k])
            results[k] = {name: out[name][at(offset, b, t)] for name, at in lay.outputs}
            offset += b
    return results  # type: ignore[return-value]


class _Layout:
    """Where each input and output of ``model`` has its batch and time axes, worked out once per model."""

    def __init__(self, model: "Model"):
        io = model.io
        self.splittable = all(BATCH in t.shape and all(isinstance(d, int) or d in (TIME, BATCH)
                                                       or ("*" not in d and "/" not in d) for d in t.shape)
                              for t in io.outputs)
        self.pad = bool(io.lengths) and any(TIME in t.shape for t in io.inputs)
        timed = next((t for t in io.data_inputs if TIME in t.shape), None)
        self._time = None if timed is None else (timed.name, timed.shape.index(TIME))
        self.inputs = [(t.name, t.shape, _slicer(t.shape)) for t in io.inputs]
        self.outputs = [(t.name, _slicer(t.shape)) for t in io.outputs]

    def time(self, feed: Feed) -> int:
        if self._time is None:
            return 0
        name, axis = self._time
        return feed[name].shape[axis]

    def key(self, feed: Feed) -> tuple:
        """Feeds with equal keys can share a run: equal inputs without a batch axis, equal sizes of every other
        axis but batch (and time, where padding is masked)."""
        key = []
        for name, shape, _ in self.inputs:
            arr = feed[name]
            if BATCH not in shape:  # shared by the whole run: must be the same array
                key.append((arr.shape, arr.dtype.str, arr.tobytes()))
            else:
                key.append(tuple(0 if d == BATCH or (self.pad and d == TIME) else n for d, n in zip(shape, arr.shape)))
        return tuple(key)


def _layout(model: "Model") -> _Layout:
    lay = model.__dict__.get("_stream_layout")
    if lay is None:
        lay = model.__dict__["_stream_layout"] = _Layout(model)
    return lay


def _slicer(shape: tuple):
    """``at(offset, b, t)``: the index of one feed's rows (and, along time, its first ``t`` steps) in an array
    stacked on the batch axis."""
    batch = shape.index(BATCH) if BATCH in shape else None
    time_axis = shape.index(TIME) if TIME in shape else None
    base = [slice(None)] * len(shape)

    def at(offset: int, b: int, t: int) -> tuple:
        index = base.copy()
        if batch is not None:
            index[batch] = slice(offset, offset + b)
        if time_axis is not None:
            index[time_axis] = slice(0, t)
        return tuple(index)
    return at


def _plan(model: "Model", lay: _Layout, feeds: Sequence[Feed], max_rows: int, max_steps: int
          ) -> list[tuple[list[int], Feed]]:
    """The session.runs: (the feeds in it, its stacked feed)."""
    if not lay.splittable:
        return [([k], f) for k, f in enumerate(feeds)]
    groups: dict[tuple, list[int]] = {}
    for k, feed in enumerate(feeds):
        groups.setdefault(lay.key(feed), []).append(k)
    plan = []
    for members in groups.values():
        times = {k: lay.time(feeds[k]) for k in members}
        members.sort(key=lambda k: -times[k])
        start = 0
        while start < len(members):
            t = max(1, times[members[start]])
            rows, end = 0, start
            while end < len(members):
                b = model.batch_size(feeds[members[end]])
                if end > start and (rows + b > max_rows or (rows + b) * t > max_steps):
                    break
                rows, end = rows + b, end + 1
            chunk = members[start:end]
            plan.append((chunk, feeds[chunk[0]] if len(chunk) == 1 else
                         _stack(model, lay, [feeds[k] for k in chunk], times[chunk[0]])))
            start = end
    return plan


def _stack(model: "Model", lay: _Layout, feeds: list[Feed], t_max: int) -> Feed:
    """The feeds stacked on the batch axis, each zero-padded along time to ``t_max`` where padding is masked."""
    batches = [model.batch_size(f) for f in feeds]
    times = [lay.time(f) for f in feeds]
    stacked = {}
    for name, shape, at in lay.inputs:
        first = feeds[0][name]
        if BATCH not in shape:
            stacked[name] = first
            continue
        size = list(first.shape)
        size[shape.index(BATCH)] = sum(batches)
        if TIME in shape:
            size[shape.index(TIME)] = t_max
        buf = np.zeros(size, first.dtype) if lay.pad else np.empty(size, first.dtype)
        offset = 0
        for f, b, t in zip(feeds, batches, times):
            buf[at(offset, b, t)] = f[name]
            offset += b
        stacked[name] = buf
    return stacked
