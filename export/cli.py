"""``python -m export --module FILE.py:FACTORY ...``: export a user's own module from the command line.

The module comes from the user's code (a factory or class called with ``--kwargs``), its weights from
``--checkpoint`` (``torch.load(weights_only=True)``: tensors only, no pickled code), and its example inputs from
short specs, one per flattened forward argument, in order:

    NAME:DTYPE[DIMS][:LOW..HIGH]      e.g.  input:int64[time=35,batch=4]:0..9999   h_0:float32[2,batch=4,200]

DIMS are sizes, ``SYMBOL=SIZE`` for a dynamic axis (its example size). Float inputs are standard normal,
integer inputs uniform in [LOW, HIGH] (required: the valid ids), the ``--lengths`` input valid lengths in
[1, time], longest first. ``--args`` nests them as forward takes them, e.g. ``"input, (h_0, c_0)"``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ExportError, UsageError, WriteError
from .write import check_writable

# torch and numpy are imported where the work starts (``run``): the command line is parsed and checked, and its
# usage errors answered, without them (importing torch takes seconds).

_SPEC = re.compile(r"^(?P<name>[A-Za-z_][\w.]*):(?P<dtype>float32|int64|int32|bool)\[(?P<dims>[^\]]*)\]"
                   r"(?::(?P<low>-?\d+)\.\.(?P<high>-?\d+))?$")
MAX_RANK = 16  # torch takes at most 64 dimensions; no recurrent model's input has more than a few
MAX_EXAMPLE_ELEMENTS = 2**26  # 256 MB of float32: an example is a small batch of short sequences
_INT_RANGES = {"int64": (-2**63, 2**63 - 1), "int32": (-2**31, 2**31 - 1)}


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    axes: dict[int, str]
    low: int | None = None
    high: int | None = None


def parse_input(text: str) -> InputSpec:
    m = _SPEC.match(text.replace(" ", ""))
    if not m:
        raise UsageError(f"--input {text!r}: expected NAME:DTYPE[DIMS][:LOW..HIGH], e.g. "
                         f"'input:int64[time=35,batch=4]:0..9999' or 'h_0:float32[2,batch=4,200]' "
                         f"(DTYPE float32, int64, int32 or bool)")
    shape, axes = [], {}
    dims = [d for d in m["dims"].split(",") if d]
    if len(dims) > MAX_RANK:
        raise UsageError(f"--input {text!r}: rank {len(dims)}: expected at most {MAX_RANK} dimensions")
    for i, dim in enumerate(dims):
        sym, _, size = dim.rpartition("=")
        if not re.fullmatch(r"[0-9]{1,12}", size) or int(size) < 1 or (sym and not sym.isidentifier()):
            raise UsageError(f"--input {text!r}: dimension {dim!r}: expected a size >= 1 (digits 0-9) or "
                             f"SYMBOL=SIZE")
        shape.append(int(size))
        if sym:
            axes[i] = sym
    if math.prod(shape) > MAX_EXAMPLE_ELEMENTS:
        raise UsageError(f"--input {text!r}: {math.prod(shape):,} elements: an example needs few "
                         f"(at most {MAX_EXAMPLE_ELEMENTS:,}); verification varies the dynamic axes itself")
    low, high = (int(m["low"]), int(m["high"])) if m["low"] is not None else (None, None)
    if low is not None and low > high:
        raise UsageError(f"--input {text!r}: range {low}..{high} is empty")
    if low is not None and m["dtype"] in ("int64", "int32"):
        least, most = _INT_RANGES[m["dtype"]]
        if low < least or high > most:
            raise UsageError(f"--input {text!r}: range {low}..{high} does not fit {m['dtype']} ([{least}, {most}])")
    return InputSpec(m["name"], m["dtype"], tuple(shape), axes, low, high)


def example_tensor(spec: InputSpec, lengths: str | None, time: int | None, rng):
    """The example tensor for one --input spec, drawn from ``rng`` (a numpy Generator)."""
    import numpy as np
    import torch
    if spec.name == lengths:
        if time is None or len(spec.shape) != 1:
            raise UsageError(f"--lengths {lengths}: expected a rank-1 input and another input with a 'time' axis")
        values = np.sort(rng.integers(1, time + 1, size=spec.shape))[::-1].copy()
        values[0] = time
        return torch.from_numpy(values.astype(spec.dtype))
    if spec.dtype in ("int64", "int32"):
        if spec.low is None:
            raise UsageError(f"--input {spec.name}: integer inputs need their valid range, e.g. "
                             f"'{spec.name}:{spec.dtype}[...]:0..9999'")
        values = rng.integers(spec.low, spec.high + 1, size=spec.shape)
        if values.size >= 2:  # the plan draws over the example's range: make it the whole given range
            values.flat[0], values.flat[-1] = spec.low, spec.high
        return torch.from_numpy(values.astype(spec.dtype))
    if spec.dtype == "bool":
        return torch.from_numpy(rng.random(spec.shape) < 0.5)
    return torch.from_numpy(rng.standard_normal(spec.shape, dtype=np.float32))


def nest(structure: str | None, names: list[str]):
    """``"input, (h_0, c_0)"`` -> ("input", ("h_0", "c_0")); every input exactly once, in order."""
    if not structure:
        return tuple(names)
    try:
        tree = ast.parse(f"({structure},)", mode="eval").body
    except SyntaxError:
        raise UsageError(f"--args {structure!r}: expected names and parentheses, e.g. 'input, (h_0, c_0)'") from None

    def walk(node):
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Tuple):
            return tuple(walk(e) for e in node.elts)
        raise UsageError(f"--args {structure!r}: expected names and parentheses, e.g. 'input, (h_0, c_0)'")

    nested = walk(tree)
    flat = []

    def leaves(x):
        if isinstance(x, str):
            flat.append(x)
        else:
            for e in x:
                leaves(e)
    leaves(nested)
    if flat != names:
        raise UsageError(f"--args {structure!r}: expected the --input names in their order, {names}, got {flat}")
    return nested


def load_factory(target: str):
    """``path/to/file.py:NAME`` or ``package.module:NAME`` -> the object NAME (runs that file's code)."""
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise UsageError(f"--module {target!r}: expected FILE.py:NAME or package.module:NAME")
    if where.endswith(".py"):
        path = Path(where).resolve()
        if not path.is_file():
            raise UsageError(f"--module {target!r}: no file {path}")
        sys.path.insert(0, str(path.parent))  # the user's file may import its neighbours
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's file failed to import: its error, in one line
            raise UsageError(f"--module {target!r}: running {path} failed: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:  # ImportError, or the package's own code failing
            raise UsageError(f"--module {target!r}: cannot import {where}: {type(e).__name__}: {e}") from None
    if not hasattr(module, attr):
        raise UsageError(f"--module {target!r}: {where} has no {attr!r}")
    return getattr(module, attr)


def load_weights(model, path: Path) -> None:
    """Into the torch.nn.Module ``model``: a state_dict, or a checkpoint dict holding one under state_dict /
    model_state_dict / model."""
    import torch
    if path.is_dir():
        raise UsageError(f"--checkpoint {path}: is a folder, expected a checkpoint file (torch.save)")
    if path.exists() and not path.is_file():
        raise UsageError(f"--checkpoint {path}: not a regular file (a FIFO or a device), expected a checkpoint file")
    if not path.is_file():
        raise UsageError(f"--checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch.load's errors for non-checkpoints and refused pickles vary
        raise ExportError(f"--checkpoint {path}: cannot load it with torch.load(weights_only=True): "
                          f"{' '.join(str(e).split())[:300]}") from None
    if isinstance(ckpt, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ExportError(f"--checkpoint {path}: expected a state_dict (names -> tensors), got {type(ckpt).__name__}")
    try:
        missing, unexpected = model.load_state_dict(ckpt, strict=False)
    except RuntimeError as e:  # tensors whose shapes do not fit: torch lists them, one per line
        lines = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        raise ExportError(f"--checkpoint {path}: does not fit the module: "
                          + ("; ".join(lines[:3]) + (f" (and {len(lines) - 3} more)" if len(lines) > 3 else "")
                             if lines else " ".join(str(e).split())[:300])) from None
    if missing or unexpected:
        raise ExportError(f"--checkpoint {path}: does not fit the module: missing {list(missing)[:8]}, "
                          f"unexpected {list(unexpected)[:8]}")


@dataclass(frozen=True)
class Request:
    """A --module command line, checked: its input specs, how forward nests them, --kwargs and --state."""
    specs: list[InputSpec]
    structure: tuple
    kwargs: dict
    state: dict[str, str]


def check(args: argparse.Namespace) -> Request:
    """Every check of a --module command line that needs neither torch nor the user's code: UsageError (exit 2) or
    WriteError (exit 1), before any work."""
    specs = [parse_input(s) for s in args.inputs]
    if not specs:
        raise UsageError("--module needs one --input per flattened forward argument")
    structure = nest(args.args, [s.name for s in specs])
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as e:
        raise UsageError(f"--kwargs: not a JSON object: {e}") from None
    if not isinstance(kwargs, dict):
        raise UsageError(f"--kwargs: expected a JSON object, got {type(kwargs).__name__}")
    state = {}
    for pair in args.state:
        i, sep, o = pair.partition("=")
        if not sep or not i or not o:
            raise UsageError(f"--state {pair!r}: expected IN=OUT, e.g. h_0=h_n")
        state[i] = o
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: expected a folder, got a file")
    if os.path.exists(args.out) and not args.force:  # as for a registered model: exit 2 at once, not after the work
        raise UsageError(f"{args.out} exists; pass --force to replace")
    check_writable(args.out.parent, f"--out {args.out}")  # WriteError: "--out DIR: cannot write there (...)"
    return Request(specs, structure, kwargs, state)


def run(args: argparse.Namespace, request: Request, table) -> int:
    """Export the module the checked command line names into ``--out``; print the parity table. Exit status."""
    import numpy as np
    import torch

    from runtime.artifact import read_manifest
    from .api import export_module

    specs, kwargs = request.specs, request.kwargs
    try:
        time_size = next((s.shape[a] for s in specs for a, sym in s.axes.items() if sym == "time"), None)
        rng = np.random.default_rng(0)
        tensors = {s.name: example_tensor(s, args.lengths, time_size, rng) for s in specs}
        example = _build(request.structure, tensors)
        factory = load_factory(args.module)
        try:
            model = factory(**kwargs)
        except Exception as e:  # the user's constructor: its error, in one line
            raise UsageError(f"--module {args.module}: calling it with --kwargs {json.dumps(kwargs)} failed: "
                             f"{type(e).__name__}: {e}") from None
        if not isinstance(model, torch.nn.Module):
            raise UsageError(f"--module {args.module}: expected it to return a torch.nn.Module, got "
                             f"{type(model).__name__}")
        if args.checkpoint:
            load_weights(model, args.checkpoint)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory building the example inputs: give smaller --input sizes", file=sys.stderr)
        return 1
    started = time.perf_counter()
    try:
        folder = export_module(model, example, args.out, [s.name for s in specs], {s.name: s.axes for s in specs if s.axes},
                               output_names=args.output_names.split(",") if args.output_names else None,
                               lengths=args.lengths, state=request.state or None, int8=args.int8, force=args.force,
                               exporter=args.exporter, formats=args.formats, pte_batch=args.pte_batch,
                               portable=args.portable, log=lambda m: print(m, file=sys.stderr, flush=True))
    except WriteError as e:  # names the folder already: "DIR: not written: No space left on device ..."
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ExportError as e:
        print(f"error: {args.out}: not written: {e}", file=sys.stderr)
        return 1
    m = read_manifest(folder)
    p = m.parity
    table(["artifact", "exporter", "comparisons", "max abs diff", "stepping", "padded", "other runtimes", "status"],
          [(str(folder), f"{m.export['exporter']} ({m.export['onnx_path']})", str(p["comparisons"]),
            f"{p['max_abs_diff']:.1e}", _yes(p["stepping_equals_whole"]), _yes(p["padded_equals_alone"]),
            runtimes_cell(p), f"ok {time.perf_counter() - started:.1f}s")])
    return 0


def runtimes_cell(parity: dict) -> str:
    """'3/3 agree', or e.g. '2/3 agree, tract refused': the other ONNX runtimes, for the parity table."""
    others = {k: v["status"] for k, v in parity.get("runtimes", {}).items() if v["status"] != "reference"}
    agree = sum(s == "agrees" for s in others.values())
    rest = ", ".join(f"{k} {s}" for k, s in others.items() if s != "agrees")
    return f"{agree}/{len(others)} agree" + (f", {rest}" if rest else "")


def _build(structure, tensors):
    if isinstance(structure, str):
        return tensors[structure]
    return tuple(_build(s, tensors) for s in structure)


def _yes(value) -> str:
    return "-" if value is None else "ok" if value else "FAIL"
