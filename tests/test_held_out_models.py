"""Held-out recurrent models, written the way their kinds are published (issue 21, items 2 and 3).

Each model is ours, written in the style of public code of its kind (read, not copied): DeepSpeech2's masked
conv front-end and its list of per-layer states, torchaudio's RNN-T predictor (a hand-written LayerNorm LSTM
looping over ``unbind(0)``, state as a list of lists of tensors), the BiLSTM-CRF tutorial's features (an
``init_hidden`` that draws ``torch.randn`` on every call), a time-series forecaster, a silero-VAD-like step.

Invariants:
- a model that can be exported is, with its time and batch axes dynamic, and the runtime gives eager's answers
  at T in {1, 2, 7, 64, 300} and batch in {1, 3} (per-call models: chained calls equal eager's chain);
- a model no export can get right is refused with an ExportError that names the cause at the user's own line:
  a per-sample ``.item()`` loop, a tensor loop over ``unbind``, random numbers drawn in forward.
"""

from __future__ import annotations

import inspect
from typing import List, Optional

import numpy as np
import pytest
import torch

import export
import runtime

TIMES, BATCHES = (1, 2, 7, 64, 300), (1, 3)


# ---- models ---------------------------------------------------------------------------------------------------

class MaskConv(torch.nn.Module):
    """A conv front-end masked past each sample's length in a Python loop over the lengths (DeepSpeech2's)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Sequential(torch.nn.Conv1d(8, 8, 3, padding=1), torch.nn.Hardtanh(0, 20))

    def forward(self, x, lengths):
        x = self.conv(x)
        mask = torch.zeros(x.size(), dtype=torch.bool)
        for i, length in enumerate(lengths):
            length = length.item()
            if x.size(2) - length > 0:
                mask[i].narrow(1, length, x.size(2) - length).fill_(1)
        return x.masked_fill(mask, 0), lengths


class SpeechModel(torch.nn.Module):
    """MaskConv, then an LSTM over (time, batch, features) and log-probabilities per step: a CTC recogniser."""

    def __init__(self):
        super().__init__()
        self.front = MaskConv()
        self.rnn = torch.nn.LSTM(8, 8)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x, lengths):  # x: (batch, features, time)
        x, lengths = self.front(x, lengths)
        y, _ = self.rnn(x.permute(2, 0, 1))
        return self.fc(y).log_softmax(-1), lengths


class LayerNormLSTM(torch.nn.Module):
    """torchaudio's predictor layer style: gates for the whole input at once, then a loop over ``unbind(0)``."""

    def __init__(self, inp: int, hidden: int):
        super().__init__()
        self.x2g = torch.nn.Linear(inp, 4 * hidden)
        self.p2g = torch.nn.Linear(hidden, 4 * hidden, bias=False)
        self.g_norm = torch.nn.LayerNorm(4 * hidden)
        self.hidden = hidden

    def forward(self, input: torch.Tensor, state: Optional[List[torch.Tensor]]):
        if state is None:
            h = torch.zeros(input.size(1), self.hidden, dtype=input.dtype)
            c = torch.zeros(input.size(1), self.hidden, dtype=input.dtype)
        else:
            h, c = state
        gated = self.x2g(input)
        outputs = []
        for gates in gated.unbind(0):
            gates = self.g_norm(gates + self.p2g(h))
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=0), [h, c]


class Predictor(torch.nn.Module):
    """An RNN-T predictor: tokens (batch, tokens), lengths, and a state that is a list of [h, c] per layer."""

    def __init__(self, vocab: int = 12, dim: int = 6, layers: int = 2):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, dim)
        self.input_norm = torch.nn.LayerNorm(dim)
        self.layers = torch.nn.ModuleList([LayerNormLSTM(dim, dim) for _ in range(layers)])
        self.linear = torch.nn.Linear(dim, 8)

    def forward(self, input: torch.Tensor, lengths: torch.Tensor,
                state: Optional[List[List[torch.Tensor]]] = None):
        x = self.input_norm(self.embedding(input.permute(1, 0)))
        state_out: List[List[torch.Tensor]] = []
        for index, layer in enumerate(self.layers):
            x, layer_state = layer(x, None if state is None else state[index])
            state_out.append(layer_state)
        return self.linear(x).permute(1, 0, 2), lengths, state_out


class CRFFeatures(torch.nn.Module):
    """The BiLSTM-CRF tutorial's emission scores: ``init_hidden`` draws a random initial state on every call."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(20, 6)
        self.lstm = torch.nn.LSTM(6, 4, bidirectional=True)
        self.hidden2tag = torch.nn.Linear(8, 5)

    def init_hidden(self, batch):
        return (torch.randn(2, batch, 4), torch.randn(2, batch, 4))

    def forward(self, sentence):
        self.hidden = self.init_hidden(sentence.size(1))
        out, self.hidden = self.lstm(self.embedding(sentence), self.hidden)
        return self.hidden2tag(out)


class ListStateLM(torch.nn.Module):
    """DeepSpeech2's return: the output beside a Python list of each layer's (h, c)."""

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


class Forecaster(torch.nn.Module):
    """A batch_first LSTM forecaster: the last step's hidden state through a linear head."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 8, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def _line(obj, text: str) -> str:
    """``file:line`` of the line of ``obj``'s source that contains ``text``."""
    lines, first = inspect.getsourcelines(obj)
    offset = next(i for i, line in enumerate(lines) if text in line)
    return f"{inspect.getsourcefile(obj)}:{first + offset}"


# ---- refused, naming the cause at its line ------------------------------------------------------------------

def test_a_per_sample_item_loop_is_named_at_its_own_line(tmp_path):
    with pytest.raises(export.ExportError) as e:
        export.export_module(SpeechModel().eval(), (torch.randn(2, 8, 12), torch.tensor([12, 9])), tmp_path / "ds",
                             ["x", "lengths"], {"x": {0: "batch", 2: "time"}, "lengths": {0: "batch"}},
                             lengths="lengths", formats=[])
    message = str(e.value)
    assert message.startswith("ds: "), message[:200]
    assert f"a tensor turned into a Python number (.item(), int(t), float(t)) at {_line(MaskConv.forward, '.item()')}" \
        in message, message[-2000:]
    assert "Expected a value of type 'float' for argument 'min_val'" in message, message[-600:]  # script's reason
    assert not (tmp_path / "ds").exists()


def test_random_numbers_drawn_in_forward_are_refused_at_their_line(tmp_path):
    with pytest.raises(export.ExportError) as e:
        export.export_module(CRFFeatures().eval(), (torch.randint(0, 20, (6, 2)),), tmp_path / "crf", ["sentence"],
                             {"sentence": {0: "time", 1: "batch"}}, formats=[])
    message = str(e.value)
    assert message.startswith("crf: forward gives other outputs on two identical calls"), message
    assert f"it draws random numbers at {_line(CRFFeatures.init_hidden, 'torch.randn')}" in message, message


@pytest.mark.slow
def test_a_predictor_looping_over_unbind_is_refused_at_the_loop(tmp_path):
    state = [[torch.zeros(2, 6), torch.zeros(2, 6)] for _ in range(2)]
    names = ["tokens", "lengths", "h0", "c0", "h1", "c1"]
    axes = {"tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, **{n: {0: "batch"} for n in names[2:]}}
    with pytest.raises(export.ExportError) as e:
        export.export_module(Predictor().eval(), (torch.randint(0, 12, (2, 5)), torch.tensor([5, 3]), state),
                             tmp_path / "p", names, axes, formats=[])
    message = str(e.value)
    assert message.startswith("p: no ONNX path keeps the declared axes dynamic"), message[:300]
    assert f"unbind splits time = 5 into a Python list at {_line(LayerNormLSTM.forward, 'unbind(0)')}" in message, message
    assert "THPVariable_Check" in message  # the scripted path's own first line, as torch gives it


# ---- exported, equal to eager at every length and batch -----------------------------------------------------

def _eager(model, *arrays):
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in arrays))


def _flat(out) -> list[np.ndarray]:
    if isinstance(out, torch.Tensor):
        return [out.numpy()]
    return [a for item in out for a in _flat(item)]


def _same(got: dict, want, m: runtime.Model, case: str) -> None:
    for spec, w in zip(m.io.outputs, _flat(want), strict=True):
        np.testing.assert_allclose(got[spec.name], w, rtol=1e-4, atol=1e-5, err_msg=f"{case}, output {spec.name}")


@pytest.mark.parametrize("kind", ["list-state-lm", "forecaster"])
def test_held_out_sequence_models_equal_eager_at_every_length_and_batch(tmp_path, kind):
    model = {"list-state-lm": ListStateLM, "forecaster": Forecaster}[kind]().eval()
    if kind == "forecaster":
        example, axes, layout = torch.randn(2, 16, 3), {"x": {0: "batch", 1: "time"}}, lambda t, b: (b, t, 3)
    else:
        example, axes, layout = torch.randn(16, 2, 8), {"x": {0: "time", 1: "batch"}}, lambda t, b: (t, b, 8)
    m = runtime.load(export.export_module(model, (example,), tmp_path / kind, ["x"], axes, formats=[]))
    for t in TIMES:
        for b in BATCHES:
            x = np.random.default_rng(t * 10 + b).standard_normal(layout(t, b), dtype=np.float32)
            _same(m.run(x=x), _eager(model, x), m, f"{kind} T={t} B={b}")


def test_a_per_call_predictor_with_list_of_lists_state_chains_like_eager(tmp_path):
    """One token per call (what torchaudio's streaming decoder does): state in and out, four tensors."""
    model = Predictor().eval()
    names, outs = ["token", "lengths", "h0", "c0", "h1", "c1"], ["logits", "lengths_out", "h0_n", "c0_n", "h1_n", "c1_n"]
    axes = {n: {0: "batch"} for n in names}
    state = [[torch.zeros(2, 6), torch.zeros(2, 6)] for _ in range(2)]
    folder = export.export_module(model, (torch.randint(0, 12, (2, 1)), torch.tensor([1, 1]), state), tmp_path / "p",
                                  names, axes, output_names=outs, state={n: f"{n}_n" for n in names[2:]}, formats=[])
    m = runtime.load(folder)
    assert m.io.state == tuple((n, f"{n}_n") for n in names[2:])
    for b in BATCHES:
        rng = np.random.default_rng(b)
        carried = {n: np.zeros((b, 6), np.float32) for n in names[2:]}
        eager_state = None
        for step in range(7):
            token = rng.integers(0, 12, (b, 1))
            got = m.run(token=token, lengths=np.ones(b, np.int64), **carried)
            with torch.no_grad():
                want = model(torch.from_numpy(token), torch.ones(b, dtype=torch.int64), eager_state)
            _same(got, want, m, f"predictor step {step} B={b}")
            eager_state = want[2]
            carried = {i: got[o] for i, o in m.io.state}


class CountingLM(torch.nn.Module):
    """A model that counts its calls in a buffer, changed in place in forward."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(4, 4)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        y, _ = self.rnn(x)
        return y * self.calls


def test_a_buffer_changed_in_forward_is_named(tmp_path):
    model = CountingLM().eval()
    with pytest.raises(export.ExportError) as e:
        export.export_module(model, (torch.randn(5, 2, 4),), tmp_path / "c", ["x"], {"x": {0: "time", 1: "batch"}},
                             formats=[])
    assert "forward changes buffer(s) ['calls'] in place" in str(e.value), e.value
    assert float(model.calls) == 0.0  # the user's module is given back as it came


def test_an_artifact_folder_that_is_a_symlink_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(export.ExportError, match="is a symbolic link"):
        export.export_module(Forecaster().eval(), (torch.randn(2, 16, 3),), tmp_path / "link", ["x"],
                             {"x": {0: "batch", 1: "time"}}, formats=[], force=True)
    assert (tmp_path / "link").is_symlink()
