"""Why an axis stopped being dynamic: the places in the user's code where tracing recorded an example size.

Tracing runs forward once and records what happened: ``x.view(len(sentence), 1, -1)`` becomes a view to the
constant 5, a Python loop ``for t in range(x.size(0))`` becomes 5 copies of its body. Both pin the axis to
the example's size. The traced graph keeps each node's Python call stack, so the constant (or the repeated
operator) can be named with the file and line that made it.
"""

from __future__ import annotations

import linecache
import re
import warnings
from collections import Counter
from pathlib import Path

import torch

from runtime.artifact import IOSpec
from .convert import fresh_jit_state, quiet_export_tools
from .verify import Diff

_TORCH_DIR = str(Path(torch.__file__).parent)
_OWN_DIR = str(Path(__file__).resolve().parent) + "/"  # seqedge's own wrappers (the zoo's models are users')
_FRAME = re.compile(r"^(.*)\((\d+)\): (\S+)$")


def _user_frame(node) -> tuple[str, int] | None:
    """The innermost frame of ``node``'s call stack that is not inside torch: (file, line)."""
    for line in (node.sourceRange() or "").splitlines():
        m = _FRAME.match(line.strip())
        if m and not m.group(1).startswith(_TORCH_DIR) and not m.group(1).startswith("<"):
            return m.group(1), int(m.group(2))
    return None


def _innermost(node) -> tuple[str, int] | None:
    """The innermost frame of ``node``'s call stack, wherever it is."""
    for line in (node.sourceRange() or "").splitlines():
        m = _FRAME.match(line.strip())
        if m:
            return m.group(1), int(m.group(2))
    return None


def _where(frame: tuple[str, int]) -> str:
    path, line = frame
    code = linecache.getline(path, line).strip()
    return f"{path}:{line}" + (f" `{code}`" if code else "")


def pinned_places(model: torch.nn.Module, args: tuple, example: dict[str, int], symbols: list[str]) -> list[str]:
    """Where tracing ``model`` on ``args`` wrote the example size of one of ``symbols`` into the graph."""
    sizes: dict[int, list[str]] = {}
    for s in symbols:
        if example.get(s, 0) >= 2:  # sizes 0 and 1 are everywhere (dims, steps); they name nothing
            sizes.setdefault(example[s], []).append(s)
    if not sizes:
        return []
    try:
        with quiet_export_tools(), fresh_jit_state(), torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", torch.jit.TracerWarning)
            graph = torch.jit.trace(model, args, check_trace=False).inlined_graph
    except Exception:  # the diagnosis is a courtesy: a model that cannot be traced has told its error already
        return []
    found = _python_values(caught)
    repeated: Counter = Counter()
    for node in graph.nodes():
        frame = _user_frame(node)
        if frame is None:
            continue
        if node.kind() == "prim::Constant":
            value = node.output().toIValue() if node.output().type().kind() == "IntType" else None
            users = {_consumer(u.user) for u in node.output().uses()}
            if value in sizes and users and not users <= _DIM_ARGUMENTS:
                found.append(f"{'/'.join(sizes[value])} = {value} written as a constant into "
                             f"{', '.join(sorted(users))} at {_where(frame)}")
        elif node.kind() == "aten::unbind" and any(
                u.user.kind() == "prim::ListUnpack" and len(list(u.user.outputs())) in sizes
                for u in node.output().uses()):
            n = next(len(list(u.user.outputs())) for u in node.output().uses() if u.user.kind() == "prim::ListUnpack")
            found.append(f"unbind splits {'/'.join(sizes[n])} = {n} into a Python list at {_where(frame)}: the loop "
                         f"over it is unrolled by tracing")
        elif not node.kind().startswith("prim::") and _innermost(node) == frame:
            repeated[(node.kind(), frame)] += 1  # a library's own repeats (nn.LSTM's zeros per state) are not loops
    loops: dict[tuple, list[str]] = {}  # (frame, count) -> operators repeated that often from that line
    for (kind, frame), n in repeated.items():
        size = n if n in sizes else next((z for z in sizes if z >= 3 and n % z == 0 and n // z <= 8), None)
        if size is not None:  # n = k * size: the loop's body ran once per step in each of k calls (layers)
            loops.setdefault((frame, n, size), []).append(kind)
    for (frame, n, size), kinds in loops.items():
        times = f"{n} times" if n == size else f"{n} times ({n // size} x {'/'.join(sizes[size])}={size})"
        found.append(f"{', '.join(kinds[:4])}{' ...' if len(kinds) > 4 else ''} ran {times} from {_where(frame)}: "
                     f"a Python loop over {'/'.join(sizes[size])} unrolled by tracing")
    return list(dict.fromkeys(found))


# Operators whose integer arguments are axis numbers, never sizes: x.size(2), x.permute(2, 0, 1), softmax(x, 2).
_DIM_ARGUMENTS = {f"aten::{op}" for op in ("size", "permute", "transpose", "softmax", "log_softmax", "unsqueeze",
                                           "squeeze", "flatten", "cat", "stack", "unbind", "chunk", "split", "flip")}

# TracerWarnings that say a tensor became a Python value, by the phrase that starts each, and what that does.
_CONVERSIONS = {"to a Python number": "a tensor turned into a Python number (.item(), int(t), float(t))",
                "to a Python list": "a tensor turned into a Python list (.tolist())",
                "to a Python boolean": "a tensor turned into a Python bool (if t ...)",
                "to a Python integer": "a tensor turned into a Python int",
                "Iterating over a tensor": "a Python loop over a tensor's elements"}


def _python_values(caught) -> list[str]:
    """The user's lines where tracing turned a tensor into a Python value: tracing records that value as a
    constant, so a per-sample loop over lengths, or a branch on a tensor, runs as it did on the example."""
    found = []
    for w in caught:
        what = next((v for k, v in _CONVERSIONS.items() if k in str(w.message)), None)
        if what and _users(w.filename):
            found.append(f"{what} at {_where((w.filename, w.lineno))}: tracing records the example's value as a "
                         f"constant, so the code that depends on it runs as it did on the example")
    return list(dict.fromkeys(found))


def _users(path: str) -> bool:
    """Whether ``path`` is the user's code: not torch's, not seqedge's own wrappers (the zoo's models are users')."""
    resolved = str(Path(path).resolve())
    if path.startswith(_TORCH_DIR) or resolved.startswith(str(Path(_TORCH_DIR).resolve())) or path.startswith("<"):
        return False
    return not resolved.startswith(_OWN_DIR) or resolved.startswith(_OWN_DIR + "zoo/")


def _consumer(node) -> str:
    """The operator a constant feeds, looking through the list that gathers a shape's dimensions."""
    if node.kind() == "prim::ListConstruct":
        kinds = {u.user.kind() for u in node.output().uses()}
        return "/".join(sorted(kinds)) or node.kind()
    return node.kind()


def declared_pins(onnx_path, io: IOSpec, example: dict[str, int]) -> dict[str, str]:
    """Axes onnxruntime infers as a fixed size where the IO has a symbol (it refuses such a graph at load): one
    line for each, mapped to the symbol it pins."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception:  # a graph onnxruntime cannot load at all says nothing about pinned axes
        return {}
    lines = {}
    declared = {t.name: t.shape for t in list(session.get_inputs()) + list(session.get_outputs())}
    for spec in io.inputs + io.outputs:
        for sym, got in zip(spec.shape, declared.get(spec.name, ())):
            if isinstance(sym, str) and isinstance(got, int):
                ins = [t.name for t in io.inputs if sym in t.shape]
                pinned = " (the example's size)" if example.get(sym) == got else ""
                lines[f"axis {sym!r} is pinned to {got}{pinned}: inputs {ins}; {spec.name!r} is inferred as "
                      f"{tuple(declared[spec.name])}"] = sym
    return lines


def suspect_symbols(diffs: list[Diff], example: dict[str, int]) -> list[str]:
    """Symbols that differ from the example in every failing case (the example itself passing)."""
    failing = [d.case for d in diffs if not d.ok]
    return [s for s in example if failing and all(c.size(s, example[s]) != example[s] for c in failing)]


def explain(diffs: list[Diff], io: IOSpec, example: dict[str, int], places: list[str]) -> str:
    """One paragraph: which axis is pinned at which size, on which IO, and where."""
    suspects = suspect_symbols(diffs, example)
    if not suspects:
        return ""
    lines = []
    for s in suspects:
        ins = [t.name for t in io.inputs if s in t.shape]
        bad = sorted({d.output for d in diffs if not d.ok and d.output != "-"} or {"(the run itself)"})
        lines.append(f"axis {s!r} is pinned to {example[s]} (the example's size): inputs {ins} work only at "
                     f"{s}={example[s]}; failing outputs: {', '.join(bad)}")
    if places:
        lines += [f"  {p}" for p in places]
    else:
        lines.append("  (no constant equal to the example's size was found in the traced graph)")
    return "\n".join(lines)
