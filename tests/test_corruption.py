"""Damaged and hostile artifacts: every one is refused by ``runtime.load`` with an ArtifactError naming the file,
before onnxruntime parses anything it should not, and the runtime never unpickles anything.

Each test copies a committed artifact into tmp_path first; the committed artifacts are never modified."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.external_data_helper import set_external_data

import runtime
import runtime.model
from runtime.artifact import MANIFEST, ONNX_FILE, ArtifactError

from .conftest import copy_artifact, edit_manifest, rehash, run_cli


def copy(tmp_path: Path, name: str = "pos-tutorial") -> Path:
    return copy_artifact(tmp_path, name)


def refused(folder: Path, *words: str, variant: str = "fp32") -> str:
    with pytest.raises(ArtifactError) as e:
        runtime.load(folder, variant=variant)
    for w in words:
        assert w in str(e.value), f"{w!r} not in {str(e.value)!r}"
    return str(e.value)


@pytest.fixture
def no_onnxruntime_parse(monkeypatch):
    """Fail the test if onnxruntime is asked to parse a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("onnxruntime was given a model the runtime should have refused")
    monkeypatch.setattr(runtime.model.ort, "InferenceSession", refuse)


# ---- the manifest --------------------------------------------------------------------------------------------

def test_missing_manifest(tmp_path, no_onnxruntime_parse):
    folder = copy(tmp_path)
    (folder / MANIFEST).unlink()
    refused(folder, str(folder / MANIFEST), "no manifest")


@pytest.mark.parametrize("text, words", [
    ("{not json", ["not valid JSON"]),
    ("[1, 2]", ["expected a JSON object, got list"]),
    ("", ["not valid JSON"]),
    (b"\xff\xfe garbage", ["not UTF-8"]),
])
def test_unreadable_manifest(tmp_path, no_onnxruntime_parse, text, words):
    folder = copy(tmp_path)
    (folder / MANIFEST).write_bytes(text if isinstance(text, bytes) else text.encode())
    refused(folder, str(folder / MANIFEST), *words)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unknown_format_version(tmp_path, no_onnxruntime_parse, version):
    folder = copy(tmp_path)
    edit_manifest(folder, lambda m: m.__setitem__("format_version", version))
    refused(folder, str(folder / MANIFEST), f"unsupported format_version: expected 1, got {version!r}")


@pytest.mark.parametrize("change, words", [
    (lambda m: m.pop("io"), ["malformed manifest", "'io'"]),
    (lambda m: m.__setitem__("kind", "transformer"), ["unknown kind", "'transformer'"]),
    (lambda m: m["files"].pop(ONNX_FILE), ["manifest.json: no 'fp32' variant", "expected model.onnx among"]),
])
def test_malformed_manifest(tmp_path, no_onnxruntime_parse, change, words):
    folder = copy(tmp_path)
    edit_manifest(folder, change)
    refused(folder, *words)


# ---- the model file --------------------------------------------------------------------------------------------

def test_missing_model_file(tmp_path, no_onnxruntime_parse):
    folder = copy(tmp_path)
    (folder / ONNX_FILE).unlink()
    refused(folder, str(folder / ONNX_FILE), "missing (the manifest lists it)")


def test_missing_int8_variant_file(tmp_path, no_onnxruntime_parse):
    folder = copy(tmp_path)
    refused(folder, "no 'int8' variant", "expected model.int8.onnx among the files it records",
            "(variants ['fp32', 'fp32 ort'])", variant="int8")


@pytest.mark.parametrize("keep", [0, 1, 100, -1])
def test_truncated_model_file(tmp_path, no_onnxruntime_parse, keep):
    folder = copy(tmp_path)
    data = (folder / ONNX_FILE).read_bytes()
    (folder / ONNX_FILE).write_bytes(data[:keep] if keep >= 0 else data[:-1])
    refused(folder, str(folder / ONNX_FILE), "SHA-256 mismatch", "damaged or replaced")


@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_one_flipped_byte_is_caught_before_onnxruntime_parses_the_file(tmp_path, no_onnxruntime_parse, where):
    folder = copy(tmp_path)
    data = bytearray((folder / ONNX_FILE).read_bytes())
    i = int(where * (len(data) - 1)) if where >= 0 else len(data) - 1
    data[i] ^= 0x01
    (folder / ONNX_FILE).write_bytes(bytes(data))
    refused(folder, str(folder / ONNX_FILE), "SHA-256 mismatch")


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"not a protobuf at all \xff\xff\xff\xff", b"\x0a\xff\xff\xff"])
def test_garbage_model_with_a_matching_sha256_is_refused_clearly(tmp_path, content):
    folder = copy(tmp_path)
    (folder / ONNX_FILE).write_bytes(content)
    rehash(folder)
    msg = refused(folder, str(folder / ONNX_FILE))
    assert "not a valid ONNX protobuf" in msg or "onnxruntime cannot load it" in msg, msg


# ---- hostile ONNX: external data ------------------------------------------------------------------------------

def with_external_data(folder: Path, location: str) -> str:
    """Rewrite model.onnx so its largest initializer reads its bytes from ``location`` (an onnx package
    feature the runtime must refuse), write those bytes there, and record the new SHA-256 in the manifest."""
    model = onnx.load(str(folder / ONNX_FILE))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    target = Path(location) if Path(location).is_absolute() else folder / location
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(tensor.raw_data)
    set_external_data(tensor, location=location, offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(model, str(folder / ONNX_FILE))
    rehash(folder)
    return tensor.name


@pytest.mark.parametrize("location", ["../outside.bin", "../../etc/passwd-like", "weights.bin", "ABSOLUTE"])
def test_external_data_anywhere_is_refused_naming_file_tensor_and_location(tmp_path, no_onnxruntime_parse,
                                                                           location):
    folder = copy(tmp_path)
    if location == "ABSOLUTE":
        location = str(tmp_path / "elsewhere" / "secret.bin")
    name = with_external_data(folder, location)
    refused(folder, str(folder / ONNX_FILE), "refused", "external data", repr(name), repr(location),
            "seqedge artifacts never use external data")


def test_external_data_in_a_subgraph_or_constant_node_is_refused(tmp_path, no_onnxruntime_parse):
    """Tensors hide in node attributes too (a Constant node here), not only in graph initializers."""
    folder = copy(tmp_path)
    model = onnx.load(str(folder / ONNX_FILE))
    value = onnx.numpy_helper.from_array(np.zeros(4, np.float32), "hidden")
    set_external_data(value, location="../hidden.bin", offset=0, length=16)
    value.ClearField("raw_data")
    value.data_location = onnx.TensorProto.EXTERNAL
    model.graph.node.append(onnx.helper.make_node("Constant", [], ["unused_hidden"], value=value))
    onnx.save(model, str(folder / ONNX_FILE))
    rehash(folder)
    refused(folder, "refused", "'hidden'", "'../hidden.bin'")


# ---- the manifest disagrees with the graph ----------------------------------------------------------------------

@pytest.mark.parametrize("name, table, change, words", [
    ("pos-tutorial", "tags", lambda v: v.pop(), ["vocabulary 'tags' has 2 entries", "model.onnx has 3"]),
    ("pos-tutorial", "words", lambda v: v.append("extra"), ["vocabulary 'words' has 11 entries", "has 10",
                                                             "word embedding"]),
    ("pos-ewt", "chars", lambda v: v.pop(), ["vocabulary 'chars' has 109 entries", "has 110", "char embedding"]),
    ("char-hello", "symbols", lambda v: v.append("Z"), ["vocabulary 'symbols' has 37 entries", "has 36"]),
])
def test_vocabulary_size_disagreeing_with_the_graph(tmp_path, name, table, change, words):
    folder = copy(tmp_path, name)
    edit_manifest(folder, lambda m: change(m["vocab"][table]))
    refused(folder, str(folder / MANIFEST), *words, "expected them to agree")


def test_special_symbol_outside_the_symbol_table(tmp_path):
    folder = copy(tmp_path, "char-hello")
    edit_manifest(folder, lambda m: m["vocab"].__setitem__("bos", 99))
    refused(folder, str(folder / MANIFEST), "vocab 'bos': expected a symbol id in [0, 36), got 99")


# ---- nothing is unpickled ---------------------------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_load_never_unpickles(tmp_path, monkeypatch):
    """model.pt (TorchScript, a zip of pickles) replaced by a malicious pickle: loading and running the artifact
    never opens it, and no unpickling function is called."""
    folder = copy(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "model.pt").write_bytes(pickle.dumps(_Payload(marker)))
    rehash(folder, "model.pt")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the runtime unpickled something")
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    monkeypatch.setattr(np, "load", no_unpickling)
    tagger = runtime.load(folder)
    assert tagger.tag(["The", "dog"]) == ["DET", "NN"]
    assert not marker.exists()


def test_cli_reports_a_damaged_artifact_in_one_line(tmp_path):
    folder = copy(tmp_path)
    data = bytearray((folder / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / ONNX_FILE).write_bytes(bytes(data))
    out = run_cli("runtime", "tag", str(folder), "-", input="The dog\n")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and f"error: {folder / ONNX_FILE}: SHA-256 mismatch" in out.stderr
