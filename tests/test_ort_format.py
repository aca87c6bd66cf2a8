"""ORT-format files: what a minimal onnxruntime build loads. Every artifact ships model.ort (model.int8.ort with
int8) and the operator config to build that onnxruntime from; ``runtime.load(path, format="ort")`` and the CLI's
``--ort`` load them with the same checks as the .onnx files. Their answers equal the .onnx files' on the parity
grid (tests/test_parity.py, test_ort_format_answers_as_onnx)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import runtime
from export.zoo.registry import REGISTRY
from runtime.artifact import MANIFEST, OPS_CONFIG, ORT_VARIANTS, ArtifactError, read_manifest

from .conftest import ARTIFACTS, copy_artifact, edit_manifest, rehash, run_cli


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_artifact_records_its_ort_conversion_and_operator_config(name):
    folder = ARTIFACTS / name
    m = read_manifest(folder)
    record = m.export["ort"]
    assert record["operators_config"] == OPS_CONFIG and OPS_CONFIG in m.files, name
    assert set(record["models"]) <= set(ORT_VARIANTS.values()) and set(record["models"]) <= set(m.files), name
    assert {c["what"].split(":")[0] for c in m.parity["checks"]} >= {"ORT format"}, name
    # The config onnxruntime's build reads: "domain;opset;Op{types},Op..." lines, after comments naming the files.
    lines = (folder / OPS_CONFIG).read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    assert [f"# - {f}" for f in sorted(record["models"])] == [c for c in comments if c.startswith("# - ")], name
    ops = [line for line in lines if not line.startswith("#")]
    assert ops and all(re.fullmatch(r"(ai\.onnx|com\.microsoft);\d+;\S.*", line) for line in ops), ops
    assert not any("/tmp" in line for line in lines), lines


def test_load_ort_gives_the_class_of_the_kind_and_the_same_answers():
    lm = runtime.load(ARTIFACTS / "char-shakespeare", format="ort")
    assert isinstance(lm, runtime.CharLM) and lm.onnx_path.name == "model.ort"
    assert lm.generate("ROMEO:", 80) == runtime.load(ARTIFACTS / "char-shakespeare").generate("ROMEO:", 80)
    q = runtime.load(ARTIFACTS / "pos-ewt", variant="int8", format="ort")
    assert isinstance(q, runtime.Tagger) and q.onnx_path.name == "model.int8.ort"
    words = "The quick brown fox jumped over the lazy dog .".split()
    assert q.tag(words) == runtime.load(ARTIFACTS / "pos-ewt", variant="int8").tag(words)


def test_ort_model_refuses_out_of_range_ids_as_the_onnx_one_does():
    """The embedding's rows come from the manifest (the runtime cannot walk an ORT file's graph)."""
    errors = []
    for fmt in ("onnx", "ort"):
        lm = runtime.load(ARTIFACTS / "char-shakespeare", format=fmt)
        with pytest.raises(ValueError) as e:
            lm.run(chars=np.array([[len(lm.symbols)]]))
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "chars" in errors[0], errors


@pytest.mark.parametrize("value, error", [("tflite", ValueError), (1, TypeError), ("ORT", ValueError)])
def test_bad_format_argument_is_named(value, error):
    with pytest.raises(error, match="format: expected one of"):
        runtime.load(ARTIFACTS / "lstm-tutorial", format=value)


def test_a_file_that_is_not_ort_format_is_refused_before_onnxruntime(tmp_path):
    folder = copy_artifact(tmp_path, "lstm-tutorial")
    (folder / "model.ort").write_bytes((folder / "model.onnx").read_bytes())  # an ONNX file under the ORT name
    rehash(folder, "model.ort")
    with pytest.raises(ArtifactError, match=r"model\.ort: not an ORT-format model: expected the file identifier"):
        runtime.load(folder, format="ort")


def test_a_damaged_ort_file_is_refused(tmp_path):
    folder = copy_artifact(tmp_path, "lstm-tutorial")
    data = bytearray((folder / "model.ort").read_bytes())
    data[len(data) // 2] ^= 1
    (folder / "model.ort").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256 mismatch"):
        runtime.load(folder, format="ort")


def test_an_artifact_without_ort_files_says_which_variants_it_has(tmp_path):
    folder = copy_artifact(tmp_path, "lstm-tutorial")
    edit_manifest(folder, lambda m: m["files"].pop("model.ort"))
    with pytest.raises(ArtifactError, match=r"no 'fp32' ORT-format variant in this artifact: expected model\.ort .*"
                                            r"\(variants \['fp32'\]\)"):
        runtime.load(folder, format="ort")


def test_malformed_embedding_rows_are_named(tmp_path):
    folder = copy_artifact(tmp_path, "char-hello")
    edit_manifest(folder, lambda m: m["export"]["ort"].__setitem__("embedding_rows", {"chars": "many"}))
    with pytest.raises(ArtifactError, match=r"field 'export\.ort\.embedding_rows\.chars': expected a row count"):
        runtime.load(folder)


def test_cli_ort_flag_gives_the_same_output():
    for args in (("generate", str(ARTIFACTS / "char-shakespeare"), "--prompt", "KING:", "-n", "120"),
                 ("generate", str(ARTIFACTS / "char-shakespeare"), "--prompt", "KING:", "-n", "120", "--variant",
                  "int8")):
        onnx_out, ort_out = run_cli("runtime", *args), run_cli("runtime", *args, "--ort")
        assert onnx_out.returncode == 0 and ort_out.returncode == 0, (onnx_out.stderr, ort_out.stderr)
        assert onnx_out.stdout == ort_out.stdout and len(ort_out.stdout) > 120, args
    out = run_cli("runtime", "tag", str(ARTIFACTS / "pos-ewt"), "--ort", input="The dog barked .\n")
    assert out.returncode == 0 and out.stdout == "The/DET dog/NOUN barked/VERB ./PUNCT\n", (out.stdout, out.stderr)


def test_cli_ort_without_an_ort_file_is_one_line(tmp_path):
    folder = copy_artifact(tmp_path, "pos-tutorial")
    edit_manifest(folder, lambda m: m["files"].pop("model.ort"))
    out = run_cli("runtime", "tag", str(folder), "--ort", input="the dog ate\n")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "no 'fp32' ORT-format variant" in out.stderr


def test_cli_info_lists_the_ort_files():
    out = run_cli("runtime", "info", str(ARTIFACTS / "pos-ewt"), "--json")
    info = json.loads(out.stdout)
    assert {"model.ort", "model.int8.ort", OPS_CONFIG, MANIFEST} - {MANIFEST} <= set(info["files"])
    assert info["export"]["ort"]["models"] == {"model.ort": "model.onnx", "model.int8.ort": "model.int8.onnx"}


def test_a_failure_after_the_ort_stage_stops_its_converter_and_leaves_nothing(tmp_path, monkeypatch):
    """The converter runs in its own process beside the stages after it; when one of them fails, the export
    fails as before, the converter is stopped and its temporary folder removed."""
    import torch

    import export
    from export import api, convert

    started = []
    real = convert._start_converter
    monkeypatch.setattr(convert, "_start_converter", lambda tmp: started.append((tmp, real(tmp))) or started[-1][1])

    def boom(job, build):
        raise RuntimeError("a stage after ORT broke")

    monkeypatch.setitem(api._STAGES, "pt2", api._Stage(boom))
    model = torch.nn.GRU(3, 4).eval()
    with pytest.raises(export.ExportError, match="a stage after ORT broke"):
        export.export_module(model, (torch.randn(5, 2, 3),), tmp_path / "gru", ["x"], {"x": {0: "time", 1: "batch"}},
                             formats=["ort", "pt2"], quiet=True)
    assert len(started) == 1, started
    tmp, proc = started[0]
    assert proc.poll() is not None, "the converter still runs"
    assert not tmp.exists(), f"{tmp} left behind"
    assert not (tmp_path / "gru").exists() and list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())
