"""The torch.export route: the module with its recurrent layers in scan form (``scan.py``), exported by
``torch.export`` with a ``Dim`` per declared symbol; from that one program come ``model.pt2``, ``model.pte``
(ExecuTorch) and the ONNX ``Scan`` path.

Measured (torch 2.13.0, executorch 1.5.1):
- ``torch.export.export`` specializes an ``nn.LSTM``'s time axis to the example's length (a named ``Dim`` raises
  "Constraints violated", ``Dim.AUTO`` pins it silently); with the layer in scan form time and batch stay symbolic.
- Non-strict export specializes ``len(sentence)`` (the seeds' ``LSTMTagger``); strict export (dynamo) keeps it
  symbolic. Both are tried, non-strict first, and both outcomes are recorded.
- ``pack_padded_sequence`` cannot be exported at all (its batch sizes are data). While exporting, packing is
  replaced by a padded batch plus lengths (``Packed``), which the scan form reads: the same numbers, no data-
  dependent shape.
- ExecuTorch 1.5.1 keeps only the time axis dynamic: with the batch declared dynamic too every run fails
  (``op_copy.cpp: Check failed (tensor_is_broadcastable_to(src, in))``). So the ``.pte`` is exported again at a
  fixed batch (1 by default: on-device streaming) with time dynamic up to ``PTE_MAX_SIZE``; its memory plan is
  sized for that bound, and a larger size or another batch is refused by ExecuTorch's runtime with an error
  (checked by verification).
- ``torch.export.save`` writes a node's ``from_node`` record with the Python ``id()`` of its graph and stack traces
  with the exporting machine's absolute paths; both are removed or made relative here, so ``model.pt2`` is the same
  bytes from any checkout (like model.pt).
"""

from __future__ import annotations

import contextlib
import inspect
import io as _io
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.utils import rnn as rnn_utils

from runtime.artifact import TIME, IOSpec
from .errors import ExportError
from .feeds import Feed, complete
from .rewrite import RNN_TYPES
from .scan import Packed, scan_recurrent, unsupported

# The .pte's memory plan is sized for each symbol's upper bound (its buffers at their largest shapes); larger inputs
# are refused by ExecuTorch. ``export_module(pte_max=...)`` changes a bound (pos-ewt's spellings need smaller ones).
PTE_MAX_SIZE = 2048
MAX_SIZE = 2**20  # every symbol's upper bound in torch.export's range analysis elsewhere


@dataclass
class Program:
    """One torch.export of the scan form: the ExportedProgram, the call it was made with, what was tried."""

    program: torch.export.ExportedProgram
    strict: bool
    layers: list[str]  # recurrent layers put in scan form
    attempts: list[str] = field(default_factory=list)


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]+\n\s*([^\n]+)')
_TOOLS = (str(Path(torch.__file__).resolve().parent.parent), str(Path(__file__).resolve().parent) + "/")


def first_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one line: its type, the first non-empty line of its message (ANSI colours removed), and the
    user's source line where torch's message quotes one (torch.export's "User stack")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    line = lines[0] if lines else ""
    if line.startswith("Constraints violated") and len(lines) > 1:  # the next line says which guard and why
        line = f"{line.split('!')[0]}: {lines[1].lstrip('- ').split('. If you')[0]}"
    out = f"{type(e).__name__}: {line[:limit]}" if line else type(e).__name__
    frames = [m for m in _FRAME.finditer(text) if not str(Path(m.group(1)).resolve()).startswith(_TOOLS)
              or "/export/zoo/" in m.group(1)]
    if frames:
        where = frames[-1]
        out += f" (at {Path(where.group(1)).name}:{where.group(2)}: {where.group(3).strip()[:120]})"
    return out


def _dims(io: IOSpec, fixed: dict[str, int], largest: dict[str, int], smallest: dict[str, int]) -> dict[str, Any]:
    """A torch.export Dim for every declared input symbol not in ``fixed``, from its smallest verified size (a CRNN's
    width must be at least its convolutions' span: torch.export refuses a range the model cannot take)."""
    dims = {}
    for spec in io.inputs:
        for d in spec.shape:
            if isinstance(d, str) and d not in fixed and d not in dims:
                dims[d] = torch.export.Dim(re.sub(r"\W", "_", d), min=smallest.get(d, 1),
                                           max=largest.get(d, MAX_SIZE))
    return dims


def dynamic_shapes(io: IOSpec, structure, fixed: dict[str, int] | None = None, largest: dict[str, int] | None = None,
                   smallest: dict[str, int] | None = None):
    """``dynamic_shapes`` for torch.export, nested like the example arguments: each input's symbolic axes."""
    from .signature import unflatten

    fixed = fixed or {}
    dims = _dims(io, fixed, largest or {}, smallest or {})
    per_input = [{i: dims[d] for i, d in enumerate(spec.shape) if isinstance(d, str) and d in dims} or None
                 for spec in io.inputs]
    return unflatten(structure, per_input)


@contextlib.contextmanager
def padded_packing(model: torch.nn.Module):
    """While ``model`` is exported, ``pack_padded_sequence`` gives a ``Packed`` (the padded batch and its lengths)
    and ``pad_packed_sequence`` reads one back; the scan form computes on it what torch computes on a
    PackedSequence. Patched in ``torch.nn.utils.rnn`` and wherever the model's own modules bound the functions
    (``from torch.nn.utils.rnn import pack_padded_sequence``); put back afterwards."""
    originals = {"pack_padded_sequence": rnn_utils.pack_padded_sequence,
                 "pad_packed_sequence": rnn_utils.pad_packed_sequence}

    def pack(input, lengths, batch_first=False, enforce_sorted=True):
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device=input.device)
        return Packed(input.transpose(0, 1) if batch_first else input, lengths)

    def pad(sequence, batch_first=False, padding_value=0.0, total_length=None):
        if not isinstance(sequence, Packed):
            return originals["pad_packed_sequence"](sequence, batch_first, padding_value, total_length)
        data, lengths = sequence.data, sequence.lengths  # (T, B, ...), zeros past each length
        if padding_value != 0.0:
            steps = torch.arange(data.size(0), device=data.device).unsqueeze(1)  # (T, 1)
            valid = (steps < lengths.unsqueeze(0)).reshape(data.shape[:2] + (1,) * (data.dim() - 2))
            data = torch.where(valid, data, torch.full_like(data, padding_value))
        if total_length is not None and total_length != data.size(0):  # the same symbol: no padding, no guard
            extra = data.new_full((total_length - data.size(0), *data.shape[1:]), padding_value)
            data = torch.cat([data, extra], dim=0)
        return (data.transpose(0, 1) if batch_first else data), lengths

    replacements = {"pack_padded_sequence": pack, "pad_packed_sequence": pad}
    namespaces = [rnn_utils.__dict__, torch.nn.utils.__dict__]
    for m in model.modules():
        module = sys.modules.get(type(m).__module__)
        if module is not None and module.__dict__ not in namespaces:
            namespaces.append(module.__dict__)
    patched = [(ns, k) for ns in namespaces for k, fn in originals.items() if ns.get(k) is fn]
    for ns, k in patched:
        ns[k] = replacements[k]
    try:
        yield
    finally:
        for ns, k in patched:
            ns[k] = originals[k]


def export_program(model: torch.nn.Module, args: tuple, io: IOSpec, structure, *, fixed: dict[str, int] | None = None,
                   largest: dict[str, int] | None = None, smallest: dict[str, int] | None = None,
                   restore: Callable[[torch.nn.Module], None] | None = None, scan: bool = True) -> Program:
    """torch.export of ``model`` with its recurrent layers in scan form, every declared symbol a Dim from its
    ``smallest`` size (but those in ``fixed``, whose sizes ``args`` has): non-strict first, then strict. Raises
    ExportError naming each attempt. ``scan=False`` exports the module as it is, for a program whose symbols are
    all fixed (the .pte's one-step method: no loop, so XNNPACK takes the whole step)."""
    scanned, layers = scan_recurrent(model) if scan else (model, [])
    shapes = dynamic_shapes(io, structure, fixed, largest, smallest)
    shapes = bound_shapes(scanned, shapes)
    attempts = [f"recurrent layer {name} kept as it is: {why}" for name, m in model.named_modules()
                if scan and isinstance(m, RNN_TYPES) and (why := unsupported(m))]
    for strict in (False, True):
        if restore is not None:
            restore(scanned)
        try:
            with warnings.catch_warnings(), padded_packing(scanned), torch.no_grad(), _quiet_torch_logs():
                warnings.simplefilter("ignore")
                program = torch.export.export(scanned, args, dynamic_shapes=shapes, strict=strict)
        except Exception as e:  # torch.export fails in many ways; the reason is recorded and the next tried
            attempts.append(f"torch.export(strict={strict}): {first_line(e)}")
            continue
        attempts.append(f"torch.export(strict={strict}): ok, "
                        + ("every declared symbol kept" if scan else "as written, every symbol fixed")
                        + (f" (recurrent layers {layers} in scan form)" if layers else ""))
        return Program(program, strict, layers, attempts)
    raise ExportError("torch.export failed: " + "; ".join(attempts))


def bound_shapes(model: torch.nn.Module, shapes: tuple) -> tuple:
    """``dynamic_shapes`` as torch.export binds them to ``model.forward``: a forward(self, *args)
    (signature.FlatOutputs) takes all its arguments as one tuple, so their shapes are one tuple too."""
    params = list(inspect.signature(model.forward).parameters.values())
    varargs = len(params) == 1 and params[0].kind is inspect.Parameter.VAR_POSITIONAL
    return (shapes,) if varargs else shapes


def needs_scan(model: torch.nn.Module) -> str | None:
    """Why the ONNX Scan path should be tried before the others, or None: layers whose ONNX RNN operator form is
    not portable or does not exist. Measured: an ``nn.RNN(nonlinearity='relu')`` exports as an ONNX RNN with a
    ``Relu`` activation, which onnx.reference refuses ("Unknown activation function 'Relu'") and tract answers wrong
    (max diff 0.09-0.4); ``nn.LSTM(proj_size=...)`` has no ONNX LSTM form at all."""
    found = []
    for name, m in model.named_modules():
        if unsupported(m) is not None:
            continue
        if isinstance(m, torch.nn.RNN) and m.nonlinearity == "relu":
            found.append(f"{name or 'model'} is nn.RNN(nonlinearity='relu'), whose ONNX RNN form other runtimes "
                         f"refuse or answer wrong")
        elif isinstance(m, torch.nn.LSTM) and m.proj_size > 0:
            found.append(f"{name or 'model'} is nn.LSTM(proj_size={m.proj_size}), which the ONNX LSTM operator "
                         f"cannot hold")
    return "; ".join(found) or None


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.export logs a failed attempt's whole stack at ERROR level (``torch._guards``) before raising; the
    exception says the same in its first line, which is what gets recorded. Importing ExecuTorch makes torchao log
    the CUDA kernels a CPU build cannot load, and torch's pytree a deprecation: neither concerns an export."""
    import logging

    loggers = [logging.getLogger(name) for name in ("torch", "torchao")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# ---- model.pt2 ---------------------------------------------------------------------------------------------

_PACKAGE = Path(__file__).resolve().parent
_OWN = {f for f in _PACKAGE.glob("*.py")}  # seqedge's rewrites (scan.py, portable.py); not the zoo's models


def _stack_trace(text: str) -> str:
    """A node's stack trace as the same text from any process and checkout: source paths relative to their
    sys.path entry (``torch/nn/modules/rnn.py``), without seqedge's own frames (the scan rewrite's lines would
    otherwise change every artifact's bytes with each edit of export/scan.py; the user's lines are kept)."""
    roots = sorted((str(Path(p).resolve()) + "/" for p in sys.path if p and Path(p).is_dir()), key=len, reverse=True)

    def rel(path: str) -> str:
        root = next((r for r in roots if path.startswith(r)), None)
        return path[len(root):] if root else Path(path).name

    frames, kept = re.split(r"\n(?=\s*File \")", text), []
    for frame in frames:
        match = re.match(r'(\s*)File "(/[^"]+)"', frame)
        if match and Path(match.group(2)).resolve() in _OWN:
            continue
        if match:
            frame = frame[:match.start(2)] + rel(match.group(2)) + frame[match.end(2):]
        kept.append(frame)
    # fx names each generated forward "<eval_with_key>.N", N counting the graphs the process made before
    return re.sub(r"<eval_with_key>\.\d+", "<eval_with_key>", "\n".join(kept))


def save_pt2(program: torch.export.ExportedProgram, path: Path) -> None:
    """``torch.export.save``, the same bytes for the same program from any process and checkout."""
    for gm in program.graph_module.modules():
        if isinstance(gm, torch.fx.GraphModule):
            for node in gm.graph.nodes:
                node.meta.pop("from_node", None)  # holds id(graph): another number in every process
                if isinstance(node.meta.get("stack_trace"), str):
                    node.meta["stack_trace"] = _stack_trace(node.meta["stack_trace"])
    buffer = _io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(program, buffer)
    path.write_bytes(buffer.getvalue())


def load_pt2(path: Path) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.load(str(path)).module()


# ---- model.pte ---------------------------------------------------------------------------------------------

def executorch_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("executorch")
    except Exception:  # not installed (PackageNotFoundError), or a broken install
        return None


EXECUTORCH_MISSING = "executorch is not installed: pip install '.[executorch]' (executorch==1.5.1 beside torch==2.13.0)"


def lower_pte(methods: dict[str, torch.export.ExportedProgram], path: Path) -> str:
    """Lower one program per method to ExecuTorch with the XNNPACK partitioner, or with portable kernels only where
    XNNPACK refuses; write ``path``; return which ("xnnpack" or "portable (<XNNPACK's reason>)").

    Measured (executorch 1.5.1): XNNPACK does not delegate inside a scan's body, so the recurrence of ``forward``
    runs on portable kernels (char-shakespeare: about 15x onnxruntime's time per character, batch 1); the one-step
    method ``step`` has no loop and XNNPACK takes all of it."""
    with _quiet_torch_logs():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    with warnings.catch_warnings(), _quiet_fds():
        warnings.simplefilter("ignore")
        try:
            lowered = to_edge_transform_and_lower(dict(methods), partitioner=[XnnpackPartitioner()]).to_executorch()
            how = "xnnpack"
        except Exception as e:  # XNNPACK refuses some graphs; the portable kernels run every operator
            xnnpack = first_line(e)
            lowered = to_edge_transform_and_lower(dict(methods)).to_executorch()
            how = f"portable ({xnnpack})"
    path.write_bytes(bytes(lowered.buffer))
    return how


@contextlib.contextmanager
def _quiet_fds():
    """ExecuTorch's native code logs to file descriptors 1 and 2 (cpuinfo probes, tensor resizes); an export's
    output keeps only its own lines. Its errors reach Python as exceptions, which say what went wrong."""
    import os
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, s in saved.items():
                os.dup2(s, fd)
                os.close(s)


class PteRunner:
    """A ``.pte`` in ExecuTorch's own runtime, called with a feed like every other backend. A call at time 1 goes to
    the one-step method where the program has one (``step``), every other call to ``forward``."""

    def __init__(self, path: Path, io: IOSpec):
        with _quiet_torch_logs():
            from executorch.runtime import Runtime

        self.io = io
        with _quiet_fds():
            program = Runtime.get().load_program(str(path))
            self.methods = {name: program.load_method(name) for name in sorted(program.method_names)}

    def method_for(self, feed: Feed) -> str:
        timed = [spec for spec in self.io.inputs if TIME in spec.shape and spec.name in feed]
        one_step = bool(timed) and all(feed[spec.name].shape[spec.axis(TIME)] == 1 for spec in timed)
        return STEP_METHOD if one_step and STEP_METHOD in self.methods else "forward"

    def __call__(self, feed: Feed, method: str | None = None) -> Feed:
        feed = complete(self.io, feed)
        method = method or self.method_for(feed)
        inputs = [torch.from_numpy(np.ascontiguousarray(feed[spec.name])) for spec in self.io.inputs]
        with _quiet_fds():
            outputs = self.methods[method].execute(inputs)
        if len(outputs) != len(self.io.outputs):
            raise RuntimeError(f"the .pte's {method} returned {len(outputs)} outputs, expected {len(self.io.outputs)}")
        return {spec.name: out.numpy().copy() for spec, out in zip(self.io.outputs, outputs)}


STEP_METHOD = "step"


def pte_shape(shape: tuple, fixed: dict[str, int]) -> list:
    """An IO shape as the .pte has it: the fixed symbols replaced by their sizes (``time*batch`` at batch 1 is
    ``time``)."""
    out: list = []
    for d in shape:
        if not isinstance(d, str) or "/" in d:
            out.append(fixed.get(d, d))
            continue
        parts = d.split("*")
        number = int(np.prod([fixed[p] for p in parts if p in fixed]))
        rest = [p for p in parts if p not in fixed]
        out.append("*".join(rest) if rest and number == 1 else "*".join([str(number), *rest]) if rest else number)
    return out
