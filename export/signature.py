"""What a user's module takes and gives, learned by running it: the IO declaration of its artifact.

The caller names the flattened example arguments and their symbolic axes (torch.onnx's ``dynamic_axes`` form,
e.g. ``{"input": {0: "time", 1: "batch"}}``). Everything else is read off eager runs, never off an exporter's
declarations: output axes by running eager at two sizes per symbol (an output axis equal to a symbol's size is
that symbol; one equal to a product of symbols, as ``output.view(-1, ntoken)``, is ``"time*batch"``; one that
follows a symbol otherwise, as a CRNN's time axis follows the image width, is named after it, e.g.
``"width/4"``); recurrent state pairs by checking that an output is its input after the sequence (running the
sequence in two halves, the second from the first's output, equals running it whole).

Shape letters: T time steps, B batch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from runtime.artifact import BATCH, TIME, IOSpec, TensorSpec
from .errors import SignatureError
from .feeds import Feed, Plan, complete, make_feed
from .verify import BATCHES, LONG

DTYPES = {torch.float32: "float32", torch.int64: "int64", torch.int32: "int32", torch.bool: "bool"}
OTHER_SIZES = (1, 2, 3, 0.5, 2.0, 3.0)  # candidate sizes of a symbol other than time/batch: absolute or x example
STATE_TOLERANCE = 1e-4  # halves vs whole, in eager (float32 rounding over a short example)

Structure = Any  # the nesting of the example arguments: an int (index of a flattened tensor) or a tuple of them


def flatten(args: Any, what: str = "args") -> tuple[list[torch.Tensor], Structure]:
    """Tensors of ``args`` (a tensor or nested tuples/lists of tensors) in order, and the nesting to rebuild it."""
    leaves: list[torch.Tensor] = []

    def walk(x, where):
        if isinstance(x, torch.Tensor):
            leaves.append(x)
            return len(leaves) - 1
        if isinstance(x, (tuple, list)):
            return tuple(walk(v, f"{where}[{i}]") for i, v in enumerate(x))
        raise SignatureError(f"{where} is a Python {type(x).__name__} ({_short(x)}): expected a tensor or a (nested) "
                             f"tuple or list of tensors")

    structure = walk(args, what)
    return leaves, structure


def unflatten(structure: Structure, leaves: list[Any]) -> Any:
    if isinstance(structure, int):
        return leaves[structure]
    return tuple(unflatten(s, leaves) for s in structure)


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def flat_outputs(out: Any) -> list[torch.Tensor]:
    return flatten(out, "the module's output")[0]


class FlatOutputs(torch.nn.Module):
    """``module`` with its outputs flattened into one tuple of tensors, in the order of the ONNX outputs: what
    tracing and the ONNX exporters take where forward returns Python lists (DeepSpeech2's list of (h, c) per
    layer). torch.jit.trace refuses a list of tuples ("Only tensors, lists, tuples of tensors, or dictionary of
    tensors can be output from traced functions")."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return tuple(flat_outputs(self.module(*args)))


def returns_lists(out: Any) -> bool:
    """Whether a module's output holds a Python list anywhere."""
    if isinstance(out, list):
        return True
    if isinstance(out, (tuple, dict)):
        return any(returns_lists(v) for v in (out.values() if isinstance(out, dict) else out))
    return False


def call_module(module: Callable, io: IOSpec, structure: Structure, feed: Feed) -> list[np.ndarray]:
    """Call an eager or TorchScript module with a feed, its flattened outputs as arrays. Absent state inputs are
    zeros, as in the runtime."""
    feed = complete(io, feed)
    leaves = [torch.from_numpy(feed[spec.name]) for spec in io.inputs]
    with torch.no_grad():
        return [t.detach().numpy() for t in flat_outputs(module(*unflatten(structure, leaves)))]


def torch_backend(module: Callable, io: IOSpec, structure: Structure,
                  guard: AttributeGuard | None = None) -> Callable[[Feed], Feed]:
    """``call_module`` with the outputs named; with ``guard``, every call starts from the saved attributes."""
    def call(feed: Feed) -> Feed:
        if guard is not None:
            guard.restore(module)
        out = call_module(module, io, structure, feed)
        if len(out) != len(io.outputs):
            raise SignatureError(f"the module returned {len(out)} tensors, expected {len(io.outputs)} "
                                 f"({[o.name for o in io.outputs]})")
        return {spec.name: a for spec, a in zip(io.outputs, out)}
    return call


class AttributeGuard:
    """Tensor attributes a module's forward may assign (the seed's ``self.hidden = ...``), saved at export time.

    An exported graph is a function of its inputs: it cannot carry ``self.hidden`` from one call to the next, it
    bakes in the value the attribute had at export. So eager and TorchScript are held to the same rule: every
    call starts from the saved values (``restore``), and the caller gets them back when the export is done."""

    def __init__(self, model: torch.nn.Module):
        self.saved = {(path, k): _clone(v) for path, m in model.named_modules() for k, v in vars(m).items()
                      if not k.startswith("_") and _clone(v) is not None}

    def restore(self, model: Any) -> None:
        if isinstance(model, FlatOutputs):
            model = model.module
        for (path, k), v in self.saved.items():
            try:
                setattr(model.get_submodule(path) if path else model, k, _clone(v))
            except (AttributeError, RuntimeError):  # a TorchScript module without that attribute: nothing to reset
                pass

    def changed(self, model: torch.nn.Module) -> list[str]:
        """Attributes whose value differs from the saved one (forward assigned them)."""
        out = []
        for (path, k), v in self.saved.items():
            now = getattr(model.get_submodule(path) if path else model, k, None)
            if not _same(now, v):
                out.append(f"{path + '.' if path else ''}{k}")
        return out


def _clone(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, tuple) and v and all(isinstance(t, torch.Tensor) for t in v):
        return tuple(t.detach().clone() for t in v)
    return None


def _same(a: Any, b: Any) -> bool:
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    return len(a) == len(b) and all(isinstance(x, torch.Tensor) and x.shape == y.shape and torch.equal(x, y)
                                    for x, y in zip(a, b))


@dataclass
class Signature:
    io: IOSpec
    plan: Plan
    structure: Structure
    example: list[torch.Tensor]  # the flattened example arguments, as given
    guard: AttributeGuard  # attributes forward assigns, reset before every torch call
    notes: list[str] = field(default_factory=list)  # what was inferred, for the manifest


def infer(model: torch.nn.Module, args: Any, input_names: list[str], axes: dict[str, dict[int, str]],
          output_names: list[str] | None, lengths: str | None, state: dict[str, str] | None,
          custom: Callable | None = None, guard: AttributeGuard | None = None) -> Signature:
    """Check the caller's description of ``model`` against its example and learn the rest by running it."""
    leaves, structure = flatten(args)
    names = list(input_names)
    if len(names) != len(leaves):
        raise SignatureError(f"input_names: expected {len(leaves)} names (one per flattened tensor of args), "
                             f"got {len(names)}: {names}")
    if len(set(names)) != len(names):
        raise SignatureError(f"input_names: expected distinct names, got {names}")
    unknown = sorted(set(axes) - set(names))
    if unknown:
        raise SignatureError(f"axes: unknown input(s) {unknown}: expected names from {names}")
    example_sizes: dict[str, tuple[str, int]] = {}  # symbol -> (first input, size)
    inputs = []
    for name, t in zip(names, leaves):
        if t.dtype not in DTYPES:
            raise SignatureError(f"input {name!r}: dtype {t.dtype} is not supported: expected one of "
                                 f"{sorted(DTYPES.values())}")
        shape: list[int | str] = list(t.shape)
        for axis, sym in (axes.get(name) or {}).items():
            if not isinstance(axis, int) or not -t.dim() <= axis < t.dim():
                raise SignatureError(f"axes[{name!r}]: axis {axis!r} out of range for a tensor of shape "
                                     f"{tuple(t.shape)}")
            if not isinstance(sym, str) or not sym or "*" in sym or "/" in sym:
                raise SignatureError(f"axes[{name!r}][{axis}]: expected a symbol name (e.g. 'time'), got {sym!r}")
            size = int(t.shape[axis])
            first = example_sizes.setdefault(sym, (name, size))
            if first[1] != size:
                raise SignatureError(f"axis {sym!r}: input {first[0]!r} has size {first[1]} in the example, "
                                     f"input {name!r} has {size}; one symbol must have one size")
            shape[axis] = sym
        inputs.append(TensorSpec(name, DTYPES[t.dtype], tuple(shape)))
    symbols = {s: n for s, (_, n) in example_sizes.items()}
    if lengths is not None:
        _check_lengths(lengths, names, leaves, inputs, symbols)
    if state:
        bad = sorted(set(state) - set(names))
        if bad:
            raise SignatureError(f"state: unknown input(s) {bad}: expected names from {names}")

    plan = Plan.from_example(inputs, leaves, symbols, lengths)
    io = IOSpec(inputs=tuple(inputs), outputs=(), lengths=lengths)
    model.eval()
    guard = guard or AttributeGuard(model)
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    try:
        plan.sizes = _probe_sizes(model, io, structure, plan, custom, guard)
        outputs, notes = _infer_outputs(model, io, structure, plan, output_names, custom, guard)
    finally:
        moved = _restore_buffers(model, buffers)
    if moved:
        raise SignatureError(f"forward changes buffer(s) {moved} in place (a step counter, running statistics): an "
                             f"exported graph cannot carry a buffer from call to call, so after the first call its "
                             f"answers would differ from eager's; keep buffers constant in eval mode, or take the "
                             f"value as an input and return its update as an output (state=)")
    assigned = guard.changed(model)
    if assigned:
        notes.append(f"forward assigns {assigned}: the exported graph cannot carry them between calls; it uses "
                     f"their values at export, and eager and TorchScript are verified starting from them too")
    io = IOSpec(inputs=io.inputs, outputs=outputs, lengths=lengths)
    if state:
        for i, o in state.items():
            if o not in {t.name for t in outputs}:
                raise SignatureError(f"state[{i!r}]: unknown output {o!r}: expected names from "
                                     f"{[t.name for t in outputs]}")
        pairs = tuple(state.items())
        notes.append("state pairs given: " + ", ".join(f"{i} -> {o}" for i, o in pairs))
    else:
        pairs = _detect_state(io, structure, model, plan, custom, guard)
        notes.append("state pairs detected: " + ", ".join(f"{i} -> {o}" for i, o in pairs) if pairs
                     else "no recurrent state pair detected")
    guard.restore(model)
    return Signature(IOSpec(io.inputs, io.outputs, pairs, lengths), plan, structure, leaves, guard, notes)


def _restore_buffers(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> list[str]:
    """Put the module's buffers back as ``saved``; the names of those forward had changed in place."""
    moved = []
    with torch.no_grad():
        for name, b in model.named_buffers():
            old = saved.get(name)
            if old is not None and not (b.shape == old.shape and torch.equal(b, old)):
                moved.append(name)
                if b.shape == old.shape:
                    b.copy_(old)
    return moved


def _check_lengths(name: str, names: list[str], leaves: list[torch.Tensor], inputs: list[TensorSpec],
                   symbols: dict[str, int]) -> None:
    if name not in names:
        raise SignatureError(f"lengths: unknown input {name!r}: expected one of {names}")
    t, spec = leaves[names.index(name)], inputs[names.index(name)]
    if spec.dtype not in ("int64", "int32") or spec.shape != (BATCH,):
        raise SignatureError(f"lengths: input {name!r} must be integer with shape ('batch',) (one valid length "
                             f"per sequence), got {spec.dtype} {spec.shape}")
    if TIME not in symbols:
        raise SignatureError(f"lengths: no input has a 'time' axis for {name!r} to count along")
    if t.numel() and (int(t.min()) < 1 or int(t.max()) > symbols[TIME]):
        raise SignatureError(f"lengths: example {name!r} must hold values in [1, {symbols[TIME]}] (the example's "
                             f"time), got {t.tolist()}")


def _runs(model, io, structure, plan, sizes, custom, guard, seed=0) -> list[np.ndarray] | Exception:
    feed = make_feed(io, plan, sizes, seed=seed, custom=custom)
    guard.restore(model)
    try:
        return call_module(model, io, structure, feed)
    except Exception as e:  # the user's module refusing a size is an answer, not a crash
        return e


def _probe_sizes(model, io, structure, plan, custom, guard) -> dict[str, list[int]]:
    """Sizes each symbol is verified at: time 1, 2, T, 3T, 256; batch 1, 3; any other symbol at the example and
    at the sizes among ``OTHER_SIZES`` that eager accepts (a conv front-end refuses too narrow an image)."""
    sizes: dict[str, list[int]] = {}
    for sym, ex in plan.example.items():
        if sym == TIME:
            sizes[sym] = sorted({1, 2, ex, 3 * ex, max(LONG, ex)})
        elif sym == BATCH:
            sizes[sym] = list(BATCHES)
        elif custom is None:
            candidates = sorted({c if isinstance(c, int) else max(1, int(round(c * ex))) for c in OTHER_SIZES} - {ex})
            accepted = [n for n in candidates
                        if not isinstance(_runs(model, io, structure, plan, {**plan.example, sym: n}, custom, guard), Exception)]
            if not accepted:
                raise SignatureError(f"axis {sym!r}: the eager module accepts only the example's size {ex} (tried "
                                     f"{candidates}); declare the axis fixed or give an example it can vary from")
            sizes[sym] = sorted({ex, *accepted})
    return sizes


def _infer_outputs(model, io, structure, plan, output_names, custom, guard) -> tuple[tuple[TensorSpec, ...], list[str]]:
    """Each output's dtype and axes, from eager at the example's sizes and at two other sizes per symbol."""
    probes: list[dict[str, int]] = [dict(plan.example)]
    for sym, ex in plan.example.items():
        others = [n for n in plan.sizes.get(sym, []) if n != ex]
        if sym in (TIME, BATCH):
            others = [ex + 2, 2 * ex + 3]  # odd sizes no other symbol is likely to have
        for n in others[-2:]:
            probes.append({**plan.example, sym: n})
    results = []
    for sizes in probes:
        out = _runs(model, io, structure, plan, sizes, custom, guard, seed=len(results))
        if isinstance(out, SignatureError):  # it ran, and returned what no exported graph can (an int, a str)
            raise SignatureError(f"forward returns what no exported graph can: {out}") from out
        if isinstance(out, Exception):
            where = ", ".join(f"{k}={v}" for k, v in sizes.items())
            raise SignatureError(f"the eager module fails at {where}: {type(out).__name__}: {out}") from out
        results.append((sizes, out))
        if len(results) == 1:
            _check_deterministic(model, io, structure, plan, custom, guard, out)
    first = results[0][1]
    names = list(output_names) if output_names is not None else [f"output_{i}" for i in range(len(first))]
    if len(names) != len(first):
        raise SignatureError(f"output_names: expected {len(first)} names (one per flattened output tensor), got "
                             f"{len(names)}: {names}")
    if len(set(names)) != len(names) or set(names) & {t.name for t in io.inputs}:
        raise SignatureError(f"output_names: expected distinct names, none an input's, got {names}")
    order = _symbol_order(io)
    outputs, notes = [], []
    for i, name in enumerate(names):
        arr = first[i]
        dtype = arr.dtype.name
        if dtype not in DTYPES.values():
            raise SignatureError(f"output {name!r}: dtype {arr.dtype} is not supported (float32, int64, int32, bool)")
        shapes = [(sizes, out[i].shape) for sizes, out in results]
        if len({len(s) for _, s in shapes}) != 1:
            raise SignatureError(f"output {name!r}: its rank changes with the input sizes: {[s for _, s in shapes]}")
        dims = []
        for axis in range(arr.ndim):
            points = [(sizes, s[axis]) for sizes, s in shapes]
            dim = _axis_expression(points, order)
            if isinstance(dim, str) and dim not in plan.example:
                notes.append(f"output {name!r} axis {axis} is {dim!r} (derived from the input sizes)")
            dims.append(dim)
        outputs.append(TensorSpec(name, dtype, tuple(dims)))
    return tuple(outputs), notes


# Operators that draw random numbers: in a forward, they make two identical calls give different outputs.
_RANDOM = {"rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "randperm", "normal", "bernoulli",
           "multinomial", "poisson", "normal_", "uniform_", "bernoulli_", "random_", "exponential_", "cauchy_",
           "log_normal_", "geometric_"}


def _check_deterministic(model, io, structure, plan, custom, guard, first: list[np.ndarray]) -> None:
    """Refuse a forward whose outputs differ between two identical calls, naming where it draws random numbers
    (a BiLSTM-CRF's ``init_hidden`` returning ``torch.randn`` state): no exported graph can be verified against it."""
    before = {n: b.detach().clone() for n, b in model.named_buffers()}
    again = _runs(model, io, structure, plan, dict(plan.example), custom, guard, seed=0)
    moved = _restore_buffers(model, before)
    if isinstance(again, Exception):
        return  # failing the second time is the same module failing: the probes that follow report it
    differ = [(i, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.shape == b.shape else None)
              for i, (a, b) in enumerate(zip(first, again)) if not np.array_equal(a, b, equal_nan=True)]
    if not differ:
        return
    i, d = differ[0]
    if moved:
        raise SignatureError(f"forward changes buffer(s) {moved} in place, so two identical calls give other "
                             f"outputs (output[{i}]): an exported graph cannot carry a buffer from call to call; keep "
                             f"buffers constant in eval mode, or take the value as an input and return its update "
                             f"as an output (state=)")
    places = _random_places(model, io, structure, plan, custom, guard)
    where = (f"it draws random numbers at {'; '.join(places)}" if places else
             "no random operator was seen (is state kept between calls, or a dropout left in training mode?)")
    raise SignatureError(f"forward gives other outputs on two identical calls (output[{i}] differs by "
                         f"{'a shape' if d is None else f'up to {d:.3g}'}): {where}. An exported graph must give "
                         f"eager's answers: make forward deterministic in eval mode, e.g. start the state at zeros "
                         f"or take it as an input")


def _random_places(model, io, structure, plan, custom, guard) -> list[str]:
    """The user's source lines that called a random operator while forward ran on the example."""
    import linecache
    import traceback
    from torch.overrides import TorchFunctionMode

    torch_dir = str(Path(torch.__file__).resolve().parent)
    own = str(Path(__file__).resolve().parent) + "/"
    found: list[str] = []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in _RANDOM:
                for frame in reversed(traceback.extract_stack()[:-1]):
                    path = str(Path(frame.filename).resolve())
                    if not path.startswith(torch_dir) and (not path.startswith(own) or "/zoo/" in path):
                        code = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
                        found.append(f"{frame.filename}:{frame.lineno} `{code}` (torch.{func.__name__})")
                        break
            return func(*args, **(kwargs or {}))

    with Watch():
        _runs(model, io, structure, plan, dict(plan.example), custom, guard, seed=0)
    return list(dict.fromkeys(found))


def _symbol_order(io: IOSpec) -> list[str]:
    order: list[str] = []
    for spec in io.inputs:
        order += [d for d in spec.shape if isinstance(d, str) and d not in order]
    return order


def _axis_expression(points: list[tuple[dict[str, int], int]], order: list[str]) -> int | str:
    """The size of one output axis as a function of the symbols: a constant, a symbol, a product of symbols in
    input order (``time*batch``), or a symbol over/plus a constant (``width/4``, ``time+1``)."""
    values = {v for _, v in points}
    if len(values) == 1:
        return values.pop()
    for r in range(1, len(order) + 1):
        for combo in itertools.combinations(order, r):
            if all(v == int(np.prod([s[c] for c in combo])) for s, v in points):
                return "*".join(combo)
    moving = [sym for sym in order if len({s[sym] for s, _ in points}) > 1
              and any(v != points[0][1] for s, v in points if s[sym] != points[0][0][sym])]
    if len(moving) == 1:
        sym = moving[0]
        for k in range(1, 33):
            for c in range(-16, 17):
                if all(v == s[sym] // k + c for s, v in points):
                    name = sym if k == 1 else f"{sym}/{k}"
                    return name if c == 0 else f"{name}{c:+d}"
    return "dim_" + "_".join(moving or order)


def _detect_state(io: IOSpec, structure, model, plan: Plan, custom, guard: AttributeGuard) -> tuple[tuple[str, str], ...]:
    """(input, output) pairs where the output is the input after the sequence: same dtype and axes, no time
    axis, and running the example in two halves (the second from the first's outputs) equals running it whole."""
    if io.lengths is not None or plan.example.get(TIME, 0) < 2:
        return ()
    cand_in = [t for t in io.inputs if t.dtype == "float32" and TIME not in t.shape]
    cand_out = [t for t in io.outputs if t.dtype == "float32" and TIME not in t.shape]
    groups = []
    for spec in cand_in:
        outs = [o.name for o in cand_out if o.shape == spec.shape]
        if outs:
            groups.append((spec.name, outs))
    if not groups:
        return ()
    feed = make_feed(io, plan, plan.example, seed=7, custom=custom)
    run = torch_backend(model, io, structure, guard)
    timed = [t for t in io.inputs if TIME in t.shape]
    if not timed:
        return ()
    whole = run(feed)
    half = plan.example[TIME] // 2
    first = run({**feed, **{t.name: _time_slice(feed[t.name], t, 0, half) for t in timed}})
    tried = 0
    for choice in itertools.product(*[outs for _, outs in groups]):
        if len(set(choice)) != len(choice):
            continue
        tried += 1
        if tried > 24:
            break
        pairs = tuple((i, o) for (i, _), o in zip(groups, choice))
        second = run({**feed, **{t.name: _time_slice(feed[t.name], t, half, None) for t in timed},
                      **{i: first[o] for i, o in pairs}})
        if all(np.allclose(second[o], whole[o], atol=STATE_TOLERANCE, rtol=STATE_TOLERANCE) for _, o in pairs):
            return pairs
    return ()


def _time_slice(arr: np.ndarray, spec: TensorSpec, start: int, stop: int | None) -> np.ndarray:
    index = [slice(None)] * arr.ndim
    index[spec.axis(TIME)] = slice(start, stop)
    return np.ascontiguousarray(arr[tuple(index)])
