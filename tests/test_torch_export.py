"""The torch.export route of ``export_module``: models as people write them, with their recurrent layers in scan
form, give ``model.pt2`` (torch.export.load) and ``model.pte`` (ExecuTorch) whose time axis really is dynamic, and
an ONNX ``Scan`` where the ONNX RNN operators cannot hold the model portably.

Each artifact is loaded here the way its users load it (torch.export.load, ExecuTorch's own Python runtime, the
seqedge runtime) and run at lengths the export never saw, against the eager module. ``formats=`` chooses the
optional formats; a missing toolchain is said once and recorded, or fails the export when it was asked for.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import export
import runtime
from export import program

from . import user_models
from .conftest import run_cli

LENGTHS = (1, 2, 7, 64, 300)
ATOL = 1e-4  # float32 over 300 steps; the export's own verification holds them to its tolerance formula


def _eager(model, *args):
    hidden = getattr(model, "hidden", None)  # the seed taggers assign self.hidden: every call starts from it
    with torch.no_grad():
        out = model(*args)
    if hidden is not None:
        model.hidden = hidden
    return [t.numpy() for t in export.signature.flat_outputs(out)]


def _close(got, want, case: str) -> None:
    assert len(got) == len(want), f"{case}: {len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g = g.detach().numpy() if isinstance(g, torch.Tensor) else g
        assert g.shape == w.shape, f"{case}, output {i}: shape {g.shape}, expected {w.shape}"
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=1e-5, err_msg=f"{case}, output {i}")


@pytest.fixture(scope="module")
def taggers(tmp_path_factory):
    """The seeds' taggers exactly as written (LSTM, and the GRU the seed says can replace it), exported once."""
    root = tmp_path_factory.mktemp("taggers")
    out = {}
    for name in ("lstm_tagger", "gru_tagger"):
        model, args, names, axes = user_models.CASES[name]()
        out[name] = (model, export.export_module(model, args, root / name, names, axes))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm_tagger", "gru_tagger"])
def test_seed_taggers_as_written_run_at_every_length_in_every_format(taggers, name):
    from executorch.runtime import Runtime

    model, folder = taggers[name]
    m = runtime.load(folder)
    manifest = m.manifest
    # The LSTM tagger's ONNX needs the scan path; the GRU one also scripts into a dynamic ONNX graph.
    want_path = {"lstm_tagger": "scan", "gru_tagger": "scripted"}[name]
    assert manifest.export["onnx_path"] == want_path, manifest.export["exporter_attempts"]
    assert {"model.pt", "model.onnx", "model.ort", "model.pt2", "model.pte"} <= set(manifest.files)
    assert manifest.export["pt2"]["torch_export"]["strict"] is True, manifest.export["pt2"]  # len() stays symbolic
    assert "strict=False" in manifest.export["pt2"]["torch_export"]["attempts"][0]  # the specializing try, recorded
    assert {k: v["status"] for k, v in manifest.parity["runtimes"].items()} == {
        "onnxruntime": "reference", "onnx-reference": "agrees", "openvino": "agrees", "tract": "agrees"}
    pt2 = torch.export.load(str(folder / "model.pt2")).module()
    pte = Runtime.get().load_program(str(folder / "model.pte")).load_method("forward")
    rng = np.random.default_rng(0)
    for t in LENGTHS:
        sentence = torch.from_numpy(rng.integers(0, 9, size=t))
        want = _eager(model, sentence)
        _close([pt2(sentence)], want, f"{name} model.pt2 T={t}")
        _close(pte.execute([sentence]), want, f"{name} model.pte T={t}")
        _close(list(m.run(sentence=sentence.numpy()).values()), want, f"{name} model.onnx T={t}")


@pytest.mark.slow
def test_pte_fixes_the_batch_and_refuses_another(tmp_path):
    """ExecuTorch 1.5.1 keeps only time dynamic: the .pte is made at batch 1 (recorded), time dynamic, and a
    batch-3 feed is an error from ExecuTorch, never an answer."""
    from executorch.runtime import Runtime

    model, args, names, axes = user_models.case_rnnmodel_lstm()
    folder = export.export_module(model, args, tmp_path / "lm", names, axes, formats=["pte"])
    m = json.loads((folder / "manifest.json").read_text())
    pte = m["export"]["pte"]
    assert pte["fixed"] == {"batch": 1} and pte["inputs"]["input"] == ["time", 1], pte
    assert pte["outputs"]["output_0"] == ["time", 40] and pte["max"]["time"] == program.PTE_MAX_SIZE, pte
    assert [r.split(":")[0] for r in pte["refuses"]] == ["batch 2", f"time {program.PTE_MAX_SIZE + 1}",
                                                         "time 2 in step"], pte
    assert pte["step"]["inputs"]["input"] == [1, 1] and pte["step"]["outputs"]["output_0"] == [1, 40], pte
    loaded = Runtime.get().load_program(str(folder / "model.pte"))
    assert set(loaded.method_names) == {"forward", "step"}
    method, step = loaded.load_method("forward"), loaded.load_method("step")
    for t in (1, 37, 300):
        tokens, h, c = torch.randint(0, 40, (t, 1)), torch.randn(2, 1, 24), torch.randn(2, 1, 24)
        want = _eager(model, tokens, (h, c))
        _close(method.execute([tokens, h, c]), want, f"rnnmodel_lstm model.pte forward T={t}")
        # the one-step method, one token at a time with the state carried, equals the whole sequence
        outputs, state = [], (h, c)
        for i in range(t):
            out, *state = step.execute([tokens[i:i + 1], *state])
            outputs.append(out)
        _close([torch.cat(outputs), *state], want, f"rnnmodel_lstm model.pte step x {t}")
    with pytest.raises(RuntimeError):
        method.execute([torch.randint(0, 40, (5, 3)), torch.randn(2, 3, 24), torch.randn(2, 3, 24)])
    with pytest.raises(RuntimeError):
        step.execute([torch.randint(0, 40, (2, 1)), torch.randn(2, 1, 24), torch.randn(2, 1, 24)])


@pytest.mark.slow
def test_pt2_keeps_time_and_batch_dynamic_for_a_packed_classifier(tmp_path):
    """pack_padded_sequence cannot be exported at all; the scan form reads the padded batch and its lengths
    instead, so the classifier's model.pt2 takes any time and batch."""
    model, args, names, axes = user_models.case_packed_gru_classifier()
    folder = export.export_module(model, args, tmp_path / "cls", names, axes, lengths="text_lengths", formats=["pt2"])
    pt2 = torch.export.load(str(folder / "model.pt2")).module()
    rng = np.random.default_rng(1)
    for t, b in [(1, 1), (9, 3), (300, 2)]:
        text = torch.from_numpy(rng.integers(0, 30, size=(t, b)))
        lengths = torch.from_numpy(np.sort(rng.integers(1, t + 1, size=b))[::-1].copy())
        lengths[0] = t
        _close([pt2(text, lengths)], _eager(model, text, lengths), f"packed_gru_classifier model.pt2 T={t} B={b}")


def test_rnn_relu_language_model_is_portable_in_every_runtime(tmp_path):
    """pytorch/examples' RNN_RELU: the ONNX RNN operator's Relu is refused by onnx.reference and answered wrong
    by tract, so the Scan form is tried first, and all four runtimes agree with eager."""
    model, args, names, axes = user_models.case_rnnmodel_rnn_relu()
    folder = export.export_module(model, args, tmp_path / "relu", names, axes, formats=[])
    m = runtime.load(folder).manifest
    assert m.export["onnx_path"] == "scan" and m.export["exporter_attempts"][0].startswith("scan tried first"), \
        m.export["exporter_attempts"]
    assert all(v["status"] in ("reference", "agrees") for v in m.parity["runtimes"].values()), m.parity["runtimes"]
    assert "model.pt2" not in m.files and "model.ort" not in m.files  # formats=[]: none of the optional ones


def test_formats_name_what_must_be_written(tmp_path):
    model, args, names, axes = user_models.case_rnnmodel_gru()
    folder = export.export_module(model, args, tmp_path / "gru", names, axes, formats=["pt2"])
    files = set(runtime.load(folder).manifest.files)
    assert files == {"model.pt", "model.onnx", "model.pt2"}, files
    with pytest.raises(export.ExportError, match=r"formats: unknown \['tflite'\]"):
        export.export_module(model, args, tmp_path / "bad", names, axes, formats=["tflite"])
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_missing_toolchain_is_said_once_or_fails_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.setattr(program, "executorch_version", lambda: None)
    model, args, names, axes = user_models.case_rnnmodel_gru()
    lines: list[str] = []
    folder = export.export_module(model, args, tmp_path / "gru", names, axes, formats=None, log=lines.append)
    said = [line for line in lines if "model.pte not written" in line]
    assert len(said) == 1 and "pip install '.[executorch]'" in said[0], lines
    m = runtime.load(folder).manifest
    assert "model.pte" not in m.files and "executorch is not installed" in m.export["not_written"]["model.pte"]
    with pytest.raises(export.ExportError, match=r"model.pte cannot be made: executorch is not installed"):
        export.export_module(model, args, tmp_path / "asked", names, axes, formats=["pte"])
    assert not (tmp_path / "asked").exists()


@pytest.mark.slow
def test_pt2_and_pte_bytes_do_not_depend_on_the_export(tmp_path):
    """torch.export.save records id(graph) per node and absolute source paths; both are removed, so two exports
    of one model write the same model.pt2 (and the same model.pte)."""
    model, args, names, axes = user_models.case_bigru_tagger()
    a = export.export_module(model, args, tmp_path / "a", names, axes, formats=["pt2", "pte"])
    b = export.export_module(model, args, tmp_path / "b", names, axes, formats=["pt2", "pte"])
    for f in ("model.pt2", "model.pte"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert str(tmp_path).encode() not in (a / "model.pt2").read_bytes()
    assert str(export.__file__).rsplit("/export/", 1)[0].encode() not in (a / "model.pt2").read_bytes()


@pytest.mark.slow
def test_pt2_stack_traces_name_the_users_lines_not_seqedges(tmp_path):
    """A node's stack trace in model.pt2 keeps the user's source line (relative path) but not the frames of
    seqedge's own scan rewrite, whose line numbers would change every committed artifact with each edit."""
    import zipfile

    model, args, names, axes = user_models.case_bigru_tagger()
    folder = export.export_module(model, args, tmp_path / "a", names, axes, formats=["pt2"])
    with zipfile.ZipFile(folder / "model.pt2") as z:
        graph = json.loads(z.read(next(n for n in z.namelist() if n.endswith("models/model.json"))))
    traces = []

    def walk(o):
        if isinstance(o, dict):
            traces.extend(v for k, v in o.items() if k == "stack_trace" and isinstance(v, str))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(graph)
    assert any('File "tests/user_models.py"' in t for t in traces), traces[:3]
    own = [t for t in traces if any(f'File "export/{m}.py"' in t for m in ("scan", "program", "rewrite", "api"))]
    assert not own, own[:2]


@pytest.mark.slow
def test_cli_formats_flag(tmp_path):
    common = ["--module", "tests/user_models.py:LSTMTagger", "--kwargs",
              json.dumps({"embedding_dim": 6, "hidden_dim": 6, "vocab_size": 9, "tagset_size": 3}),
              "--input", "sentence:int64[time=5]:0..8"]
    out = run_cli("export", *common, "--formats", "tflite", "--out", str(tmp_path / "bad"))
    assert out.returncode == 2 and "unknown format(s) ['tflite']" in out.stderr, out.stderr
    out = run_cli("export", *common, "--formats", "pt2", "--out", str(tmp_path / "tagger"))
    assert out.returncode == 0, out.stderr[-3000:]
    files = set(json.loads((tmp_path / "tagger" / "manifest.json").read_text())["files"])
    assert files == {"model.pt", "model.onnx", "model.pt2"}, files
