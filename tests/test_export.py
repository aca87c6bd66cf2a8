"""Exporting: what an artifact holds, that re-running reproduces it, and that a failing artifact is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import runtime
from export.convert import declared_shapes
from export.zoo.registry import REGISTRY
from runtime.artifact import ONNX_FILE, TORCHSCRIPT_FILE, read_manifest, sha256_bytes

from .conftest import ARTIFACTS, ROOT, run_cli


@pytest.mark.parametrize("name", list(REGISTRY))
def test_artifact_holds_checked_graph_with_symbolic_axes_and_metadata(name):
    folder = ARTIFACTS / name
    m = read_manifest(folder)
    for f in (ONNX_FILE, TORCHSCRIPT_FILE):
        assert m.files[f] == sha256_bytes((folder / f).read_bytes()), f"{name}/{f}: SHA-256"
    model = onnx.load(str(folder / ONNX_FILE))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    declared = declared_shapes(model)
    for spec in m.io.inputs + m.io.outputs:
        assert declared[spec.name] == list(spec.shape), f"{name}: {spec.name}"
        if spec.name.startswith("chars_"):  # pos-ewt's spellings: (spellings_k, chars_per_word_k), both symbolic
            assert all(isinstance(d, str) for d in spec.shape), f"{name}: {spec.name}"
        else:
            assert "batch" in spec.shape, f"{name}: {spec.name}"
    for spec in m.io.data_inputs + m.io.data_outputs:  # sequences: time is symbolic too (lengths is per sentence)
        assert "time" in spec.shape or spec.name == "lengths" or spec.name.startswith("chars_"), f"{name}: {spec.name}"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["seqedge.name"] == name and meta["seqedge.kind"] == m.kind
    assert json.loads(meta["seqedge.io"]) == m.io.to_json()
    assert m.export["exporter"] == "torchscript" and m.export["opset"] == model.opset_import[0].version
    for key in ("torch", "onnx", "onnxruntime", "exporter_reason"):
        assert m.export[key], key


@pytest.mark.slow
def test_export_writes_a_verified_artifact_without_warning_spam(tmp_path):
    out = run_cli("export", "lstm-tutorial", "rnn-hello-3layer", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr
    for name in ("lstm-tutorial", "rnn-hello-3layer"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [
            "manifest.json", "model.onnx", "model.ort", "model.pt", "model.pt2", "model.pte",
            "required_operators_and_types.config"]
    assert "| lstm-tutorial" in out.stdout and "max abs diff" in out.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    # Byte-reproducible: the same weights give the committed files, TorchScript included (these two models are
    # untrained, so their weights do not depend on the CPU's floating point).
    for name in ("lstm-tutorial", "rnn-hello-3layer"):
        for f in (ONNX_FILE, TORCHSCRIPT_FILE):
            data = (tmp_path / name / f).read_bytes()
            # model.pt holds the scripted source too: after editing export/models.py, `make run` and commit.
            assert data == (ARTIFACTS / name / f).read_bytes(), (
                f"{name}/{f} differs from the committed file (re-export with `make run` if export/ changed)")
            for path in (ROOT, Path(sys.prefix), Path(torch.__file__).parent):  # no path of this machine inside
                assert str(path).encode() not in data, f"{name}/{f} holds {path}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pos-tutorial", "char-hello-batch-first"])
def test_rerunning_export_reproduces_the_committed_artifact(tmp_path, name):
    out = run_cli("export", name, "--out", str(tmp_path), "--formats", "")  # what the runtime loads
    assert out.returncode == 0, out.stderr
    old, new = runtime.load(ARTIFACTS / name), runtime.load(tmp_path / name)
    if isinstance(old, runtime.Tagger):
        sentences = [s.split() for s in ("The dog ate the apple", "Everybody read that book", "the book ate a dog")]
        assert new.tag_batch(sentences) == old.tag_batch(sentences)
    else:
        assert new.generate() == old.generate()
    ids = np.arange(old.manifest.config["vocab_size"], dtype=np.int64)[:, None]
    seq = old.io.data_inputs[0].name
    a, b = old.run(**{seq: old.time_major(seq, ids)}), new.run(**{seq: new.time_major(seq, ids)})
    for k in a:
        np.testing.assert_allclose(b[k], a[k], atol=1e-5, err_msg=f"{name}: {k}")


@pytest.mark.slow
def test_dynamo_pins_an_lstm_and_the_scan_path_keeps_it_dynamic(tmp_path):
    """torch 2.13's dynamo exporter pins the time axis of an nn.LSTM (recorded as a failed attempt); the dynamo
    exporter on the scan form keeps it, so ``--exporter dynamo`` writes an ONNX Scan that passes every check."""
    out = run_cli("export", "lstm-tutorial", "--out", str(tmp_path), "--exporter", "dynamo", "--formats", "")
    assert out.returncode == 0, out.stdout + out.stderr
    m = json.loads((tmp_path / "lstm-tutorial" / "manifest.json").read_text())
    assert m["export"]["onnx_path"] == "scan" and m["export"]["exporter"] == "dynamo", m["export"]
    assert m["export"]["exporter_attempts"][0].startswith("dynamo:") and "ok" not in m["export"]["exporter_attempts"][0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"
