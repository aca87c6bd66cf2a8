"""Why an axis stopped being dynamic: the places in the user's code where tracing recorded an example size.

Tracing runs forward once and records what happened: ``x.view(len(sentence), 1, -1)`` becomes a view to the
constant 5, a Python loop ``for t in range(x.size(0))`` becomes 5 copies of its body. Both pin the axis to
the example's size. The traced graph keeps each node's Python call stack, so the constant (or the repeated
operator) can be named with the file and line that made it.
"""

from __future__ import annotations

import linecache
import re
from collections import Counter
from pathlib import Path

import torch

from runtime.artifact import IOSpec
from .convert import fresh_jit_state, quiet_export_tools
from .verify import Diff

_TORCH_DIR = str(Path(torch.__file__).parent)
_FRAME = re.compile(r"^(.*)\((\d+)\): (\S+)$")


def _user_frame(node) -> tuple[str, int] | None:
    """The innermost frame of ``node``'s call stack that is not inside torch: (file, line)."""
    for line in (node.sourceRange() or "").splitlines():
        m = _FRAME.match(line.strip())
        if m and not m.group(1).startswith(_TORCH_DIR) and not m.group(1).startswith("<"):
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
        with quiet_export_tools(), fresh_jit_state(), torch.no_grad():
            graph = torch.jit.trace(model, args, check_trace=False).inlined_graph
    except Exception:  # the diagnosis is a courtesy: a model that cannot be traced has told its error already
        return []
    found: list[str] = []
    repeated: Counter = Counter()
    for node in graph.nodes():
        frame = _user_frame(node)
        if frame is None:
            continue
        if node.kind() == "prim::Constant":
            value = node.output().toIValue() if node.output().type().kind() == "IntType" else None
            if value in sizes and node.output().uses():
                users = {_consumer(u.user) for u in node.output().uses()}
                found.append(f"{'/'.join(sizes[value])} = {value} written as a constant into "
                             f"{', '.join(sorted(users))} at {_where(frame)}")
        elif not node.kind().startswith("prim::"):
            repeated[(node.kind(), frame)] += 1
    loops: dict[tuple, list[str]] = {}  # (frame, count) -> operators repeated that often from that line
    for (kind, frame), n in repeated.items():
        if n in sizes:
            loops.setdefault((frame, n), []).append(kind)
    for (frame, n), kinds in loops.items():
        found.append(f"{', '.join(kinds[:4])}{' ...' if len(kinds) > 4 else ''} ran {n} times from {_where(frame)}: "
                     f"a Python loop over {'/'.join(sizes[n])} unrolled by tracing")
    return list(dict.fromkeys(found))


def _consumer(node) -> str:
    """The operator a constant feeds, looking through the list that gathers a shape's dimensions."""
    if node.kind() == "prim::ListConstruct":
        kinds = {u.user.kind() for u in node.output().uses()}
        return "/".join(sorted(kinds)) or node.kind()
    return node.kind()


def declared_pins(onnx_path, io: IOSpec, example: dict[str, int]) -> list[str]:
    """Axes onnxruntime infers as a fixed size where the IO has a symbol (it refuses such a graph at load)."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception:  # a graph onnxruntime cannot load at all says nothing about pinned axes
        return []
    lines = []
    declared = {t.name: t.shape for t in list(session.get_inputs()) + list(session.get_outputs())}
    for spec in io.inputs + io.outputs:
        for sym, got in zip(spec.shape, declared.get(spec.name, ())):
            if isinstance(sym, str) and isinstance(got, int):
                ins = [t.name for t in io.inputs if sym in t.shape]
                pinned = " (the example's size)" if example.get(sym) == got else ""
                lines.append(f"axis {sym!r} is pinned to {got}{pinned}: inputs {ins}; {spec.name!r} is inferred "
                             f"as {tuple(declared[spec.name])}")
    return list(dict.fromkeys(lines))


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
