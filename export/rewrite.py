"""Rewrites that let torch's exporters take modules as people write them, without changing what they compute.

Each returns a new module (the caller's is never touched) that shares the original's weights; verification then
holds the exported graph to the original eager module, so a rewrite cannot slip a different model through.

- ``keep_packed_outputs``: torch 2.13's TorchScript-based ONNX exporter crashes (``vector::_M_range_check`` in
  its peephole pass) when a recurrent layer runs on a ``PackedSequence`` and only its final state is used, as in
  the common classifier ``_, hidden = self.rnn(packed); logits = self.fc(hidden[-1])``. The rewritten layers
  add an empty slice of their unpacked output to the final state (exactly zero, no NaN risk), so the exporter
  sees the output used.
- ``annotate_forward``: TorchScript types unannotated arguments as Tensor, so ``forward(self, input, hidden)``
  with ``hidden = (h, c)`` does not script ("Tensor cannot be used as a tuple"). The rewritten module's forward
  is the same code with annotations read off the example arguments (``Tuple[Tensor, Tensor]``).
"""

from __future__ import annotations

import ast
import copy
import inspect
import linecache
import textwrap
import typing
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

RNN_TYPES = (nn.LSTM, nn.GRU, nn.RNN)


def keep_packed_outputs(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` whose recurrent layers keep their packed output used; returns it and the layers'
    names (empty: nothing to rewrite, and the copy is not made)."""
    names = [name for name, m in model.named_modules() if isinstance(m, RNN_TYPES)]
    if not names:
        return model, []
    clone = _share_weights_copy(model)
    for name in names:
        layer = clone.get_submodule(name)
        layer.__class__ = _packed_safe(type(layer))
    return clone, names


_PACKED_SAFE: dict[type, type] = {}


def _packed_safe(cls: type) -> type:
    if cls not in _PACKED_SAFE:
        def forward(self, input, hx=None):
            output, state = cls.forward(self, input, hx)
            if isinstance(input, PackedSequence):
                used = pad_packed_sequence(output)[0][:0].sum()  # 0.0, read from the output
                state = tuple(s + used for s in state) if isinstance(state, tuple) else state + used
            return output, state
        _PACKED_SAFE[cls] = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})
    return _PACKED_SAFE[cls]


def _share_weights_copy(model: nn.Module) -> nn.Module:
    """A structural copy whose parameters and buffers are the original's tensors (not copies)."""
    memo: dict[int, Any] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        memo[id(t)] = t
    return copy.deepcopy(model, memo)


def annotate_forward(model: nn.Module, args: tuple) -> nn.Module | None:
    """A copy of ``model`` (weights shared) whose forward is the same code with type annotations read off ``args``
    for the parameters that have none; None when there is nothing to add or the source cannot be read.

    TorchScript reads argument types from the source text, not from ``__annotations__``, so the annotated
    forward is compiled from its own source with the annotations written in, and registered with ``linecache``
    under ``<annotated FILE>`` so that TorchScript (which reads source through ``inspect``) finds it."""
    fn = type(model).forward
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    tree = ast.parse(source)
    func = tree.body[0]
    if not isinstance(func, ast.FunctionDef) or func.args.vararg or func.args.kwarg or fn.__closure__:
        return None
    params = func.args.args[1:]  # after self
    if len(args) > len(params):
        return None
    added = False
    for p, value in zip(params, args):
        if p.annotation is None:
            kind = _type_of(value)
            if kind is None:
                return None
            p.annotation = ast.parse(kind, mode="eval").body
            added = True
    if not added:
        return None
    func.decorator_list = []
    filename = f"<annotated {fn.__code__.co_filename}:{fn.__qualname__}>"
    text = ast.unparse(tree) + "\n"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(text, filename, "exec"), {**fn.__globals__, "typing": typing, "torch": torch}, namespace)
    new_fn = namespace[fn.__name__]
    new_fn.__qualname__ = fn.__qualname__
    cls = type(model)
    clone = _share_weights_copy(model)
    clone.__class__ = type(cls.__name__, (cls,), {"forward": new_fn, "__module__": cls.__module__})
    return clone


def _type_of(value: Any) -> str | None:
    """The TorchScript type of an example argument, as source text."""
    if isinstance(value, torch.Tensor):
        return "torch.Tensor"
    if isinstance(value, tuple) and value:
        inner = [_type_of(v) for v in value]
        return None if None in inner else f"typing.Tuple[{', '.join(inner)}]"
    return None

