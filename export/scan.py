"""Recurrent layers in scan form: ``nn.LSTM``/``GRU``/``RNN`` with the recurrence written as torch's ``scan``
higher-order op, so that exporters keep the time axis symbolic.

Shape letters as in torch's ``nn/modules/rnn.py``: T steps, B batch, F input features, H hidden size, P the width
of h (an LSTM's ``proj_size``, else H), G gates (LSTM 4, GRU 3, RNN 1), D directions, L layers.

Measured (torch 2.13.0, executorch 1.5.1, onnxruntime 1.32, CPU):

- ``torch.export.export`` of an ``nn.LSTM`` with T a ``Dim`` raises "Constraints violated (time)! ... your code
  specialized it to be a constant" (``Dim.AUTO`` pins it silently). Of ``ScanRNN`` it keeps T and B symbolic,
  strict and non-strict, with ``Dim("time")``, ``Dim("time", min=1)`` or ``Dim.DYNAMIC`` alike; the program made
  from a (7, 3) example runs right at T = 1 and B = 1 as well (no 0/1 specialization: nothing branches on a size).
- ``torch.onnx.export(..., dynamo=True)`` writes an ONNX ``Scan`` node per direction and layer, T and B symbolic;
  onnxruntime runs it right at every length, padded or with lengths (``Packed``).
- ExecuTorch (``to_edge_transform_and_lower``, run with its ``Runtime``) lowers LSTM, GRU and RNN, with
  ``XnnpackPartitioner`` (which takes the input projections; the scan bodies run on the portable kernels) or
  without, T dynamic and B fixed: with B dynamic too the program runs only at the example's batch
  (``op_copy.cpp: Check failed (tensor_is_broadcastable_to(src, in))``). Its lowering fails with "scan might be
  aliasing the input or the output!" when two carries start from one tensor object, hence every carry here
  starts from a tensor of its own and every step returns new tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch._higher_order_ops.scan import scan
from torch.nn.utils.rnn import PackedSequence

from .rewrite import RNN_TYPES, WrappedRNN, _pack, _unpack, replace_layers


class Packed(NamedTuple):
    """Sequences of different lengths as a padded batch and its lengths: what ``ScanRNN`` takes and gives in place
    of a ``PackedSequence``, whose batch sizes are data and so cannot be traced with a symbolic T or B."""

    data: torch.Tensor  # (T, B, E), time first whatever the layer's batch_first, as in a PackedSequence
    lengths: torch.Tensor  # (B,) int64, each sequence's valid steps; data past them is zero in an output


# A program that takes or returns a Packed names it in its saved tree spec (torch.export.save, ExecuTorch's emitter),
# and torch.export.load unpickles its example inputs with weights_only, which refuses classes not allowed by name.
torch.utils._pytree._register_namedtuple(Packed, serialized_type_name=f"{__name__}.Packed")
torch.serialization.add_safe_globals([Packed])


class ScanRNN(WrappedRNN):
    """An ``nn.LSTM``/``GRU``/``RNN`` (weights shared, kept as ``self.rnn``) computed with one ``scan`` per direction
    of each layer: the same call convention and outputs as the layer (which it refuses to run in training mode with
    dropout between layers, as it applies none).

    The input projection ``x @ W_ih^T + b_ih`` of every step is one matmul before the scan; the scan carries h (and
    c) through the hidden-to-hidden part only. Sequences of different lengths (a ``PackedSequence``, or
    ``run_padded``) freeze each carry past its sequence's length, so h_n and c_n are each sequence's state at its
    own last step, as torch's packed run gives; outputs past a length are zero. A ``Packed`` input gives a
    ``Packed`` output: the same computation, exportable.
    """

    def __init__(self, rnn: nn.RNNBase):
        if type(rnn) not in RNN_TYPES:
            raise TypeError(unsupported(rnn))
        super().__init__(rnn)
        self.train(rnn.training)  # wrapping an eval-mode layer gives an eval-mode module, as exporters expect

    def forward(self, input, hx=None):
        """As the wrapped layer: ``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM."""
        if isinstance(input, Packed):
            lengths = input.lengths.to(torch.int64)
            y, state = self._run(input.data, lengths, hx)
            return Packed(y, lengths), state
        if isinstance(input, PackedSequence):
            x, lengths, order, unsort = _unpack(input)  # (T, B, F), (B,), in the caller's batch order, as hx is
            y, state = self._run(x, lengths, hx)
            return _pack(y, lengths, order, unsort), state
        if input.dim() == 3:
            x = input.transpose(0, 1) if self.rnn.batch_first else input  # (B, T, F) -> (T, B, F)
            y, state = self._run(x, None, hx)
            return (y.transpose(0, 1) if self.rnn.batch_first else y), state
        if input.dim() != 2:
            raise ValueError(f"expected input of 2 (unbatched) or 3 dimensions, got shape {tuple(input.shape)}")
        lstm = isinstance(self.rnn, nn.LSTM)
        if hx is not None:
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1)) if lstm else hx.unsqueeze(1)  # (L*D, P) -> (L*D, 1, P)
        y, state = self._run(input.unsqueeze(1), None, hx)  # (T, F) -> (T, 1, F)
        state = (state[0].squeeze(1), state[1].squeeze(1)) if lstm else state.squeeze(1)
        return y.squeeze(1), state  # (T, 1, D*P) -> (T, D*P)

    def run_padded(self, input: torch.Tensor, lengths: torch.Tensor, hx=None):
        """The layer on a padded batch of sequences of the given lengths, without a ``PackedSequence``.

        ``input`` is (T, B, F), or (B, T, F) when ``batch_first``; ``lengths`` (B,) counts each sequence's valid
        steps (at most T). Returns ``(output, h_n)`` or ``(output, (h_n, c_n))`` as ``forward`` on the packed
        sequences would, the output padded with zeros past each length. Unlike packing, this traces under
        ``torch.export`` with T and B symbolic, ``lengths`` an input like any other."""
        if input.dim() != 3 or lengths.shape != (input.size(0 if self.rnn.batch_first else 1),):
            raise ValueError(f"expected input (T, B, F) or (B, T, F) and lengths (B,), got {tuple(input.shape)} "
                             f"and {tuple(lengths.shape)}")
        x = input.transpose(0, 1) if self.rnn.batch_first else input  # (B, T, F) -> (T, B, F)
        y, state = self._run(x, lengths.to(torch.int64), hx)
        return (y.transpose(0, 1) if self.rnn.batch_first else y), state

    def _run(self, x: torch.Tensor, lengths: torch.Tensor | None, hx):
        """(T, B, F) -> (T, B, D*P) and the final states; ``lengths`` None when every sequence is T long."""
        r = self.rnn
        reason = unsupported(r)
        if reason is not None:
            raise ValueError(reason)
        if x.size(-1) != r.input_size:
            raise ValueError(f"input.size(-1) must be equal to input_size. Expected {r.input_size}, got {x.size(-1)}")
        lstm = isinstance(r, nn.LSTM)
        directions = 2 if r.bidirectional else 1
        width = r.proj_size if lstm and r.proj_size else r.hidden_size  # P
        states = r.num_layers * directions
        if hx is None:
            h0 = x.new_zeros(states, x.size(1), width)  # (L*D, B, P)
            c0 = x.new_zeros(states, x.size(1), r.hidden_size) if lstm else None  # (L*D, B, H)
        else:
            h0, c0 = hx if lstm else (hx, None)
            _check_state("h_0", h0, (states, x.size(1), width))
            if lstm:
                _check_state("c_0", c0, (states, x.size(1), r.hidden_size))
        if lengths is None:
            valid = reverse = None
        else:
            steps = torch.arange(x.size(0), device=x.device).unsqueeze(1)  # (T, 1)
            valid = steps < lengths.unsqueeze(0)  # (T, B)
            # The step each sequence's reversal reads at step t: its own steps backwards, the padding in place.
            reverse = torch.where(valid, lengths.unsqueeze(0) - 1 - steps, steps)  # (T, B)
        h_n, c_n = [], []
        for layer in range(r.num_layers):
            outs = []
            for d in range(directions):
                k = layer * directions + d
                suffix = "_reverse" if d else ""
                w = {name: getattr(r, f"{name}_l{layer}{suffix}", None)
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}
                projected = F.linear(x, w["weight_ih"], w["bias_ih"])  # (T, B, F) -> (T, B, G*H)
                if d and reverse is not None:
                    projected = _steps(projected, reverse)
                # Clones: each carry starts from a tensor of its own, not a view of hx or of another carry.
                init = (h0[k].clone(), c0[k].clone()) if lstm else (h0[k].clone(),)  # (B, P), (B, H)
                carry, y = _direction(r, projected, valid, init, w["weight_hh"], w["bias_hh"], w["weight_hr"],
                                      backward=d == 1 and reverse is None)  # y (T, B, P)
                if d and reverse is not None:
                    y = _steps(y, reverse)  # back to the original order of steps
                outs.append(y)
                h_n.append(carry[0])
                if lstm:
                    c_n.append(carry[1])
            x = torch.cat(outs, dim=-1) if directions == 2 else outs[0]  # (T, B, D*P)
        h_n = torch.stack(h_n)  # (L*D, B, P)
        return x, ((h_n, torch.stack(c_n)) if lstm else h_n)  # c_n (L*D, B, H)


def _direction(r: nn.RNNBase, projected: torch.Tensor, valid: torch.Tensor | None, init: tuple, w_hh: torch.Tensor,
               b_hh: torch.Tensor | None, w_hr: torch.Tensor | None, backward: bool):
    """One direction of one layer as a scan over ``projected`` (T, B, G*H), the steps' input projections.

    ``valid`` (T, B) marks the steps within each sequence's length (None: all); past it the carry is kept and the
    output is zero. ``backward`` scans from the last step to the first (sequences all T long). Returns the final
    carry, ``(h, c)`` or ``(h,)``, and the outputs (T, B, P)."""
    if isinstance(r, nn.LSTM):
        def cell(carry, p):
            h, c = carry
            gates = p + F.linear(h, w_hh, b_hh)  # (B, 4H)
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)  # (B, H)
            return (h if w_hr is None else F.linear(h, w_hr), c)  # (B, H) -> (B, P)
    elif isinstance(r, nn.GRU):
        def cell(carry, p):
            (h,) = carry
            ir, iz, i_n = p.chunk(3, dim=-1)
            hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)  # (B, 3H) -> 3 x (B, H)
            reset, update = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(i_n + reset * hn)
            return ((1 - update) * n + update * h,)
    else:
        activation = torch.tanh if r.nonlinearity == "tanh" else torch.relu

        def cell(carry, p):
            return (activation(p + F.linear(carry[0], w_hh, b_hh)),)

    if valid is None:
        def step(carry, p):
            new = cell(carry, p)
            return new, new[0].clone()  # the output may not alias the carry

        return scan(step, init, projected, reverse=backward)

    def masked_step(carry, xs):
        p, ok = xs  # (B, G*H), (B, 1)
        new = cell(carry, p)
        kept = tuple(torch.where(ok, n, old) for n, old in zip(new, carry))
        return kept, torch.where(ok, new[0], torch.zeros_like(new[0]))

    return scan(masked_step, init, (projected, valid.unsqueeze(-1)))


def _steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(T, B, E) -> (T, B, E) with sequence b's step t read from step ``index[t, b]``."""
    return x.gather(0, index.unsqueeze(-1).expand_as(x))


def _check_state(name: str, state: torch.Tensor, expected: tuple) -> None:
    if tuple(state.shape) != expected:
        raise ValueError(f"{name} must be of shape {tuple(expected)}, got {tuple(state.shape)}")


def unsupported(module: nn.Module) -> str | None:
    """Why ``module`` cannot be put in scan form, or None when it can: a caller records this when it falls back."""
    if type(module) not in RNN_TYPES:
        kind = next((t.__name__ for t in RNN_TYPES if isinstance(module, t)), None)
        if kind is None:
            return f"{type(module).__name__} is not an nn.LSTM, nn.GRU or nn.RNN"
        own_forward = type(module).forward is not getattr(nn, kind).forward
        how = "overrides forward" if own_forward else "may override what forward calls"
        return f"{type(module).__name__} subclasses nn.{kind} and {how}; only torch's own classes are rewritten"
    if module.training and module.dropout > 0 and module.num_layers > 1:
        return (f"{type(module).__name__} is in training mode with dropout={module.dropout} between its layers; "
                "the scan form applies no dropout (call .eval() first)")
    return None


def scan_recurrent(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` (weights shared) whose ``nn.LSTM``/``GRU``/``RNN`` layers are ``ScanRNN``; their names.

    Recurrent layers that ``unsupported`` gives a reason for are left as they are (a subclass may compute something
    else; a layer in training mode would apply dropout); the caller asks ``unsupported`` to record why. Layers
    already in scan form stay as they are."""
    wrapped = {f"{name}.rnn" if name else "rnn" for name, m in model.named_modules() if isinstance(m, ScanRNN)}
    names = [name for name, m in model.named_modules()
             if isinstance(m, RNN_TYPES) and unsupported(m) is None and name not in wrapped]
    return replace_layers(model, names, ScanRNN)
