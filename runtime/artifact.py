"""The artifact format: one folder per model, described by ``manifest.json``.

This module is the single definition of the format. ``export`` writes artifacts with it and ``runtime``
reads them with it, so the two can never disagree. It needs only the standard library.

An artifact folder holds::

    manifest.json   what the model is (kind, config, vocabularies, IO), how it was made, and its parity results
    model.onnx      the ONNX graph, run by onnxruntime
    model.pt        the TorchScript module (for torch users; the runtime never opens it)
    model.int8.onnx optional int8 variant, ``runtime.load(path, variant="int8")``

Shape letters used in IO declarations: T time steps, B batch, L layers x directions, H hidden size,
F input features, V classes or symbols. Symbolic axes are named ``"time"`` and ``"batch"``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .onnxproto import GraphFacts, scan

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"  # optional: ONNX Runtime dynamic quantization of model.onnx
VARIANTS = {"fp32": ONNX_FILE, "int8": INT8_FILE}
TORCHSCRIPT_FILE = "model.pt"
# recurrent: the seeds' plain RNNs; tagger, char-lm: models with a vocabulary and their own runtime class;
# module: any model exported with ``export.export_module`` (run with its own IO names).
KINDS = ("recurrent", "tagger", "char-lm", "module")
TIME, BATCH = "time", "batch"


class ArtifactError(Exception):
    """An artifact folder is missing, damaged, or not in a format this runtime understands."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, numpy dtype name, and shape (ints fixed, strings symbolic)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def axis(self, symbol: str) -> int | None:
        """Index of the named symbolic axis, or None when this tensor has no such axis."""
        return self.shape.index(symbol) if symbol in self.shape else None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(name=d["name"], dtype=d["dtype"], shape=tuple(d["shape"]))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class IOSpec:
    """Every input and output of a model, and which inputs are recurrent state fed back from which outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # (state input, state output) pairs, e.g. ("h_0", "h_n"): the output of one call is the input of the next.
    state: tuple[tuple[str, str], ...] = ()
    # The input holding each sequence's valid length along "time" (B,), or None: outputs past a sequence's
    # length are padding.
    lengths: str | None = None

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)

    @property
    def data_inputs(self) -> tuple[TensorSpec, ...]:
        """Inputs that are not recurrent state (the sequence itself)."""
        state_in = {i for i, _ in self.state}
        return tuple(t for t in self.inputs if t.name not in state_in)

    @property
    def data_outputs(self) -> tuple[TensorSpec, ...]:
        state_out = {o for _, o in self.state}
        return tuple(t for t in self.outputs if t.name not in state_out)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "IOSpec":
        return cls(
            inputs=tuple(TensorSpec.from_json(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in d["outputs"]),
            state=tuple((i, o) for i, o in d.get("state", [])),
            lengths=d.get("lengths"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "state": [list(p) for p in self.state],
            **({"lengths": self.lengths} if self.lengths else {}),
        }


@dataclass
class Manifest:
    """The parsed ``manifest.json``. ``vocab`` holds kind-specific tables (words, tags, symbols)."""

    name: str
    kind: str
    config: dict[str, Any]
    io: IOSpec
    vocab: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256 hex digest
    export: dict[str, Any] = field(default_factory=dict)  # exporter, opset, versions
    parity: dict[str, Any] = field(default_factory=dict)  # verification results recorded at export
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["io"] = self.io.to_json()
        return {"format_version": d.pop("format_version"), **d}

    @classmethod
    def from_json(cls, d: dict[str, Any], where: Path | str = MANIFEST) -> "Manifest":
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(f"{where}: unsupported format_version: expected {FORMAT_VERSION}, got {version!r}")
        try:
            m = cls(
                name=d["name"],
                kind=d["kind"],
                config=d["config"],
                io=IOSpec.from_json(d["io"]),
                vocab=d.get("vocab", {}),
                files=d.get("files", {}),
                export=d.get("export", {}),
                parity=d.get("parity", {}),
            )
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{where}: malformed manifest: {type(e).__name__}: {e}") from None
        if m.kind not in KINDS:
            raise ArtifactError(f"{where}: unknown kind: expected one of {KINDS}, got {m.kind!r}")
        return m


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(folder: Path | str) -> Manifest:
    path = Path(folder) / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no manifest; is {folder} an artifact folder?") from None
    except UnicodeDecodeError as e:
        raise ArtifactError(f"{path}: not UTF-8 text: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return Manifest.from_json(data, where=path)


def write_manifest(folder: Path | str, manifest: Manifest) -> None:
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_verified(folder: Path | str, manifest: Manifest, file_name: str) -> bytes:
    """Read one of the artifact's files and check it against the SHA-256 the manifest records."""
    path = Path(folder) / file_name
    expected = manifest.files.get(file_name)
    if expected is None:
        raise ArtifactError(f"{path}: the manifest records no SHA-256 for this file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (the manifest lists it)") from None
    got = sha256_bytes(data)
    if got != expected:
        raise ArtifactError(f"{path}: SHA-256 mismatch: expected {expected}, got {got} (file damaged or replaced)")
    return data


def read_onnx(folder: Path | str, manifest: Manifest, file_name: str) -> tuple[bytes, GraphFacts]:
    """Read an ONNX file of the artifact for onnxruntime: its SHA-256 checked against the manifest, its protobuf
    walked (without the onnx package), and any tensor whose data lives outside the file refused.

    seqedge exports never use ONNX external data; a tensor loaded from another file would escape the SHA-256
    check and could point anywhere (``../../secret``, an absolute path), so the runtime does not rely on
    onnxruntime's own path rules (which vary across its versions) and refuses every such tensor itself.
    """
    path = Path(folder) / file_name
    data = read_verified(folder, manifest, file_name)
    try:
        facts = scan(data)
    except ValueError as e:
        raise ArtifactError(f"{path}: not a valid ONNX protobuf: {e}") from None
    if facts.external:
        listed = ", ".join(f"{name!r} -> {location!r}" for name, location in facts.external[:5])
        raise ArtifactError(f"{path}: refused: {len(facts.external)} tensor(s) with external data ({listed}); "
                            f"expected every tensor inside the file (seqedge artifacts never use external data)")
    return data, facts
