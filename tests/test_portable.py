"""Portable recurrent graphs: one model.onnx, the same answers in onnxruntime, the ONNX reference evaluator,
OpenVINO and tract (where tract runs it).

Invariants:
- ``PortableRNN`` (the form every recurrent layer is exported in) computes what the torch layer computes, for
  LSTM/GRU/RNN, uni- and bidirectional, 1 and 2 layers, batch_first or not, packed or padded: every output at
  valid positions and h_n (and c_n where the sequences are full length);
- its graph has only forward-direction recurrent nodes, no ``sequence_lens``, explicit initial states, and no
  ReverseSequence or GatherElements;
- a graph in torch's own form (``sequence_lens``, ``direction="bidirectional"``) is caught: the reference
  evaluator and OpenVINO disagree with onnxruntime and the check says so;
- every registered artifact agrees across the runtimes, as its manifest records.
"""

from __future__ import annotations

import itertools
import json
import warnings

import onnx
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import runtime
from export import runtimes
from export.feeds import Plan
from export.rewrite import PortableRNN
from export.verify import OTHER_RUNTIMES, Subject, check_runtimes, runtime_backend
from export.zoo.build import subject_for
from export.zoo.registry import REGISTRY
from runtime.artifact import ONNX_FILE, IOSpec, TensorSpec, read_manifest

from .conftest import ARTIFACTS

LAYERS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}


@pytest.mark.parametrize("cell, bidirectional, layers, batch_first, packed",
                         list(itertools.product(LAYERS, (False, True), (1, 2), (False, True), (False, True))))
def test_portable_rnn_computes_what_the_torch_layer_computes(cell, bidirectional, layers, batch_first, packed):
    torch.manual_seed(0)
    rnn = LAYERS[cell](5, 7, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first).eval()
    portable = PortableRNN(rnn)
    t_len, batch = 9, 4
    x = torch.randn((batch, t_len, 5) if batch_first else (t_len, batch, 5))
    lengths = torch.tensor([9, 3, 6, 1])
    name = f"{cell} bidirectional={bidirectional} layers={layers} batch_first={batch_first} packed={packed}"
    with torch.no_grad():
        if packed:
            seq = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
            (want, want_state), (got, got_state) = rnn(seq), portable(seq)
            want = pad_packed_sequence(want, batch_first=batch_first)[0]
            got = pad_packed_sequence(got, batch_first=batch_first)[0]
        else:
            (want, want_state), (got, got_state) = rnn(x), portable(x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5, msg=lambda m: f"{name}: output: {m}")
    h_want, h_got = (want_state[0], got_state[0]) if cell == "LSTM" else (want_state, got_state)
    torch.testing.assert_close(h_got, h_want, atol=1e-6, rtol=1e-5, msg=lambda m: f"{name}: h_n: {m}")
    if cell == "LSTM" and not packed:  # c_n at a padded sequence's end is the one thing not portable
        torch.testing.assert_close(got_state[1], want_state[1], atol=1e-6, rtol=1e-5, msg=lambda m: f"{name}: c_n: {m}")


class PackedBiLSTMTagger(nn.Module):
    """A tagger over padded batches, as usually written: packed bidirectional LSTM, padded back."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 6, num_layers=2, bidirectional=True)
        self.out = nn.Linear(12, 4)

    def forward(self, words, lengths):
        packed = pack_padded_sequence(self.emb(words), lengths, enforce_sorted=False)
        y, _ = pad_packed_sequence(self.lstm(packed)[0], total_length=words.size(0))
        return self.out(y)


def _export_torch_form(path):
    """torch's own ONNX export of the tagger: LSTM nodes with sequence_lens and direction=bidirectional."""
    torch.manual_seed(1)
    model = PackedBiLSTMTagger().eval()
    words, lengths = torch.randint(1, 20, (6, 3)), torch.tensor([6, 2, 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (words, lengths), str(path), dynamo=False, opset_version=17,
                          input_names=["words", "lengths"], output_names=["scores"],
                          dynamic_axes={"words": {0: "time", 1: "batch"}, "lengths": {0: "batch"},
                                        "scores": {0: "time", 1: "batch"}})
    return model


def test_torch_form_is_caught_by_the_cross_runtime_check(tmp_path):
    path = tmp_path / "torch_form.onnx"
    _export_torch_form(path)
    lstm = [n for n in onnx.load(str(path)).graph.node if n.op_type == "LSTM"]
    assert lstm and all(n.input[4] for n in lstm), "expected torch's form: LSTM nodes with sequence_lens"
    io = IOSpec(inputs=(TensorSpec("words", "int64", ("time", "batch")), TensorSpec("lengths", "int64", ("batch",))),
                outputs=(TensorSpec("scores", "float32", ("time", "batch", 4)),), lengths="lengths")
    plan = Plan({"time": 6, "batch": 3}, {"words": (1, 19), "lengths": (2, 6)}, False,
                {"time": [1, 2, 6, 18], "batch": [1, 3]})
    ort_run = runtimes.load("onnxruntime", path)
    subject = Subject("torch-form", "module", io, plan, {"onnxruntime": ort_run})
    diffs, record = check_runtimes(subject, path)
    assert record["onnx-reference"]["status"] == "disagrees", record
    assert record["openvino"]["status"] == "disagrees", record
    assert record["tract"]["status"] == "refused" and "seq_len" in record["tract"]["error"], record
    assert any(not d.ok and "onnx-reference" in d.check for d in diffs)


@pytest.mark.slow
def test_the_portable_export_of_the_same_model_agrees_everywhere(tmp_path):
    import export
    model = _export_torch_form(tmp_path / "unused.onnx")
    words, lengths = torch.randint(1, 20, (6, 3)), torch.tensor([6, 2, 4])
    folder = export.export_module(model, (words, lengths), tmp_path / "portable", ["words", "lengths"],
                                  {"words": {0: "time", 1: "batch"}, "lengths": {0: "batch"}}, lengths="lengths")
    graph = onnx.load(str(folder / ONNX_FILE)).graph
    ops = {n.op_type for n in graph.node}
    assert "ReverseSequence" not in ops and "GatherElements" not in ops, ops
    for node in (n for n in graph.node if n.op_type in ("LSTM", "GRU", "RNN")):
        attrs = {a.name: a.s for a in node.attribute}
        assert attrs.get("direction", b"forward") == b"forward", node.name
        assert len(node.input) < 5 or not node.input[4], f"{node.name}: sequence_lens"
        assert len(node.input) >= 6 and node.input[5], f"{node.name}: no explicit initial_h"
    record = runtime.load(folder).manifest.parity["runtimes"]
    assert record["onnx-reference"]["status"] == "agrees" and record["openvino"]["status"] == "agrees", record


def test_every_runtime_is_installed_for_verification():
    """CI verifies with all of them: a missing one would silently shrink the check."""
    versions = runtimes.available()
    assert all(versions[name] for name in runtimes.RUNTIMES), versions


@pytest.mark.parametrize("name, other", [(n, r) for n in REGISTRY for r in OTHER_RUNTIMES])
def test_registered_artifact_agrees_across_runtimes(name, other):
    """Re-run on the committed model.onnx: the same answers as onnxruntime, as the manifest records (tract
    may refuse a graph outright; it may not answer differently)."""
    recorded = read_manifest(ARTIFACTS / name).parity["runtimes"][other]
    subject = subject_for(ARTIFACTS / name)
    subject.backends = {"onnxruntime": runtime_backend(runtime.load(ARTIFACTS / name))}
    diffs, record = check_runtimes(subject, ARTIFACTS / name / ONNX_FILE, names=(other,))
    bad = [str(d) for d in diffs if not d.ok]
    assert not bad, "\n".join(bad)
    assert record[other]["status"] == recorded["status"], (record, recorded)
    assert record[other]["status"] in (("agrees", "refused") if other in ("tract",) else ("agrees",)), record


class PackedLSTMClassifier(nn.Module):
    """Uses the cell state of a packed LSTM: the one output the portable form cannot give."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(4, 5)

    def forward(self, x, lengths):
        _, (h, c) = self.lstm(pack_padded_sequence(self.emb(x), lengths, enforce_sorted=False))
        return torch.cat([h[-1], c[-1]], dim=-1)


def test_c_n_the_portable_form_cannot_give_comes_from_the_scan_path(tmp_path):
    """The portable form has no per-sequence c_n (the traced path fails saying so); the scan form freezes each
    sequence's carry at its length, so the ONNX Scan path exports the classifier that reads c_n."""
    import export
    torch.manual_seed(0)
    folder = export.export_module(PackedLSTMClassifier().eval(), (torch.randint(0, 10, (6, 3)), torch.tensor([6, 2, 4])),
                                  tmp_path / "cn", ["x", "lengths"], {"x": {0: "time", 1: "batch"}, "lengths": {0: "batch"}},
                                  lengths="lengths", formats=[])
    m = json.loads((folder / "manifest.json").read_text())
    assert m["export"]["onnx_path"] == "scan", m["export"]["exporter_attempts"]
    traced = next(a for a in m["export"]["exporter_attempts"] if a.startswith("traced:"))
    assert "c_n" in traced and "portable form" in traced and "\x1b[" not in traced, traced
