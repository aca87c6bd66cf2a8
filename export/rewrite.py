"""Rewrites that let torch's exporters take modules as people write them, without changing what they compute.

Each returns a new module (the caller's is never touched) that shares the original's weights; verification then
holds the exported graph to the original eager module, so a rewrite cannot slip a different model through.

- ``portable_recurrent``: every recurrent layer becomes ``PortableRNN``, computed with forward-direction
  single-layer ops, explicit initial states and no ``sequence_lens``, the form onnxruntime, the ONNX reference
  evaluator, OpenVINO and tract all run the same (see its docstring for what each gets wrong otherwise). It also
  avoids a crash of torch 2.13's TorchScript-based exporter (``vector::_M_range_check`` in its peephole pass) on
  a layer run on a ``PackedSequence`` whose output goes unused, as in the common classifier
  ``_, hidden = self.rnn(packed); logits = self.fc(hidden[-1])``.
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
from torch.nn.utils.rnn import PackedSequence

RNN_TYPES = (nn.LSTM, nn.GRU, nn.RNN)


class WrappedRNN(nn.Module):
    """A recurrent layer in another form (``PortableRNN``, ``scan.ScanRNN``): the layer kept as ``self.rnn`` (its
    weights, its state_dict keys), its attributes reachable as the layer's."""

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        self.rnn = rnn

    def __getattr__(self, name: str):
        """The wrapped layer's attributes (``hidden_size``, ``flatten_parameters``...), for forwards that use them."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "rnn":
                raise
            return getattr(self.rnn, name)


def replace_layers(model: nn.Module, names: list[str], wrap) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` (weights shared) whose submodules ``names`` are ``wrap(layer)``; ``names``. The name
    "" is ``model`` itself (a bare ``nn.LSTM`` exported as it is): then the result is ``wrap(model)``."""
    if not names:
        return model, []
    if "" in names:  # the model is the layer: nothing else to replace
        return wrap(model), [""]
    clone = _share_weights_copy(model)
    for name in names:
        parent, _, attr = name.rpartition(".")
        owner = clone.get_submodule(parent) if parent else clone
        setattr(owner, attr, wrap(getattr(owner, attr)))
    return clone, names


class PortableRNN(WrappedRNN):
    """An ``nn.LSTM``/``GRU``/``RNN`` computed with forward-direction, single-layer recurrent ops only, the
    original's weights shared: the form every mainstream ONNX runtime runs the same.

    Measured (issue 12): the ONNX LSTM's ``sequence_lens`` input is ignored by the ONNX reference evaluator
    always and by OpenVINO unless time and batch are both static (scores off by up to 19 on pos-ewt, silently);
    tract refuses a non-constant ``sequence_lens``, computes ``direction="reverse"`` as forward, has no
    ``ReverseSequence``, and aborts on a missing ``initial_h`` with a symbolic batch. So here:

    - each direction of each layer is its own forward-direction op with explicit initial states;
    - the backward direction reverses each sequence within its length (a ``Gather`` over the (T*B, F) rows),
      runs forward, and reverses back;
    - packed input (``PackedSequence``) is unpacked to padded + lengths, outputs past a length are zeroed
      (``Where``) and packed again for the caller; final states are read off the outputs at each sequence's end.

    Limitation: an LSTM's ``c_n`` of a sequence shorter than the batch's longest is the cell after the padding
    steps (the op has no per-sequence end); verification fails the export if the model uses it.
    Unidirectional layers on plain tensors run the original module (the exporter's graph of it is portable),
    with explicit zero initial states when none are given.
    """

    def forward(self, input, hx=None):
        r = self.rnn
        packed = isinstance(input, PackedSequence)
        lstm = isinstance(r, nn.LSTM)
        if not packed and (input.dim() != 3 or not r.bidirectional):
            # Unbatched (T, F), or unidirectional on a plain tensor: the exporter's own graph is portable once
            # the initial state is explicit.
            if hx is None and input.dim() == 3:
                b = input.size(0 if r.batch_first else 1)
                zeros = input.new_zeros(r.num_layers, b, r.hidden_size)
                hx = (zeros, zeros) if lstm else zeros
            return r(input, hx)
        if not packed and r.batch_first:
            input = input.transpose(0, 1)  # (B, T, F) -> (T, B, F)
        if packed:
            x, lengths, order, unsort = _unpack(input)  # (T, B, F), (B,), in the caller's batch order
        else:
            x = input
            lengths = torch.full((x.size(1),), x.size(0), dtype=torch.int64, device=x.device)
        batch = x.size(1)
        directions = 2 if r.bidirectional else 1
        if hx is None:
            zeros = x.new_zeros(r.num_layers * directions, batch, r.hidden_size)
            hx = (zeros, zeros) if lstm else zeros
        h0, c0 = hx if lstm else (hx, None)
        # Step and row numbers are counted from the data (cumsum of ones), not read off the shape: tract cannot
        # evaluate arithmetic on a symbolic size ("Undetermined symbol in expression: batch") nor a Range over one.
        steps = torch.cumsum(torch.ones_like(x[:, 0, 0], dtype=torch.int64), 0).unsqueeze(1) - 1  # (T, 1)
        rows = torch.cumsum(torch.ones_like(lengths), 0).unsqueeze(0) - 1  # (1, B)
        width = rows.max() + 1  # B, as data
        valid = steps < lengths.unsqueeze(0)  # (T, B)
        reverse = (torch.where(valid, lengths.unsqueeze(0) - 1 - steps, steps) * width + rows).reshape(-1)  # (T*B,)
        last = (lengths - 1) * width + rows[0]  # (B,): row of each sequence's last step
        h_n, c_n = [], []
        for layer in range(r.num_layers):
            outs = []
            for d in range(directions):
                k = layer * directions + d
                suffix = "_reverse" if d else ""
                weights = [getattr(r, f"{w}_l{layer}{suffix}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                           if r.bias or w.startswith("weight")]
                seq = x if d == 0 else _rows(x, reverse)
                if lstm:
                    y, h, c = torch._VF.lstm(seq, (h0[k:k + 1], c0[k:k + 1]), weights, r.bias, 1, 0.0, False, False,
                                             False)
                else:
                    op = torch._VF.gru if isinstance(r, nn.GRU) else (
                        torch._VF.rnn_tanh if r.nonlinearity == "tanh" else torch._VF.rnn_relu)
                    y, h = op(seq, h0[k:k + 1], weights, r.bias, 1, 0.0, False, False, False)
                    c = None
                if d:
                    y = _rows(y, reverse)  # back to the original order of steps
                y = torch.where(valid.unsqueeze(-1), y, torch.zeros_like(y))  # (T, B, H), zero past each length
                outs.append(y)
                h_n.append(y.reshape(-1, y.size(2))[last] if d == 0 else y[0])  # (B, H) at each sequence's end
                c_n.append(c[0] if c is not None else None)
            x = torch.cat(outs, dim=-1) if directions == 2 else outs[0]  # (T, B, D*H)
        h_n = torch.stack(h_n)  # (L*D, B, H)
        state = (h_n, torch.stack(c_n)) if lstm else h_n
        if packed:
            return _pack(x, lengths, order, unsort), state
        return (x.transpose(0, 1) if r.batch_first else x), state


def _unpack(packed: PackedSequence):
    """PackedSequence -> (padded (T, B, F), lengths (B,), sorted order, its inverse), in the caller's batch order.

    ``pad_packed_sequence`` would restore the order with ``packed.unsorted_indices``, which torch computes with a
    Range over the batch, a node tract refuses ("Output mismatch after rewiring expansion"); the inverse
    permutation here is scattered from a cumulative sum instead."""
    padded, lengths = torch._VF._pad_packed_sequence(packed.data, packed.batch_sizes, False, 0.0,
                                                     packed.batch_sizes.size(0))
    order = packed.sorted_indices
    if order is None:
        return padded, lengths.to(torch.int64), None, None
    rows = torch.cumsum(torch.ones_like(order), 0) - 1
    unsort = torch.zeros_like(order).scatter(0, order, rows)
    return padded.index_select(1, unsort), lengths.to(torch.int64)[unsort], order, unsort


def _pack(x: torch.Tensor, lengths: torch.Tensor, order, unsort) -> PackedSequence:
    """The inverse of ``_unpack``: padded (T, B, F) in the caller's order -> PackedSequence, sorted as it came."""
    if order is not None:
        x, lengths = x.index_select(1, order), lengths[order]
    data, batch_sizes = torch._VF._pack_padded_sequence(x, lengths.cpu(), False)
    return PackedSequence(data, batch_sizes, order, unsort)


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(T, B, F) -> (T, B, F) with rows of the (T*B, F) flattening picked by ``index`` (an ONNX Gather)."""
    return x.reshape(-1, x.size(2))[index].reshape_as(x)


def portable_recurrent(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` (weights shared) whose recurrent layers are ``PortableRNN``; the layers' names."""
    return replace_layers(model, [name for name, m in model.named_modules() if isinstance(m, RNN_TYPES)], PortableRNN)


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

