"""The artifact format: one folder per model, described by ``manifest.json``.

This module is the single definition of the format. ``export`` writes artifacts with it and ``runtime``
reads them with it, so the two can never disagree. It needs only the standard library.

An artifact folder holds::

    manifest.json   what the model is (kind, config, vocabularies, IO), how it was made, and its parity results
    model.onnx      the ONNX graph, run by onnxruntime
    model.pt        the TorchScript module (for torch users; the runtime never opens it)
    model.int8.onnx optional int8 variant, ``runtime.load(path, variant="int8")``
    model.ort, model.int8.ort
                    optional: the same graphs in ONNX Runtime's ORT format (for minimal onnxruntime builds),
                    ``runtime.load(path, format="ort")``; the manifest's ``export.ort`` says how they were made
    required_operators_and_types.config
                    with the .ort files: the operators (and their types) they use, for building onnxruntime with
                    ``--include_ops_by_config`` (docs/runtime.md, "Edge packaging")

Shape letters used in IO declarations: T time steps, B batch, L layers x directions, H hidden size,
F input features, V classes or symbols. Symbolic axes are named ``"time"`` and ``"batch"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import reprlib
import stat
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .onnxproto import GraphFacts, RecordedFacts, scan

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"  # optional: ONNX Runtime dynamic quantization of model.onnx
VARIANTS = {"fp32": ONNX_FILE, "int8": INT8_FILE}
# ORT format (a flatbuffer, file identifier "ORTM" at byte 4): what a minimal onnxruntime build loads; each file is
# its ONNX variant converted (optimized) by onnxruntime's own converter.
FORMATS = ("onnx", "ort")
ORT_VARIANTS = {"fp32": "model.ort", "int8": "model.int8.ort"}
OPS_CONFIG = "required_operators_and_types.config"
ORT_IDENTIFIER = b"ORTM"
TORCHSCRIPT_FILE = "model.pt"
# torch.export of the model with its recurrent layers in scan form: the program (torch.export.load) and its
# ExecuTorch lowering. For torch and ExecuTorch users; the runtime itself loads .onnx and .ort only.
PT2_FILE = "model.pt2"
PTE_FILE = "model.pte"
# Each model file an artifact may hold, and what runs it.
MODEL_FILES = {
    ONNX_FILE: "ONNX: this runtime (onnxruntime), and any ONNX runtime",
    INT8_FILE: "ONNX, int8: this runtime (onnxruntime only)",
    ORT_VARIANTS["fp32"]: "ORT format: this runtime with format='ort', a minimal onnxruntime build",
    ORT_VARIANTS["int8"]: "ORT format, int8: this runtime with format='ort', variant='int8'",
    TORCHSCRIPT_FILE: "TorchScript: torch.jit.load",
    PT2_FILE: "torch.export program: torch.export.load(path).module()",
    PTE_FILE: "ExecuTorch: executorch.runtime.Runtime.get().load_program(path), or the C++ Module API",
}
# recurrent: the seeds' plain RNNs; tagger, char-lm: models with a vocabulary and their own runtime class;
# module: any model exported with ``export.export_module`` (run with its own IO names).
KINDS = ("recurrent", "tagger", "char-lm", "module")
TIME, BATCH = "time", "batch"
DTYPES = ("float32", "int64", "int32", "bool")  # numpy dtype names of graph inputs and outputs
# Size limits, checked before reading: a manifest is JSON text (pos-ewt's, with 8,589 words, is 150 KB); an ONNX
# file is one protobuf message, which cannot exceed 2 GB (bigger models need external data, refused anyway).
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_MODEL_BYTES = 2 * 2**30


class ArtifactError(Exception):
    """An artifact folder is missing, damaged, or not in a format this runtime understands."""


class FolderReplaced(ArtifactError):
    """The artifact folder was replaced (an export renamed a new one into place) while it was being read."""


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
    def from_json(cls, d: Any, where: Path | str = MANIFEST) -> "Manifest":
        """The manifest from parsed JSON, every field checked first (``check_manifest``): ArtifactError otherwise."""
        check_manifest(d, where)
        return cls(name=d["name"], kind=d["kind"], config=d["config"], io=IOSpec.from_json(d["io"]),
                   vocab=d.get("vocab", {}), files=d.get("files", {}), export=d.get("export", {}),
                   parity=d.get("parity", {}))


# ---- the manifest's schema ---------------------------------------------------------------------------------------
# Every field the runtime reads is checked at load, so a malformed manifest is one ArtifactError naming the file and
# the field, never a KeyError or TypeError at load or at first use.

_SHA256 = re.compile(r"[0-9a-f]{64}")
_short = reprlib.Repr()
_short.maxstring = _short.maxother = _short.maxlong = 40


_MISSING = object()


def _bad(where: Path | str, path: str, expected: str, value: Any) -> ArtifactError:
    got = "nothing (missing)" if value is _MISSING else f"{type(value).__name__} {_short.repr(value)}"
    return ArtifactError(f"{where}: malformed manifest: field {path!r}: expected {expected}, got {got}")


class _Reader:
    """Typed access to one JSON object of the manifest: ``get`` returns a field or raises naming it."""

    def __init__(self, where: Path | str, obj: Any, path: str = ""):
        if not isinstance(obj, dict):
            raise _bad(where, path.rstrip(".") or "(top level)", "an object", obj)
        self.where, self.obj, self.path = where, obj, path

    def get(self, key: str, check, expected: str, optional: bool = False) -> Any:
        """The field ``key`` if ``check(value)`` holds; None when optional and absent (null is not absent)."""
        if key not in self.obj and optional:
            return None
        value = self.obj.get(key, _MISSING)
        if value is _MISSING or not check(value):
            raise _bad(self.where, f"{self.path}{key}", expected, value)
        return value

    def sub(self, key: str, optional: bool = False) -> "_Reader":
        """The object field ``key`` (an empty one when optional and absent)."""
        return _Reader(self.where, self.get(key, _is_dict, "an object", optional) or {}, f"{self.path}{key}.")


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_list_of(item) -> Any:
    return lambda v: isinstance(v, list) and all(item(x) for x in v)


def _tensors(r: _Reader, key: str) -> list[dict[str, Any]]:
    """io.inputs or io.outputs: a list of {name, dtype, shape} with distinct names."""
    tensors = r.get(key, lambda v: isinstance(v, list), "a list of tensors")
    names: set[str] = set()
    for i, t in enumerate(tensors):
        tr = _Reader(r.where, t, f"{r.path}{key}[{i}].")
        name = tr.get("name", lambda v: _is_str(v) and v and v not in names, "a name, not empty, not repeated")
        names.add(name)
        tr.get("dtype", lambda v: v in DTYPES, f"one of {DTYPES}")
        tr.get("shape", _is_list_of(lambda d: (_is_int(d) and d >= 0) or (_is_str(d) and d)),
               "a list of sizes >= 0 and axis names")
    return tensors


def check_manifest(d: Any, where: Path | str = MANIFEST) -> None:
    """Raise ArtifactError naming the file and the field unless ``d`` is a manifest this runtime can run."""
    if not isinstance(d, dict):
        raise ArtifactError(f"{where}: expected a JSON object, got {type(d).__name__}")
    version = d.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise ArtifactError(f"{where}: unsupported format_version: expected {FORMAT_VERSION}, got {version!r:.40}")
    r = _Reader(where, d)
    r.get("name", _is_str, "a str")
    kind = r.get("kind", _is_str, f"one of {KINDS}")
    if kind not in KINDS:
        raise ArtifactError(f"{where}: unknown kind: expected one of {KINDS}, got {kind!r:.60}")
    config, files = r.sub("config"), r.sub("files", optional=True)
    # export.ort.embedding_rows: for ORT-format files, whose graph the runtime cannot walk (onnxproto reads ONNX's
    # protobuf only), the rows of the embedding table each integer input indexes, recorded from model.onnx.
    rows = r.sub("export", optional=True).sub("ort", optional=True).sub("embedding_rows", optional=True)
    for name in rows.obj:
        rows.get(name, lambda v: _is_int(v) and v >= 1, "a row count (int >= 1)")
    r.sub("parity", optional=True)
    for name in files.obj:
        files.get(name, lambda v: isinstance(v, str) and _SHA256.fullmatch(v) and "/" not in name
                  and "\\" not in name and name not in (".", ".."), "a SHA-256 (64 hex digits) of a file in the folder")

    io = r.sub("io")
    inputs = {t["name"]: t for t in _tensors(io, "inputs")}
    outputs = {t["name"]: t for t in _tensors(io, "outputs")}
    pairs = io.get("state", _is_list_of(lambda p: isinstance(p, list) and len(p) == 2 and _is_str(p[0]) and
                                        _is_str(p[1]) and p[0] in inputs and p[1] in outputs),
                   "a list of [input, output] name pairs", True) or []
    for i, (state_in, state_out) in enumerate(pairs):
        a, b = inputs[state_in], outputs[state_out]
        if (a["dtype"], a["shape"]) != (b["dtype"], b["shape"]) or set(filter(_is_str, a["shape"])) - {BATCH}:
            raise _bad(where, f"io.state[{i}]", f"an input and an output of one dtype and shape whose only axis "
                       f"name is {BATCH!r}", [a["dtype"], a["shape"], b["dtype"], b["shape"]])
    for side in (0, 1):
        if len({p[side] for p in pairs}) < len(pairs):
            raise _bad(where, "io.state", "each input and output in one pair at most", pairs)
    state_in = {p[0] for p in pairs}
    lengths = io.get("lengths", lambda v: v is None or (_is_str(v) and v in inputs and v not in state_in),
                     "null or the name of an input that is not state", True)
    if lengths is not None and (inputs[lengths]["dtype"], inputs[lengths]["shape"]) not in (("int64", [BATCH]),
                                                                                         ("int32", [BATCH])):
        raise _bad(where, "io.lengths", f"an int64 or int32 input of shape [{BATCH!r}]", inputs[lengths])

    vocab = r.sub("vocab", optional=True)
    data_inputs = set(inputs) - state_in
    if kind == "tagger":
        _needs(where, inputs, outputs, data_inputs, "words", "scores", r"words|lengths|spelling|chars_\d+")
        words = vocab.get("words", _is_list_of(_is_str), "a list of str")
        vocab.get("tags", _is_list_of(_is_str), "a list of str")
        in_words = lambda v: _is_str(v) and v in words  # noqa: E731
        unk = vocab.get("unk", in_words, "a word of vocab.words")
        vocab.get("pad", in_words, "a word of vocab.words", True)
        vocab.get("normalize", lambda v: isinstance(v, bool), "true or false", True)
        chars = vocab.get("chars", _is_list_of(_is_str), "a list of str", True)
        if "spelling" in inputs:
            if chars is None or unk not in chars:
                raise _bad(where, "vocab.chars", "a list of str holding vocab.unk (the graph reads spellings)", chars)
            buckets = config.get("char_buckets", lambda v: _is_list_of(_is_int)(v) and v == sorted(v) and
                                 all(b >= 1 for b in v), "increasing lengths >= 1")
            config.get("max_word_chars", lambda v: _is_int(v) and v >= 1, "an int >= 1")
            got = sorted(n for n in inputs if re.fullmatch(r"chars_\d+", n))
            want = sorted(f"chars_{k}" for k in range(1, len(buckets) + 2))
            if got != want:
                raise _bad(where, "config.char_buckets", f"one bucket fewer than the chars_k inputs {got}", buckets)
    elif kind == "char-lm":
        _needs(where, inputs, outputs, data_inputs, "chars", "logits", "chars")
        symbols = vocab.get("symbols", _is_list_of(_is_str), "a list of str")
        vocab.get("bos", _is_int, "a symbol id (int)")
        vocab.get("unk", _is_int, "a symbol id (int)")
        vocab.get("eos", lambda v: v is None or _is_int(v), "a symbol id (int) or null", True)
        vocab.get("never_generate", _is_list_of(lambda i: _is_int(i) and 0 <= i < len(symbols)),
                  f"a list of symbol ids in [0, {len(symbols)})", True)


def _needs(where, inputs, outputs, data_inputs, input_name: str, output_name: str, data_pattern: str) -> None:
    """A kind's runtime class feeds ``input_name`` (and only data inputs matching ``data_pattern``) and reads
    ``output_name``."""
    if input_name not in inputs or output_name not in outputs:
        raise ArtifactError(f"{where}: malformed manifest: field 'io': expected input {input_name!r} and output "
                            f"{output_name!r} for its kind, got inputs {sorted(inputs)} and outputs {sorted(outputs)}")
    other = sorted(n for n in data_inputs if not re.fullmatch(data_pattern, n))
    if other:
        raise ArtifactError(f"{where}: malformed manifest: field 'io.inputs': expected no inputs but the kind's "
                            f"and state inputs (io.state), got {other}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- reading the folder ---------------------------------------------------------------------------------------
# Only regular files are read, never through a symbolic link (a link could point anywhere, /dev/zero or a file
# outside the folder, whose SHA-256 an error message would then print): a FIFO, device, folder or link in place of
# a file is refused before it is opened, and opening it cannot block (O_NONBLOCK) or follow a link (O_NOFOLLOW).
# The folder path itself may be a link. Where the OS allows it, every file is read relative to the folder opened
# once (``open_folder``), so a manifest and its model file come from the same folder even while an export renames a
# new artifact over it.

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_DIR_FD = hasattr(os, "O_DIRECTORY") and {os.open, os.stat} <= os.supports_dir_fd
_FILE_TYPES = {stat.S_IFDIR: "folder", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
               stat.S_IFBLK: "block device", stat.S_IFLNK: "symbolic link"}


def _check_regular(path: Path, st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        what = _FILE_TYPES.get(stat.S_IFMT(st.st_mode), "special file")
        raise ArtifactError(f"{path}: expected a regular file, got a {what} (refused: artifact files are read only as "
                            f"regular files inside the folder)")
    if st.st_size > limit:
        raise ArtifactError(f"{path}: expected at most {limit:,} bytes, got {st.st_size:,}")


def _read_file(folder: Path, name: str, limit: int, dir_fd: int | None = None) -> bytes:
    """The bytes of the regular file ``name`` of the folder (``dir_fd`` when open), at most ``limit`` of them.
    Raises FileNotFoundError when it is absent, ArtifactError for anything else that is wrong."""
    path = folder / name
    target = name if dir_fd is not None else path
    try:
        _check_regular(path, os.stat(target, dir_fd=dir_fd, follow_symlinks=False), limit)
        with open(os.open(target, _OPEN_FLAGS, dir_fd=dir_fd), "rb") as f:
            _check_regular(path, os.fstat(f.fileno()), limit)  # the file opened is still the one checked
            data = f.read(limit + 1)
    except (FileNotFoundError, ArtifactError):
        raise
    except OSError as e:  # permission denied, a link swapped in after the check, an I/O error
        raise ArtifactError(f"{path}: cannot read it: {e.strerror or e}") from None
    if len(data) > limit:
        raise ArtifactError(f"{path}: expected at most {limit:,} bytes, got more (the file grew while read)")
    return data


@contextmanager
def open_folder(folder: Path | str) -> Iterator[int | None]:
    """The artifact folder held open while its files are read: yields its directory fd for the ``dir_fd`` of the
    readers (None where the OS has no dir_fd). An ArtifactError raised inside becomes ``FolderReplaced`` when the
    path now names another folder (or none): what was read may be half the old artifact, not a damaged one."""
    folder = Path(folder)
    if not _DIR_FD:
        if not folder.is_dir():
            raise ArtifactError(f"{folder}: not a folder (an artifact is a folder holding manifest.json)")
        yield None
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        raise ArtifactError(f"{folder}: not a folder (an artifact is a folder holding manifest.json)") from None
    except OSError as e:
        raise ArtifactError(f"{folder}: cannot open it: {e.strerror or e}") from None
    try:
        yield fd
    except ArtifactError as e:
        held = os.fstat(fd)
        try:
            now = os.stat(folder)
            replaced = (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)
        except OSError:
            replaced = True
        if replaced:
            raise FolderReplaced(f"{folder}: replaced while loading (another artifact was renamed into its place, "
                                 f"as an export does); load it again") from e
        raise
    finally:
        os.close(fd)


def read_manifest(folder: Path | str, dir_fd: int | None = None) -> Manifest:
    """The folder's manifest, every field checked (``check_manifest``); ``dir_fd`` from ``open_folder``."""
    path = Path(folder) / MANIFEST
    try:
        text = _read_file(Path(folder), MANIFEST, MAX_MANIFEST_BYTES, dir_fd).decode("utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no manifest; is {folder} an artifact folder?") from None
    except UnicodeDecodeError as e:
        raise ArtifactError(f"{path}: not UTF-8 text: {e}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, NaN, an int too long to parse, nesting too deep
        raise ArtifactError(f"{path}: not valid JSON: {str(e)[:200]}") from None
    return Manifest.from_json(data, where=path)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def write_manifest(folder: Path | str, manifest: Manifest) -> None:
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_verified(folder: Path | str, manifest: Manifest, file_name: str, dir_fd: int | None = None) -> bytes:
    """Read one of the artifact's files and check it against the SHA-256 the manifest records."""
    path = Path(folder) / file_name
    expected = manifest.files.get(file_name)
    if expected is None:
        raise ArtifactError(f"{path}: the manifest records no SHA-256 for this file")
    try:
        data = _read_file(Path(folder), file_name, MAX_MODEL_BYTES, dir_fd)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (the manifest lists it)") from None
    got = sha256_bytes(data)
    if got != expected:
        raise ArtifactError(f"{path}: SHA-256 mismatch: expected {expected}, got {got} (file damaged or replaced)")
    return data


def read_onnx(folder: Path | str, manifest: Manifest, file_name: str,
              dir_fd: int | None = None) -> tuple[bytes, GraphFacts]:
    """Read an ONNX file of the artifact for onnxruntime: its SHA-256 checked against the manifest, its protobuf
    walked (without the onnx package), and any tensor whose data lives outside the file refused.

    seqedge exports never use ONNX external data; a tensor loaded from another file would escape the SHA-256
    check and could point anywhere (``../../secret``, an absolute path), so the runtime does not rely on
    onnxruntime's own path rules (which vary across its versions) and refuses every such tensor itself.
    """
    path = Path(folder) / file_name
    data = read_verified(folder, manifest, file_name, dir_fd)
    try:
        facts = scan(data)
    except ValueError as e:
        raise ArtifactError(f"{path}: not a valid ONNX protobuf: {e}") from None
    if facts.external:
        listed = ", ".join(f"{name!r} -> {location!r}" for name, location in facts.external[:5])
        raise ArtifactError(f"{path}: refused: {len(facts.external)} tensor(s) with external data ({listed}); "
                            f"expected every tensor inside the file (seqedge artifacts never use external data)")
    return data, facts


def model_file(variant: str, format: str = "onnx") -> str:
    """The file name of one model variant ("fp32", "int8") in one format ("onnx", "ort")."""
    return (VARIANTS if format == "onnx" else ORT_VARIANTS)[variant]


def read_ort(folder: Path | str, manifest: Manifest, file_name: str,
             dir_fd: int | None = None) -> tuple[bytes, GraphFacts]:
    """Read an ORT-format file of the artifact: its SHA-256 checked against the manifest and its flatbuffer file
    identifier checked (so onnxruntime never guesses at other bytes). The facts the runtime would walk an ONNX
    graph for come from the manifest (``export.ort.embedding_rows``, recorded from model.onnx at export); an ORT
    file holds no external data by construction."""
    path = Path(folder) / file_name
    data = read_verified(folder, manifest, file_name, dir_fd)
    if data[4:8] != ORT_IDENTIFIER:
        raise ArtifactError(f"{path}: not an ORT-format model: expected the file identifier {ORT_IDENTIFIER!r} at "
                            f"byte 4, got {data[4:8]!r}")
    ort = manifest.export.get("ort") or {}
    ints = [t.name for t in manifest.io.inputs if t.dtype in ("int64", "int32")]
    if "embedding_rows" not in ort and ints:  # the .onnx load reads them off its graph; the .ort load cannot
        raise ArtifactError(f"{Path(folder) / MANIFEST}: export.ort.embedding_rows is missing, so an ORT-format load "
                            f"could not check the ids of integer inputs {ints} against the embedding rows they "
                            f"index (a negative id would silently wrap); re-export the artifact, or load model.onnx")
    return data, RecordedFacts(rows=dict(ort.get("embedding_rows") or {}))


def read_artifact(folder: Path | str, variant: str, format: str = "onnx") -> tuple[Manifest, bytes, GraphFacts]:
    """The manifest and the ``variant`` model file in ``format`` (``model_file``) of one artifact folder, both read
    from the same folder (``open_folder``), checked as ``read_manifest`` and ``read_onnx`` (``read_ort``) check
    them."""
    folder = Path(folder)
    file_name = model_file(variant, format)
    with open_folder(folder) as dir_fd:
        manifest = read_manifest(folder, dir_fd)
        if file_name not in manifest.files:
            have = [v if f == "onnx" else f"{v} {f}" for f in FORMATS for v in VARIANTS
                    if model_file(v, f) in manifest.files]
            what = repr(variant) if format == "onnx" else f"{variant!r} ORT-format"
            raise ArtifactError(f"{folder / MANIFEST}: no {what} variant in this artifact: expected {file_name} among "
                                f"the files it records, got {sorted(manifest.files)} (variants {have})")
        read = read_onnx if format == "onnx" else read_ort
        return (manifest, *read(folder, manifest, file_name, dir_fd))
