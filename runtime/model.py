"""A loaded artifact: an onnxruntime session plus the manifest that says what its inputs and outputs mean.

Shape letters: T time steps, B batch, L layers x directions, H hidden size, V classes or symbols.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .artifact import BATCH, MANIFEST, TIME, ONNX_FILE, ArtifactError, Manifest, TensorSpec, read_onnx
from .onnxproto import GraphFacts
from .stream import Stream, check_pairs, layout, stacked_run

# onnxruntime's type strings for the dtypes our graphs use.
_ORT_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(bool)": np.dtype(np.bool_),
}


# Batching bounds: rows per session.run (run_batch; run_streams stacks up to STREAM_ROWS streams), and padded
# steps (rows x longest T) per session.run, which bound the memory of one run.
BATCH_ROWS = 64
STREAM_ROWS = 256
MAX_STEPS = 16384

# Inputs of up to this many values are value-checked in Python (Model._check_values).
_SMALL_VALUES = 64

# More intra-op threads than any edge CPU has cores: onnxruntime would start every one of them.
MAX_THREADS = 1024


def check_options(intra_op_threads: Any, spinning: Any) -> tuple[int, bool]:
    """``intra_op_threads`` (an int in [1, MAX_THREADS], numpy ints too, not bool) and ``spinning`` (a bool) as
    onnxruntime takes them; TypeError or ValueError naming the argument otherwise."""
    if isinstance(intra_op_threads, (bool, np.bool_)) or not isinstance(intra_op_threads, (int, np.integer)):
        raise TypeError(f"intra_op_threads: expected an int >= 1, got {type(intra_op_threads).__name__} "
                        f"{intra_op_threads!r:.40}")
    if not 1 <= intra_op_threads <= MAX_THREADS:
        raise ValueError(f"intra_op_threads: expected an int in [1, {MAX_THREADS}], got {intra_op_threads}")
    if not isinstance(spinning, (bool, np.bool_)):
        raise TypeError(f"spinning: expected a bool, got {type(spinning).__name__} {spinning!r:.40}")
    return int(intra_op_threads), bool(spinning)


def check_providers(providers: Any) -> list:
    """``providers`` as onnxruntime takes them: None is the CPU; else a list of execution provider names, or
    (name, {option: value}) pairs, each in this onnxruntime build (``onnxruntime.get_available_providers()``).
    TypeError or ValueError naming what is wrong and what is available otherwise."""
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, (str, bytes)) or not isinstance(providers, Sequence) or not providers:
        raise TypeError(f"providers: expected a non-empty list of execution provider names, e.g. "
                        f"['CPUExecutionProvider'], got {type(providers).__name__} {providers!r:.60}")
    available = ort.get_available_providers()
    for entry in providers:
        name = entry[0] if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], dict) else entry
        if not isinstance(name, str):
            raise TypeError(f"providers: expected names (str) or (name, options dict) pairs, got {entry!r:.60}")
        if name not in available:
            raise ValueError(f"providers: {name!r} is not in this onnxruntime build (onnxruntime "
                             f"{ort.__version__}, {ort.get_device()}); available: {available}. Install a build "
                             f"that has it (e.g. onnxruntime-gpu, onnxruntime-openvino, or your own build with "
                             f"--use_xnnpack)")
    return list(providers)


def session_options(intra_op_threads: int = 1, spinning: bool = False) -> ort.SessionOptions:
    """Defaults for small recurrent models on edge CPUs: one intra-op thread, no busy-wait spinning.

    A recurrent step is a few small matmuls; extra threads and spin-waiting cost more than they save.
    """
    intra_op_threads, spinning = check_options(intra_op_threads, spinning)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = "1" if spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    # fatal only: onnxruntime's errors reach the caller as exceptions (``Model._run`` names the model and the
    # inputs); its log line for the same error would only repeat it on stderr.
    opts.log_severity_level = 4
    return opts


class Model:
    """Any artifact: ``run(**arrays)`` with the artifact's IO names.

    Omitted recurrent state inputs (``h_0``, ``c_0``) are zeros, shaped (L, B, H) with B taken from the
    sequence input.

    Thread safety: one loaded model may be used from many threads at once (``run`` keeps no state between
    calls; onnxruntime sessions are thread-safe).
    """

    def __init__(self, folder: Path, manifest: Manifest, *, intra_op_threads: int = 1, spinning: bool = False,
                 onnx_file: str = ONNX_FILE, onnx: tuple[bytes, GraphFacts] | None = None,
                 providers: Sequence | None = None):
        """``onnx``: the model file's bytes and facts as ``read_onnx`` returns them (read here when None);
        ``providers``: onnxruntime execution providers (``check_providers``; None: the CPU)."""
        self.folder = folder
        self.manifest = manifest
        self.io = manifest.io
        self.onnx_path = folder / onnx_file
        options = session_options(intra_op_threads, spinning)  # a bad argument is the caller's error, not the model's
        providers = check_providers(providers)
        data, graph = onnx or read_onnx(folder, manifest, onnx_file)
        try:
            self.session = ort.InferenceSession(data, options, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors for unparsable graphs
            raise ArtifactError(f"{folder / onnx_file}: onnxruntime cannot load it: {e}") from None
        self._declared = {i.name: i for i in self.session.get_inputs()}
        self._check_graph_io()
        self.output_names = [t.name for t in self.io.outputs]
        # Where each IO tensor has its batch axis (None: it has none); read on every call of the hot paths.
        self.batch_axis = {t.name: t.axis(BATCH) for t in self.io.inputs + self.io.outputs}
        # What every run's checks read, worked out once: the data inputs (not state), each input's symbolic axes.
        self._data = self.io.data_inputs
        self._data_names = [t.name for t in self._data]
        self._batch_input = next(((t.name, self.batch_axis[t.name]) for t in self._data
                                  if self.batch_axis[t.name] is not None), None)
        self._symbols = [(t.name, [(axis, d) for axis, d in enumerate(t.shape) if isinstance(d, str)])
                         for t in self.io.inputs]
        self._batched = [(t.name, len(t.shape), self.batch_axis[t.name]) for t in self.io.inputs
                         if self.batch_axis[t.name] is not None]
        self._timed = next(((t.name, len(t.shape), t.shape.index(TIME)) for t in self._data if TIME in t.shape), None)
        # A kind that adds checks of its own (a tagger's spelling rows) never takes a stream's repeat-chunk shortcut.
        self._plain_checks = type(self)._check_feed is Model._check_feed
        # Integer inputs that index an embedding table: ids must lie in [0, rows) (the graph's Gather would
        # fail on larger ids and silently wrap negative ones).
        self._id_limits = {name: min(rows) for name in self._declared
                           if self._declared[name].type == "tensor(int64)" and (rows := graph.gathered_rows(name))}

    def _check_graph_io(self) -> None:
        """The graph's declared inputs and outputs must be the manifest's: names (outputs in order), dtypes and
        axes, symbolic ones by name. A graph whose time and batch axes are swapped would otherwise run, and
        silently answer something else, whenever T == B."""
        outputs = self.session.get_outputs()
        expected_in = sorted(t.name for t in self.io.inputs)
        expected_out = [t.name for t in self.io.outputs]
        if sorted(self._declared) != expected_in or [o.name for o in outputs] != expected_out:
            raise ArtifactError(
                f"{self.onnx_path}: graph IO disagrees with the manifest: expected inputs {expected_in} "
                f"and outputs {expected_out}, got {sorted(self._declared)} and {[o.name for o in outputs]}")
        for what, specs, graph in (("input", self.io.inputs, self._declared),
                                   ("output", self.io.outputs, {o.name: o for o in outputs})):
            for spec in specs:
                node = graph[spec.name]
                dtype = _ORT_DTYPES.get(node.type)
                got = (str(dtype) if dtype is not None else node.type, tuple(node.shape))
                if got != (spec.dtype, spec.shape):
                    raise ArtifactError(
                        f"{self.onnx_path}: graph {what} {spec.name!r} disagrees with the manifest: expected "
                        f"{spec.dtype} {spec.shape}, got {got[0]} {got[1]} (dtype and axes, symbolic axes by name)")

    def _check_vocab(self, what: str, size: int, graph_size: int | None, graph_what: str) -> None:
        """Raise ArtifactError when the manifest's vocabulary ``what`` has ``size`` entries but the graph has
        ``graph_size`` (None: the graph does not say, nothing to check)."""
        if graph_size is not None and graph_size != size:
            raise ArtifactError(f"{self.folder / MANIFEST}: vocabulary {what!r} has {size} entries but "
                                f"{self.onnx_path.name} has {graph_size} ({graph_what}); expected them to agree")

    def output_dim(self, name: str, axis: int = -1) -> int | None:
        """The graph's fixed size of an output axis (None when symbolic)."""
        shape = next(o.shape for o in self.session.get_outputs() if o.name == name)
        return shape[axis] if isinstance(shape[axis], int) else None

    def embedding_rows(self, name: str) -> int | None:
        """Rows of the embedding table input ``name`` indexes in the graph (None when none is found)."""
        return self._id_limits.get(name)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def loaded_as(self) -> str:
        """Which of the artifact's model files this is: ``char-shakespeare (model.int8.ort)``."""
        return f"{self.name!r} ({self.onnx_path.name})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, kind={self.manifest.kind!r}, folder={str(self.folder)!r})"

    # ---- input checks -------------------------------------------------------------------------------------
    def _check(self, name: str, value: Any) -> np.ndarray:
        """Return ``value`` as an array the session accepts, or raise saying what was expected and what came."""
        arr = self._conform(name, value)
        self._check_values(name, arr)
        return arr

    def _conform(self, name: str, value: Any) -> np.ndarray:
        """``value`` as an array of the input's dtype (integers cast safely), rank and fixed sizes."""
        decl = self._declared[name]
        want = _ORT_DTYPES[decl.type]
        arr = np.asarray(value)
        if arr.dtype != want:
            if want.kind in "iu" and arr.dtype.kind in "iub" and np.can_cast(arr.dtype, want, "safe"):
                arr = arr.astype(want)  # int32/uint8 ids -> int64: lossless
            else:
                raise TypeError(f"{self.name}: input {name!r}: expected dtype {want}, got {arr.dtype}"
                                + (" (cast explicitly, e.g. .astype(np.float32))" if want.kind == "f" else ""))
        if arr.ndim != len(decl.shape):
            raise ValueError(f"{self.name}: input {name!r}: expected rank {len(decl.shape)} with shape "
                             f"{_fmt(decl.shape)}, got rank {arr.ndim} with shape {arr.shape}")
        for axis, (want_dim, got_dim) in enumerate(zip(decl.shape, arr.shape)):
            if isinstance(want_dim, int) and want_dim != got_dim:
                raise ValueError(f"{self.name}: input {name!r}: expected shape {_fmt(decl.shape)}, got {arr.shape} "
                                 f"(axis {axis} must be {want_dim})")
        return np.ascontiguousarray(arr)

    def _check_values(self, name: str, arr: np.ndarray) -> None:
        """Finite floats; ids within the rows of the embedding table they index.

        The hot paths call this on every chunk: one pass each (a sum, which any NaN or Inf makes non-finite; a
        max over the ids read as unsigned, where negative ones are above every limit), the exact search only on
        failure. Up to ``_SMALL_VALUES`` values are read in Python: a numpy reduction right after a session.run
        costs about 4 µs (measured on a 2-core Xeon), a tenth of a small model's whole step."""
        limit = self._id_limits.get(name)
        floats = arr.dtype.kind == "f"
        if not arr.size or not (floats or limit is not None):
            return
        if arr.size <= _SMALL_VALUES:
            values = arr.ravel().tolist()  # float32 sums cannot overflow a Python float
            ok = math.isfinite(sum(values)) if floats else 0 <= min(values) and max(values) < limit
        elif floats:  # a float32 sum of large finite values may overflow: then look at each
            ok = math.isfinite(np.add.reduce(arr, None)) or bool(np.isfinite(arr).all())
        else:
            ok = arr.view(np.uint64).max() < limit  # int64, as _conform made it
        if ok:
            return
        if floats:
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(f"{self.name}: input {name!r}: expected finite values, got {arr[tuple(bad)]} at index "
                             f"{tuple(int(i) for i in bad)} ({int((~np.isfinite(arr)).sum())} NaN/Inf in all)")
        raise ValueError(f"{self.name}: input {name!r}: expected ids in [0, {limit}) (rows of the graph's "
                         f"embedding table), got values from {arr.min()} to {arr.max()}")

    def _check_feed(self, arrays: Mapping[str, Any], trusted: Mapping[str, np.ndarray] | None = None,
                    values: bool = True) -> dict[str, np.ndarray]:
        """``arrays`` as a complete feed, checked; ``trusted`` arrays (a stream's carried state: the graph's own
        outputs, or checked when assigned) join it unchecked but for the agreement of symbolic axes.
        ``values=False`` leaves the per-value checks (finite, ids in range) to the caller, who runs them once on
        a stacked batch (``check_values``)."""
        unknown = sorted(set(arrays) - set(self._declared))
        if unknown:
            raise ValueError(f"{self.name}: unknown input(s) {unknown}: expected names from {sorted(self._declared)}")
        check = self._check if values else self._conform
        feed = {name: check(name, value) for name, value in arrays.items() if value is not None}
        if trusted:
            feed.update(trusted)
        missing = [n for n in self._data_names if n not in feed]
        if missing:
            raise ValueError(f"{self.name}: missing input(s) {missing}: expected {self._data_names}, got "
                             f"{sorted(feed)}")
        batch = self.batch_size(feed)
        for state_in, _ in self.io.state:
            if state_in not in feed:
                feed[state_in] = self.zero_state(state_in, batch)
        # Symbolic axes must agree across inputs (a state whose batch differs from the sequence's, say), and a
        # data input's must not be empty.
        sizes: dict[str, tuple[str, int]] = {}
        for name, axes in self._symbols:
            shape = feed[name].shape
            for axis, sym in axes:
                dim = shape[axis]
                first = sizes.setdefault(sym, (name, dim))
                if first[1] != dim:
                    raise ValueError(f"{self.name}: axis {sym!r} disagrees: input {first[0]!r} has {first[1]}, "
                                     f"input {name!r} has {dim}")
                if dim < 1 and name in self._data_names:
                    empty = [d for d, n in zip(self.io.input(name).shape, shape) if isinstance(d, str) and n < 1]
                    raise ValueError(f"{self.name}: input {name!r}: axes {empty} must have size >= 1, got shape "
                                     f"{shape}")
        if self.io.lengths and TIME in sizes:
            self._check_lengths(feed[self.io.lengths], sizes[TIME][1])
        return feed

    def _check_lengths(self, lengths: np.ndarray, t: int) -> None:
        """The lengths input's values lie in [1, T] (one per sequence: read in Python, see _check_values)."""
        values = lengths.ravel().tolist()
        if values and (min(values) < 1 or max(values) > t):
            raise ValueError(f"{self.name}: input {self.io.lengths!r}: expected valid lengths in [1, {t}] (the "
                             f"time axis), got values from {lengths.min()} to {lengths.max()}")

    def batch_size(self, feed: Mapping[str, np.ndarray]) -> int:
        """B, read off the first data input that has a batch axis (1 when none has)."""
        if self._batch_input is None:
            return 1
        name, axis = self._batch_input
        return int(feed[name].shape[axis])

    def time_major(self, name: str, array: np.ndarray) -> np.ndarray:
        """Swap ``array`` between the artifact's layout of IO tensor ``name`` and time-major (T, B, ...).

        The swap is its own inverse, so the same call converts in either direction.
        """
        return np.swapaxes(array, 0, 1) if self.batch_axis[name] == 0 else array

    def zero_state(self, state_input: str, batch: int) -> np.ndarray:
        spec: TensorSpec = self.io.input(state_input)
        shape = tuple(batch if d == BATCH else d for d in spec.shape)
        return np.zeros(shape, dtype=np.dtype(spec.dtype))

    def check_state(self, value: Any, what: str = "state", batch: int | None = None) -> dict[str, np.ndarray]:
        """``value`` as a complete state: {every state input: array}, each checked like a run's input (dtype, rank,
        fixed axes, finite values) and all of one batch size (``batch`` where given). Copies: the caller's arrays
        are never kept."""
        names = sorted(i for i, _ in self.io.state)
        if not isinstance(value, Mapping) or sorted(value) != names:
            got = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise TypeError(f"{self.name}: {what}: expected a mapping with keys {names}, got {got}")
        state = {}
        for name in names:
            state[name] = arr = self._check(name, np.array(value[name]))
            want = None if batch is None else self.zero_state(name, batch).shape
            if want is not None and arr.shape != want:
                raise ValueError(f"{self.name}: {what} {name!r}: expected shape {want} "
                                 f"({'one stream' if batch == 1 else f'batch {batch}'}), got {arr.shape}")
        batches = {name: arr.shape[self.batch_axis[name]] for name, arr in state.items()
                   if self.batch_axis[name] is not None}
        if len(set(batches.values())) > 1:
            raise ValueError(f"{self.name}: {what}: expected one batch size, got {batches}")
        return state

    # ---- running --------------------------------------------------------------------------------------------
    def run(self, **arrays: Any) -> dict[str, np.ndarray]:
        """Run the graph once. Keyword names are the artifact's input names; returns {output name: array}."""
        return self._run(self._check_feed(arrays))

    def stream(self) -> Stream:
        """A stream that carries the state from call to call: ``s.run(**chunk)``, ``s.state``, ``s.reset()``.
        For artifacts with state pairs (``io.state``); see runtime/stream.py."""
        return Stream(self)

    def run_streams(self, pairs: Sequence[tuple[Stream, Mapping[str, Any]]]) -> list[dict[str, np.ndarray]]:
        """Run many streams' next chunks in as few session.runs as possible: ``[(stream, inputs), ...]`` ->
        each stream's outputs, in the given order, each stream's state carried on.

        States and inputs are stacked on the batch axis. Streams may be at different positions; chunks of
        different lengths are zero-padded and masked where the model has a ``lengths`` input (then each stream's
        inputs include its lengths), else grouped by length. Each stream gets what it gets alone: fp32 to the
        export's parity tolerance. int8 graphs (dynamic quantization) scale activations per run, so a stream's
        int8 answer depends on what runs beside it: on char-shakespeare, logits by up to 0.24 and the greedy
        pick in 7 of 400 steps (tests/test_serving.py bounds it). The whole list is checked
        (distinct streams of this model, none ended, every feed valid) before any stream moves."""
        checked = check_pairs(self, pairs)
        feeds = []
        for k, (s, inputs) in enumerate(checked):
            try:
                feeds.append(s._feed(inputs, values=False))
            except (TypeError, ValueError) as e:
                raise type(e)(f"{self.name}: run_streams: item {k}: {str(e).removeprefix(self.name + ': ')}") from None
        state = {i for i, _ in self.io.state}
        outs = stacked_run(self, feeds, STREAM_ROWS, MAX_STEPS, [n for n in self._declared if n not in state],
                           f"{self.name}: run_streams: item", keys=[s._group_key(f) for (s, _), f in zip(checked, feeds)])
        for (s, _), out in zip(checked, outs):
            s._keep(out)
        return outs

    def run_batch(self, sequences: Sequence[Mapping[str, Any]], max_steps: int | None = None
                  ) -> list[dict[str, np.ndarray]]:
        """Run many sequences of different lengths as padded batches: a list of per-sequence input dicts, each
        as the artifact takes it at batch 1 (the batch axis may be left out), -> one output dict per sequence,
        in input order, outputs along ``time`` cut back to the sequence's length (and without a batch axis
        where its inputs had none).

        Sequences are sorted by length and run ``BATCH_ROWS`` at a time, at most ``max_steps`` (default
        ``MAX_STEPS``) padded steps per session.run. Where the model has a ``lengths`` input it is filled in
        when left out, and sequences of different lengths share a run (padding is masked). Without one, padding
        could change a sequence's results, so only sequences of equal length run together. Omitted state inputs
        are zeros; every sequence is checked before any runs."""
        if isinstance(sequences, (str, bytes, Mapping)) or not isinstance(sequences, Sequence):
            raise TypeError(f"{self.name}: run_batch: expected a list of input dicts, got {type(sequences).__name__}")
        max_steps = MAX_STEPS if max_steps is None else max_steps
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"{self.name}: run_batch: max_steps: expected an int >= 1, got {max_steps!r:.40}")
        feeds, squeeze, keys = [], [], []
        lay = layout(self)
        # Sequences shaped alike (names, dtypes, shapes) pass the same shape checks: each shape is checked once,
        # and what that check added (casts, zero states, the grouping key) is reused. The per-value checks run
        # on the stacked batches, and lengths a sequence brings on that sequence.
        checked: dict[tuple, tuple[dict[str, np.dtype], dict[str, np.ndarray], tuple | None]] = {}
        lengths = self.io.lengths
        for k, inputs in enumerate(sequences):
            if type(inputs) is not dict and not isinstance(inputs, Mapping):  # dict first: an ABC check is slow
                raise TypeError(f"{self.name}: run_batch: sequence {k}: expected a dict of inputs, got "
                                f"{type(inputs).__name__}")
            arrays, dropped = self._with_batch(inputs)
            shape = _shapes(arrays) if self._plain_checks else None
            known = checked.get(shape) if shape is not None else None
            try:
                if known is None:
                    feed = self._check_feed(arrays, values=False)
                    if self.batch_size(feed) != 1:
                        raise ValueError(f"expected batch 1 (one sequence), got {self.batch_size(feed)}")
                    key = lay.key(feed)
                    if shape is not None:
                        casts = {n: feed[n].dtype for n, v in arrays.items() if v.dtype != feed[n].dtype}
                        checked[shape] = (casts, {n: feed[n] for n in feed if n not in arrays},
                                          key if lay.all_batched else None)
                else:
                    casts, zeros, key = known
                    feed = {**arrays, **zeros}
                    for n, dtype in casts.items():
                        feed[n] = arrays[n].astype(dtype)
                    if lengths and lengths in inputs:
                        name, _, axis = self._timed
                        self._check_lengths(feed[lengths], feed[name].shape[axis])
                    if key is None:
                        key = lay.key(feed)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{self.name}: run_batch: sequence {k}: {str(e).removeprefix(self.name + ': ')}") from None
            feeds.append(feed)
            squeeze.append(dropped)
            keys.append(key)
        return stacked_run(self, feeds, BATCH_ROWS, max_steps, list(self._declared),
                           f"{self.name}: run_batch: sequence", keys, squeeze)

    def _with_batch(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """One sequence's inputs with the batch axis put back where it was left out, and the lengths input
        filled in where the model has one; and whether the batch axis was left out."""
        arrays, dropped = dict(inputs), False
        for name, rank, axis in self._batched:
            value = arrays.get(name)
            if value is not None:
                arr = np.asarray(value)
                if arr.ndim == rank - 1:
                    arrays[name], dropped = arr.reshape(arr.shape[:axis] + (1,) + arr.shape[axis:]), True
        lengths = self.io.lengths
        if lengths and arrays.get(lengths) is None and self._timed is not None:
            name, rank, axis = self._timed
            if name in arrays:
                arr = np.asarray(arrays[name])
                if arr.ndim == rank:
                    arrays[lengths] = np.array([arr.shape[axis]], np.int64)
        return arrays, dropped

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a complete feed as is. For feeds the runtime built itself (every input present, right dtypes and
        shapes by construction): the checks of ``run`` cost ~50 µs, a quarter of a generated character's step."""
        try:
            outputs = self.session.run(self.output_names, feed)
        except Exception as e:  # onnxruntime's own error types; the checks above should leave none to reach here
            got = ", ".join(f"{k} {np.asarray(v).dtype} {np.shape(v)}" for k, v in feed.items())
            raise RuntimeError(f"{self.name}: onnxruntime failed to run {self.onnx_path.name} on {got}: "
                               f"{str(e).strip()}") from None
        return dict(zip(self.output_names, outputs))


def _shapes(arrays: Mapping[str, Any]) -> tuple | None:
    """What ``_check_feed``'s shape checks read of ``arrays``: each name with its array's dtype and shape (None
    where a value is not a C-contiguous ndarray: then it is checked on its own)."""
    shapes = []
    for name, value in arrays.items():
        if type(value) is not np.ndarray or not value.flags.c_contiguous:
            return None
        shapes.append((name, value.dtype, value.shape))
    return tuple(shapes)


def _fmt(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
