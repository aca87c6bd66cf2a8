"""One ONNX runtime's bug blocks no one, and the names users already know work (issue 21, items 1 and 4).

Invariants:
- where torch and onnxruntime (what ``runtime`` runs) agree, another ONNX runtime that refuses model.onnx or
  answers differently is recorded in the manifest (agrees / refused, why / disagrees, max diff and first failing
  case) and said in one warning line; the artifact is written;
- ``portable=True`` (``--portable``) makes every installed runtime's agreement required (tract may refuse);
- ``dynamic_axes=`` (torch.onnx's name) is taken as ``axes=``; its list form, which has no symbols, is refused
  saying how to write it;
- an input of rank >= 2 with no dynamic axis, and a sequence model with no time axis, get one warning line.

A runtime's bug is simulated by replacing how verification loads that runtime (``export.runtimes.load``): the
real runtimes agree on every model seqedge can export, which is the point of the portable forms.
"""

from __future__ import annotations

import json
import warnings
from typing import List, Tuple

import numpy as np
import pytest
import torch

import export
import runtime
from export import runtimes

from . import user_models
from .conftest import run_cli


def _buggy(monkeypatch, name: str, how: str) -> None:
    """``name`` answers 0.5 off on every float output ("wrong"), or refuses the graph at load ("refuses")."""
    real = runtimes.load

    def load(which, path):
        run = real(which, path)
        if which != name:
            return run
        if how == "refuses":
            raise RuntimeError(f"{name}: simulated bug: operator LSTM is not implemented")
        return lambda feed: {k: v + np.float32(0.5) if v.dtype == np.float32 else v for k, v in run(feed).items()}

    monkeypatch.setattr(runtimes, "load", load)


def _gru(tmp_path, **kwargs):
    model, args, names, axes = user_models.case_rnnmodel_gru()
    return model, lambda dest, **more: export.export_module(model, args, tmp_path / dest, names, axes, formats=[],
                                                            **{**kwargs, **more})


@pytest.mark.parametrize("how, status", [("wrong", "disagrees"), ("refuses", "refused")])
def test_another_runtimes_bug_is_recorded_and_warned_not_fatal(tmp_path, monkeypatch, how, status):
    _buggy(monkeypatch, "openvino", how)
    model, run = _gru(tmp_path)
    with pytest.warns(export.PortabilityWarning) as caught:
        folder = run("gru")
    lines = [str(w.message) for w in caught if issubclass(w.category, export.PortabilityWarning)]
    assert len(lines) == 1 and "openvino" in lines[0] and "portable=True" in lines[0], lines
    m = runtime.load(folder).manifest
    record = m.parity["runtimes"]
    assert record["openvino"]["status"] == status, record
    assert record["onnx-reference"]["status"] == "agrees", record
    assert m.parity["ok"] and m.parity["portable_required"] is False
    if how == "wrong":
        assert record["openvino"]["max_abs_diff"] == pytest.approx(0.5, abs=1e-3), record
        assert "onnxruntime vs openvino" in record["openvino"]["first_failure"], record
        assert "max abs diff 0.5" in lines[0], lines[0]
    else:
        assert "simulated bug" in record["openvino"]["error"] and "simulated bug" in lines[0], record
    # what the runtime ships answers as eager
    tokens = np.arange(12, dtype=np.int64).reshape(4, 3)
    with torch.no_grad():
        want = model(torch.from_numpy(tokens), model.init_hidden(3))[0].numpy()
    np.testing.assert_allclose(runtime.load(folder).run(input=tokens)["output_0"], want, atol=1e-5)


@pytest.mark.parametrize("how", ["wrong", "refuses"])
def test_portable_requires_every_runtime(tmp_path, monkeypatch, how):
    _buggy(monkeypatch, "openvino", how)
    _, run = _gru(tmp_path)
    with pytest.raises(export.ParityError) as e:
        run("gru", portable=True)
    assert "openvino" in str(e.value), str(e.value)
    assert "c_n" not in str(e.value), "the LSTM c_n note on a GRU model"
    assert not (tmp_path / "gru").exists()


def test_portable_export_records_it_and_tract_may_refuse(tmp_path, monkeypatch):
    _buggy(monkeypatch, "tract", "refuses")
    _, run = _gru(tmp_path)
    with pytest.warns(export.PortabilityWarning, match="tract refuses"):
        folder = run("gru", portable=True)
    m = runtime.load(folder).manifest
    assert m.parity["portable_required"] is True and m.parity["runtimes"]["tract"]["status"] == "refused"


@pytest.mark.slow
def test_cli_portable_flag(tmp_path):
    out = run_cli("export", "--module", "tests/user_models.py:LSTMTagger", "--kwargs",
                  json.dumps({"embedding_dim": 6, "hidden_dim": 6, "vocab_size": 9, "tagset_size": 3}),
                  "--input", "sentence:int64[time=5]:0..8", "--portable", "--formats", "", "--out", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["parity"]["portable_required"] is True
    assert all(v["status"] in ("agrees", "reference") for v in m["parity"]["runtimes"].values()), m["parity"]["runtimes"]


def test_registered_models_require_portability():
    from .conftest import ARTIFACTS
    for folder in sorted(p for p in ARTIFACTS.iterdir() if (p / "manifest.json").exists()):
        assert runtime.load(folder).manifest.parity["portable_required"] is True, folder.name


# ---- familiar names, silent pins ------------------------------------------------------------------------------

def test_dynamic_axes_is_taken_as_axes(tmp_path):
    model, args, names, axes = user_models.case_rnnmodel_gru()
    dynamic_axes = {**axes, "output_0": {0: "time*batch"}}  # torch.onnx takes outputs too: dropped, learned by running
    folder = export.export_module(model, args, tmp_path / "gru", names, dynamic_axes=dynamic_axes, formats=[])
    assert [t.shape for t in runtime.load(folder).io.inputs] == [("time", "batch"), (2, "batch", 24)]


@pytest.mark.parametrize("kwargs, expected", [
    ({"dynamic_axes": {"input": [0, 1]}}, "dynamic_axes['input']: a list of axes ([0, 1]) names no symbols"),
    ({"dynamic_axes": {"input": {0: "time"}}, "axes": {"input": {0: "time"}}}, "pass one"),
    ({}, "axes: declare the axes that vary"),
])
def test_dynamic_axes_mistakes_fail_in_one_line(tmp_path, kwargs, expected):
    model, args, names, _ = user_models.case_rnnmodel_gru()
    with pytest.raises(export.ExportError) as e:
        export.export_module(model, args, tmp_path / "m", names, **kwargs)
    assert expected in str(e.value), str(e.value)
    assert "axes={'input': {0: SYMBOL, 1: SYMBOL}}" in str(e.value) or "list" not in expected
    assert not (tmp_path / "m").exists()


class Forecaster(torch.nn.Module):
    """A time-series forecaster as people write them: batch_first LSTM, the last step through a linear head."""

    def __init__(self, n_features=3, hidden=8):
        super().__init__()
        self.lstm = torch.nn.LSTM(n_features, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def test_forgotten_time_axis_and_fixed_inputs_are_warned(tmp_path):
    model = Forecaster().eval()
    with pytest.warns(export.ExportWarning) as caught:
        export.export_module(model, (torch.randn(2, 16, 3),), tmp_path / "f", ["x"], {"x": {0: "batch"}}, formats=[])
    lines = [str(w.message) for w in caught if issubclass(w.category, export.ExportWarning)]
    assert any("no input declares a 'time' axis" in line and "x['batch', 16, 3]" in line for line in lines), lines
    with pytest.warns(export.ExportWarning) as caught:
        export.export_module(model, (torch.randn(2, 16, 3),), tmp_path / "g", ["x"], {}, formats=[])
    lines = [str(w.message) for w in caught]
    assert len(lines) == 2 and "input 'x' has no dynamic axis: its shape [2, 16, 3]" in lines[0], lines
    with warnings.catch_warnings():
        warnings.simplefilter("error", export.ExportWarning)  # declared right: no warning
        export.export_module(model, (torch.randn(2, 16, 3),), tmp_path / "h", ["x"], {"x": {0: "batch", 1: "time"}},
                             formats=[])


# ---- no raw torch error; lists in outputs --------------------------------------------------------------------

class DeepSpeechLike(torch.nn.Module):
    """DeepSpeech2's shape of forward: a stack of LSTMs, each layer's (h, c) collected in a Python list that is
    returned beside the output."""

    def __init__(self):
        super().__init__()
        self.rnns = torch.nn.ModuleList([torch.nn.LSTM(8, 8), torch.nn.LSTM(8, 8)])
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        hidden = []
        for rnn in self.rnns:
            x, h = rnn(x)
            hidden.append(h)
        return self.fc(x), hidden


def test_outputs_holding_python_lists_are_flattened_like_tuples(tmp_path):
    model = DeepSpeechLike().eval()
    folder = export.export_module(model, (torch.randn(7, 2, 8),), tmp_path / "ds", ["x"],
                                  {"x": {0: "time", 1: "batch"}}, formats=[])
    m = runtime.load(folder)
    assert len(m.io.outputs) == 5 and "flattened_outputs" in m.manifest.export  # y, then (h, c) of each layer
    for t in (1, 7, 64):
        x = np.random.default_rng(t).standard_normal((t, 3, 8), dtype=np.float32)
        with torch.no_grad():
            y, hidden = model(torch.from_numpy(x))
        got = m.run(x=x)
        want = [y, *(t_ for h in hidden for t_ in h)]
        for spec, w in zip(m.io.outputs, want):
            np.testing.assert_allclose(got[spec.name], w.numpy(), atol=1e-5, err_msg=f"T={t} {spec.name}")


class Untraceable(torch.nn.Module):
    """A forward that returns a Python int beside its output: eager runs, no exported graph can return it."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(4, 4)

    def forward(self, x):
        y, _ = self.rnn(x)
        return y, int(x.shape[0])


def test_a_forward_returning_an_int_is_refused_saying_what_it_returned_and_where(tmp_path):
    with pytest.raises(export.ExportError) as e:
        export.export_module(Untraceable().eval(), (torch.randn(5, 2, 4),), tmp_path / "u", ["x"],
                             {"x": {0: "time", 1: "batch"}}, formats=[])
    message = str(e.value)
    assert message.startswith("u: forward returns what no exported graph can: ") and "fails" not in message, message
    assert "output[1] is a Python int (5)" in message, message
    assert not (tmp_path / "u").exists()


class ScriptCell(torch.jit.ScriptModule):
    """An LSTM cell as in custom_lstms.py-style code: a torch.jit.ScriptModule with script methods."""

    def __init__(self, inp: int, hidden: int):
        super().__init__()
        self.weight_ih = torch.nn.Parameter(torch.randn(4 * hidden, inp) * 0.3)
        self.weight_hh = torch.nn.Parameter(torch.randn(4 * hidden, hidden) * 0.3)
        self.bias = torch.nn.Parameter(torch.randn(4 * hidden) * 0.1)

    @torch.jit.script_method
    def forward(self, x: torch.Tensor, state: Tuple[torch.Tensor, torch.Tensor]
                ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        h, c = state
        i, f, g, o = (x @ self.weight_ih.t() + h @ self.weight_hh.t() + self.bias).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ScriptLayer(torch.jit.ScriptModule):
    def __init__(self, inp: int, hidden: int):
        super().__init__()
        self.cell = ScriptCell(inp, hidden)

    @torch.jit.script_method
    def forward(self, x: torch.Tensor, state: Tuple[torch.Tensor, torch.Tensor]
                ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        steps = torch.jit.annotate(List[torch.Tensor], [])
        for t in range(x.size(0)):
            out, state = self.cell(x[t], state)
            steps += [out]
        return torch.stack(steps), state


class WithScriptLayer(torch.nn.Module):
    """A plain nn.Module holding a ScriptModule layer, a head after it, state in and out."""

    def __init__(self):
        super().__init__()
        self.layer = ScriptLayer(4, 6)
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x, h, c):
        y, (h, c) = self.layer(x, (h, c))
        return self.head(y), h, c


def test_a_script_module_layer_inside_a_module_exports_with_time_dynamic(tmp_path):
    model = WithScriptLayer().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", export.PortabilityWarning)  # tract cannot run an ONNX Loop (recorded)
        folder = export.export_module(model, (torch.randn(5, 2, 4), torch.zeros(2, 6), torch.zeros(2, 6)),
                                      tmp_path / "s", ["x", "h_0", "c_0"],
                                      {"x": {0: "time", 1: "batch"}, "h_0": {0: "batch"}, "c_0": {0: "batch"}},
                                      formats=[])
    m = runtime.load(folder)
    assert m.manifest.export["onnx_path"] == "scripted", m.manifest.export["exporter_attempts"]
    for t, b in ((1, 1), (7, 3), (64, 3)):
        rng = np.random.default_rng(t)
        x = rng.standard_normal((t, b, 4), dtype=np.float32)
        h, c = (rng.standard_normal((b, 6), dtype=np.float32) for _ in range(2))
        with torch.no_grad():
            want = model(*(torch.from_numpy(a) for a in (x, h, c)))
        got = m.run(x=x, h_0=h, c_0=c)
        for spec, w in zip(m.io.outputs, want):
            np.testing.assert_allclose(got[spec.name], w.numpy(), atol=1e-5, err_msg=f"T={t} B={b} {spec.name}")


# ---- state for per-call models -------------------------------------------------------------------------------

class StreamingVAD(torch.nn.Module):
    """A silero-VAD-like streaming step: one audio chunk per call, the LSTM state stacked into one tensor in and
    out under the names such models use (``state`` -> ``stateN``)."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(16, 8)
        self.cell = torch.nn.LSTMCell(8, 8)
        self.decoder = torch.nn.Linear(8, 1)

    def forward(self, chunk, state):
        h, c = self.cell(torch.relu(self.encoder(chunk)), (state[0], state[1]))
        return torch.sigmoid(self.decoder(h)), torch.stack([h, c])


class PredictorStep(torch.nn.Module):
    """An RNN-T predictor step with its own names: nothing pairs them up."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 6)
        self.cell = torch.nn.GRUCell(6, 6)

    def forward(self, token, memory):
        nxt = self.cell(self.embed(token), memory)
        return torch.tanh(nxt), nxt


def _warned(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if issubclass(w.category, export.ExportWarning)]


def test_per_call_models_get_a_state_pairing_proposed_or_told_how(tmp_path):
    vad, args = StreamingVAD().eval(), (torch.randn(2, 16), torch.zeros(2, 2, 8))
    axes = {"chunk": {0: "batch"}, "state": {1: "batch"}}
    lines = _warned(lambda: export.export_module(vad, args, tmp_path / "v", ["chunk", "state"], axes,
                                                 output_names=["prob", "stateN"], formats=[]))
    assert len(lines) == 1 and "state={'state': 'stateN'}" in lines[0], lines
    lines = _warned(lambda: export.export_module(vad, args, tmp_path / "w", ["chunk", "state"], axes,
                                                 output_names=["prob", "stateN"], state={"state": "stateN"},
                                                 formats=[]))
    assert lines == [] and runtime.load(tmp_path / "w").io.state == (("state", "stateN"),)
    step = PredictorStep().eval()
    lines = _warned(lambda: export.export_module(step, (torch.tensor([1, 2]), torch.zeros(2, 6)), tmp_path / "p",
                                                 ["token", "memory"], {"token": {0: "batch"}, "memory": {0: "batch"}},
                                                 formats=[]))
    assert len(lines) == 1 and "pass state={'INPUT': 'OUTPUT'}" in lines[0], lines
