"""The scan form of torch's recurrent layers (export/scan.py).

Invariants:
- ``ScanRNN`` computes what the layer it wraps computes, every output (output, h_n, c_n) within 1e-5: LSTM (with
  and without ``proj_size``), GRU, RNN tanh and relu; 1 and 2 layers; uni- and bidirectional; batch_first or not;
  with and without bias; with and without initial states; T from 1 to 300, B 1 and 3; batched and unbatched;
- on sequences of different lengths (a PackedSequence, sorted or not; ``Packed``; ``run_padded``) it gives what
  torch's packed run gives, c_n at each sequence's own end included, and the same PackedSequence back;
- one step at a time with the state carried gives the whole sequence's outputs and states;
- ``scan_recurrent`` rewrites the torch classes only, sharing their weights; ``unsupported`` says why not;
- ``torch.export`` (strict and not) keeps T and B symbolic, and the program is right at every size; the dynamo ONNX
  exporter writes a ``Scan`` that onnxruntime runs right; ExecuTorch runs the lowered program right at any T.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.export import Dim
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from export.scan import Packed, ScanRNN, scan_recurrent, unsupported

# torch's own noise: strict export runs scan's eager path under dynamo, and oneDNN has no projected LSTM.
pytestmark = [pytest.mark.filterwarnings("ignore:torch.compile is ignored when called inside torch.export"),
              pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")]

F_IN, HIDDEN, PROJ = 5, 7, 3
ATOL = RTOL = 1e-5


@dataclass(frozen=True)
class Config:
    cell: str  # "LSTM", "GRU", "RNN-tanh", "RNN-relu"
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    proj_size: int = 0

    def __str__(self):
        return "-".join([self.cell, f"L{self.layers}", "bi" if self.bidirectional else "uni",
                         "bf" if self.batch_first else "tf", "bias" if self.bias else "nobias"]
                        + ([f"proj{self.proj_size}"] if self.proj_size else []))

    @property
    def lstm(self) -> bool:
        return self.cell == "LSTM"

    def make(self) -> nn.RNNBase:
        """The torch layer, in eval mode, its weights drawn from a seed of its own (the same in every process)."""
        torch.manual_seed(zlib.crc32(str(self).encode()))
        kwargs = dict(num_layers=self.layers, bidirectional=self.bidirectional, batch_first=self.batch_first,
                      bias=self.bias)
        if self.lstm:
            return nn.LSTM(F_IN, HIDDEN, proj_size=self.proj_size, **kwargs).eval()
        if self.cell == "GRU":
            return nn.GRU(F_IN, HIDDEN, **kwargs).eval()
        return nn.RNN(F_IN, HIDDEN, nonlinearity=self.cell.split("-")[1], **kwargs).eval()

    def input(self, t: int, b: int | None) -> torch.Tensor:
        """(T, B, F), (B, T, F) when batch_first, or (T, F) when b is None."""
        if b is None:
            return torch.randn(t, F_IN)
        return torch.randn((b, t, F_IN) if self.batch_first else (t, b, F_IN))

    def state(self, b: int | None):
        """Random initial states, h_0 (L*D, B, P) (and c_0 (L*D, B, H)); no batch axis when b is None."""
        batch = () if b is None else (b,)
        n = self.layers * (2 if self.bidirectional else 1)
        h = torch.randn(n, *batch, self.proj_size or HIDDEN)
        return (h, torch.randn(n, *batch, HIDDEN)) if self.lstm else h


CELLS = ("LSTM", "GRU", "RNN-tanh", "RNN-relu")
ALL = [Config(cell, layers, bi, bf, bias)
       for cell, layers, bi, bf, bias in itertools.product(CELLS, (1, 2), (False, True), (False, True), (True, False))]
ALL += [Config("LSTM", layers, bi, bf, bias, proj_size=PROJ)
        for layers, bi, bf, bias in itertools.product((1, 2), (False, True), (False, True), (True, False))]
# One of each kind, both directions and layers, for the checks that cost more per case.
KINDS = [Config("LSTM", 2, True), Config("GRU", 2, True, batch_first=True), Config("RNN-tanh", 1, True),
         Config("RNN-relu", 2, False, bias=False), Config("LSTM", 2, True, proj_size=PROJ)]
# One of each kind, one layer mostly, for the exporters (each export takes seconds).
EXPORTED = [Config("LSTM", 1, True), Config("GRU", 1, False, batch_first=True), Config("RNN-tanh", 1, True),
            Config("RNN-relu", 2, False, bias=False), Config("LSTM", 1, False, proj_size=PROJ)]


def outputs(result, lstm: bool) -> dict[str, torch.Tensor]:
    """A layer's result by name: output, h_n and, for an LSTM, c_n (the output padded if it is packed)."""
    out, state = result
    if isinstance(out, PackedSequence):
        out = pad_packed_sequence(out)[0]
    elif isinstance(out, Packed):
        out = out.data
    h, c = state if lstm else (state, None)
    return {"output": out, "h_n": h, **({"c_n": c} if lstm else {})}


def assert_same(got, want, case: str) -> None:
    """Every output of ``got`` within tolerance of ``want``'s; the message names the case and the output."""
    assert got.keys() == want.keys(), f"{case}: outputs {sorted(got)}, expected {sorted(want)}"
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=ATOL, rtol=RTOL,
                                   msg=lambda m, name=name: f"{case}: {name}: {m}")


def check(config: Config, layer: nn.RNNBase, module: nn.Module, t: int, b: int | None, with_state: bool) -> None:
    x = config.input(t, b)
    hx = config.state(b) if with_state else None
    case = f"{config} T={t} B={b if b is not None else 'unbatched'} hx={'given' if with_state else 'none'}"
    with torch.no_grad():
        want = outputs(layer(x, hx), config.lstm)
        got = outputs(module(x, hx) if with_state else module(x), config.lstm)  # an exported program takes x only
    assert_same(got, want, case)


@pytest.mark.parametrize("config", ALL, ids=str)
def test_scan_rnn_computes_what_the_layer_computes(config):
    layer = config.make()
    scanned = ScanRNN(layer)
    for t, b, with_state in itertools.product((1, 7), (1, 3), (False, True)):
        check(config, layer, scanned, t, b, with_state)


@pytest.mark.parametrize("t", (64, 300))
@pytest.mark.parametrize("config", KINDS, ids=str)
def test_long_sequences(config, t):
    layer = config.make()
    for b, with_state in ((1, False), (3, True)):
        check(config, layer, ScanRNN(layer), t, b, with_state)


@pytest.mark.parametrize("config", KINDS + [Config("GRU", batch_first=True)], ids=str)
def test_unbatched_input(config):
    layer = config.make()
    for t, with_state in itertools.product((1, 7), (False, True)):
        check(config, layer, ScanRNN(layer), t, None, with_state)


LENGTHS = {True: [9, 6, 3, 1], False: [3, 9, 1, 6]}  # enforce_sorted -> lengths it accepts


@pytest.mark.parametrize("enforce_sorted", (True, False), ids=("sorted", "unsorted"))
@pytest.mark.parametrize("config", KINDS + [Config("LSTM", 1, False, batch_first=True)], ids=str)
def test_packed_sequences(config, enforce_sorted):
    """Mixed lengths, packed: the PackedSequence torch gives (data, batch sizes, sorted and unsorted indices), the
    padded output, and each sequence's h_n and c_n at its own last step; with and without initial states."""
    layer = config.make()
    scanned = ScanRNN(layer)
    lengths = torch.tensor(LENGTHS[enforce_sorted])
    for with_state in (False, True):
        case = f"{config} lengths={lengths.tolist()} hx={'given' if with_state else 'none'}"
        x = config.input(int(lengths.max()), len(lengths))
        hx = config.state(len(lengths)) if with_state else None
        packed = pack_padded_sequence(x, lengths, batch_first=config.batch_first, enforce_sorted=enforce_sorted)
        with torch.no_grad():
            want, got = layer(packed, hx), scanned(packed, hx)
        for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            g, w = getattr(got[0], field), getattr(want[0], field)
            assert (g is None and w is None) or torch.equal(g, w), f"{case}: PackedSequence.{field}: {g}, expected {w}"
        torch.testing.assert_close(got[0].data, want[0].data, atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f"{case}: PackedSequence.data: {m}")
        assert_same(outputs(got, config.lstm), outputs(want, config.lstm), case)


@pytest.mark.parametrize("config", KINDS + [Config("GRU", 1, True, batch_first=True)], ids=str)
def test_padded_with_lengths(config):
    """``run_padded`` and a ``Packed`` input give torch's packed run, the output zero past each length."""
    layer = config.make()
    scanned = ScanRNN(layer)
    t, lengths = 8, torch.tensor([3, 8, 1, 6])
    x, hx = config.input(t, len(lengths)), config.state(len(lengths))
    with torch.no_grad():
        out, state = layer(pack_padded_sequence(x, lengths, batch_first=config.batch_first, enforce_sorted=False), hx)
        want = outputs((pad_packed_sequence(out, batch_first=config.batch_first, total_length=t)[0], state),
                       config.lstm)
        assert_same(outputs(scanned.run_padded(x, lengths, hx), config.lstm), want, f"{config} run_padded")
        time_first = x.transpose(0, 1) if config.batch_first else x  # (B, T, F) -> (T, B, F)
        got = outputs(scanned(Packed(time_first, lengths), hx), config.lstm)
    if config.batch_first:
        got["output"] = got["output"].transpose(0, 1)  # Packed data is time first: (T, B, E) -> (B, T, E)
    assert_same(got, want, f"{config} Packed")


@pytest.mark.parametrize("config", [c for c in KINDS if not c.bidirectional] + [Config("LSTM", 2, proj_size=PROJ),
                                                                                Config("GRU", 2, batch_first=True)],
                         ids=str)
def test_one_step_at_a_time_is_the_whole_sequence(config):
    scanned = ScanRNN(config.make())
    x, hx = config.input(7, 3), config.state(3)
    time_axis = 1 if config.batch_first else 0
    with torch.no_grad():
        whole = outputs(scanned(x, hx), config.lstm)
        steps, state = [], hx
        for x_t in x.split(1, dim=time_axis):
            y, state = scanned(x_t, state)
            steps.append(y)
        stepped = outputs((torch.cat(steps, dim=time_axis), state), config.lstm)
    assert_same(stepped, whole, f"{config} stepped")


class Subclassed(nn.LSTM):
    def forward(self, input, hx=None):
        out, state = super().forward(input, hx)
        return out * 2, state


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(F_IN, HIDDEN, bidirectional=True)
        self.blocks = nn.Sequential(nn.Linear(2 * HIDDEN, HIDDEN))
        self.own = Subclassed(HIDDEN, HIDDEN)
        self.gru = nn.GRU(HIDDEN, HIDDEN, num_layers=2, dropout=0.5)

    def forward(self, x):
        y = self.blocks(self.lstm(x)[0])
        return self.gru(self.own(y)[0])[0]


def test_scan_recurrent_rewrites_the_torch_layers_and_shares_their_weights():
    net = Net().eval()
    scanned, names = scan_recurrent(net)
    assert names == ["lstm", "gru"]
    assert type(scanned.lstm) is ScanRNN and type(scanned.gru) is ScanRNN and type(scanned.own) is Subclassed
    assert type(net.lstm) is nn.LSTM, "the caller's model was changed"
    assert scanned.lstm.rnn.weight_ih_l0 is net.lstm.weight_ih_l0, "weights copied, not shared"
    assert list(scanned.lstm.state_dict()) == [f"rnn.{k}" for k in net.lstm.state_dict()]
    assert (scanned.lstm.hidden_size, scanned.gru.num_layers, scanned.lstm.batch_first) == (HIDDEN, 2, False)
    scanned.lstm.flatten_parameters()
    x = torch.randn(6, 2, F_IN)
    with torch.no_grad():
        torch.testing.assert_close(scanned(x), net(x), atol=ATOL, rtol=RTOL)
    assert scan_recurrent(nn.Linear(2, 2))[1] == []
    assert scan_recurrent(scanned)[1] == [], "layers already in scan form are wrapped again"


def test_unsupported_says_why():
    assert unsupported(nn.GRU(F_IN, HIDDEN)) is None
    assert unsupported(nn.GRU(F_IN, HIDDEN, num_layers=2, dropout=0.5).eval()) is None
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        one_layer = nn.GRU(F_IN, HIDDEN, dropout=0.5)
    assert unsupported(one_layer) is None, "one layer: torch applies no dropout either"
    assert "overrides forward" in unsupported(Subclassed(F_IN, HIDDEN))
    assert "not an nn.LSTM" in unsupported(nn.Linear(2, 2))
    training = nn.LSTM(F_IN, HIDDEN, num_layers=2, dropout=0.5)
    assert "training mode with dropout=0.5" in unsupported(training)
    assert scan_recurrent(Net())[1] == ["lstm"], "a training model's dropout layer is left as it is"
    with pytest.raises(ValueError, match="training mode with dropout"):
        ScanRNN(training)(torch.randn(4, 2, F_IN))
    with pytest.raises(TypeError, match="overrides forward"):
        ScanRNN(Subclassed(F_IN, HIDDEN))
    with pytest.raises(ValueError, match="Expected 5, got 4"):
        ScanRNN(nn.GRU(F_IN, HIDDEN))(torch.randn(3, 2, 4))


def test_training_mode_without_dropout_gives_torchs_gradients():
    config = Config("LSTM", 1, True)
    layer = config.make().train()
    x = config.input(6, 2)
    grads = []
    for module in (layer, ScanRNN(layer)):
        layer.zero_grad()
        out, (h, c) = module(x)
        (out.sum() + h.sum() + c.sum()).backward()
        grads.append({k: p.grad.clone() for k, p in layer.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], atol=1e-5, rtol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


class WithLengths(nn.Module):
    """A layer called on padded sequences and their lengths, the form a tagger is exported in."""

    def __init__(self, layer: nn.RNNBase):
        super().__init__()
        self.rnn = ScanRNN(layer)

    def forward(self, x, lengths):
        out, state = self.rnn(Packed(x, lengths))
        return out.data, state  # (T, B, D*P), zero past each length


def _symbolic(program: torch.export.ExportedProgram, name: str) -> list[bool]:
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    return [isinstance(d, torch.SymInt) for d in node.meta["val"].shape]


@pytest.mark.parametrize("config, strict", [(EXPORTED[0], False), (EXPORTED[0], True), (EXPORTED[1], False),
                                            (EXPORTED[3], True), (EXPORTED[4], False)],
                         ids=lambda v: str(v) if isinstance(v, Config) else f"strict={v}")
def test_torch_export_keeps_time_and_batch_symbolic(config, strict):
    layer = config.make()
    time, batch = (1, 0) if config.batch_first else (0, 1)
    program = torch.export.export(ScanRNN(layer), (config.input(7, 3),), strict=strict,
                                  dynamic_shapes={"input": {time: Dim("time"), batch: Dim("batch")}})
    assert _symbolic(program, "input") == [True, True, False]
    module = program.module()
    for t, b in itertools.product((1, 2, 7, 64, 300), (1, 3)):
        check(config, layer, module, t, b, with_state=False)


@pytest.mark.slow
def test_torch_export_with_initial_state_and_lengths(tmp_path):
    """A ``Packed`` in and out (saved and loaded back: its tree spec is registered), and initial states in."""
    config = EXPORTED[0]
    layer = config.make()
    x, hx, lengths = config.input(7, 3), config.state(3), torch.tensor([7, 2, 5])
    time, batch = Dim("time"), Dim("batch")
    packed = torch.export.export(ScanRNN(layer), (Packed(x, lengths),),
                                 dynamic_shapes={"input": Packed({0: time, 1: batch}, {0: batch})})
    torch.export.save(packed, tmp_path / "packed.pt2")
    packed = torch.export.load(tmp_path / "packed.pt2")
    with_state = torch.export.export(ScanRNN(layer), (x, hx), dynamic_shapes={
        "input": {0: time, 1: batch}, "hx": ({1: batch}, {1: batch})})
    assert _symbolic(with_state, "input") == [True, True, False]
    for t, b in itertools.product((1, 2, 7, 64, 300), (1, 3)):
        case = f"{config} T={t} B={b}"
        x, hx = config.input(t, b), config.state(b)
        lengths = torch.tensor([t, max(1, t // 2), 1][:b])
        with torch.no_grad():
            out, state = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
            want = outputs((pad_packed_sequence(out, total_length=t)[0], state), True)
            got = packed.module()(Packed(x, lengths))
            assert type(got[0]) is Packed and torch.equal(got[0].lengths, lengths), f"{case}: Packed out"
            assert_same(outputs(got, True), want, f"{case} Packed")
            assert_same(outputs(with_state.module()(x, hx), True), outputs(layer(x, hx), True), f"{case} hx")


@pytest.mark.slow
@pytest.mark.parametrize("lengths", (False, True), ids=("padded", "lengths"))
def test_dynamo_onnx_export_writes_a_scan_onnxruntime_runs(tmp_path, lengths):
    import onnx
    import onnxruntime

    config = EXPORTED[0]
    layer = config.make()
    module, example = (WithLengths(layer).eval(), (config.input(7, 3), torch.tensor([7, 2, 5]))) if lengths else \
        (ScanRNN(layer), (config.input(7, 3),))
    batch = Dim("batch")
    shapes = {"x": {0: Dim("time"), 1: batch}, "lengths": {0: batch}} if lengths else \
        {"input": {0: Dim("time"), 1: batch}}
    path = tmp_path / "model.onnx"
    torch.onnx.export(module, example, path, dynamo=True, dynamic_shapes=shapes, verbose=False)
    graph = onnx.load(path).graph
    assert "Scan" in {n.op_type for n in graph.node}
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim[:2]] == ["time", "batch"]
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for t, b in itertools.product((1, 7, 64), (1, 3)):
        x = config.input(t, b)
        feed = {names[0]: x.numpy()}
        with torch.no_grad():
            if lengths:
                lens = torch.tensor([t, max(1, t // 2), 1][:b])
                feed[names[1]] = lens.numpy()
                out, state = layer(pack_padded_sequence(x, lens, enforce_sorted=False))
                out = pad_packed_sequence(out, total_length=t)[0]
            else:
                out, state = layer(x)
        want = outputs((out, state), True)
        got = dict(zip(want, (torch.from_numpy(a) for a in session.run(None, feed))))
        assert_same(got, want, f"{config} lengths={lengths} T={t} B={b} onnxruntime")


@pytest.mark.slow  # about 35 s in all, most of it lowering
@pytest.mark.parametrize("config", EXPORTED + ["lengths"],
                         ids=lambda c: str(c) if isinstance(c, Config) else f"{EXPORTED[0]}-lengths")
def test_executorch_runs_the_lowered_program_at_any_length(tmp_path, config):
    """ExecuTorch keeps only the time axis dynamic: B is fixed at the example's, T varies."""
    pytest.importorskip("executorch")  # an optional dependency: pip install executorch==1.5.1 beside torch==2.13.0
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    with_lengths = config == "lengths"
    config = EXPORTED[0] if with_lengths else config
    layer = config.make()
    b, time = 3, Dim("time", min=1, max=512)
    if with_lengths:
        module, example = WithLengths(layer).eval(), (config.input(7, b), torch.tensor([7, 2, 5]))
        shapes = {"x": {0: time}, "lengths": None}
    else:
        module, example = ScanRNN(layer), (config.input(7, b),)
        shapes = {"input": {1 if config.batch_first else 0: time}}
    program = torch.export.export(module, example, dynamic_shapes=shapes)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    path = tmp_path / "model.pte"
    path.write_bytes(lowered.buffer)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    for t in (1, 7, 37, 300):
        x = config.input(t, b)
        with torch.no_grad():
            if with_lengths:
                lens = torch.tensor([t, max(1, t // 2), 1])
                out, state = layer(pack_padded_sequence(x, lens, enforce_sorted=False))
                want = outputs((pad_packed_sequence(out, total_length=t)[0], state), config.lstm)
                got = method.execute([x, lens])
            else:
                want = outputs(layer(x), config.lstm)
                got = method.execute([x])
        assert_same(dict(zip(want, got)), want, f"{config} lengths={with_lengths} T={t} B={b} ExecuTorch")
