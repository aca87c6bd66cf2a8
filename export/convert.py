"""Convert a trained network to TorchScript and ONNX, and check the ONNX graph.

The ONNX paths (``ONNX_PATHS``) are tried in order by ``api.export_module`` and the first whose graph passes
the length probes is kept, by evidence (torch 2.13.0): the dynamo-based ``torch.onnx.export`` silently pins the
time axis of LSTM, GRU and RNN graphs to the example's length, while the TorchScript-based exporter
(``dynamo=False``) keeps ``time`` and ``batch`` symbolic; ``--exporter dynamo`` stays available and is held to the
same checks.
"""

from __future__ import annotations

import functools
import io as _io
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch

from runtime.artifact import FORMAT_VERSION, OPS_CONFIG, ORT_VARIANTS, VARIANTS, IOSpec, Manifest, sha256_bytes
from runtime.onnxproto import scan
from .errors import ExportError
from .rewrite import annotate_forward

# The ways to ONNX, in the order "auto" tries them ("torchscript" tries the first two, "dynamo" the last two);
# "scan" is the dynamo exporter on the torch.export program of the scan form (program.py), an ONNX Scan.
ONNX_PATHS = ("traced", "scripted", "dynamo", "scan")
OPSET = 17  # LSTM/GRU/RNN ops are stable since opset 14; 17 is widely supported by edge runtimes


@contextmanager
def quiet_export_tools():
    """Silence the export tools' own warnings, deliberately and no others.

    torch 2.13 deprecates torch.jit and the TorchScript-based ONNX exporter and warns on every call; the
    TracerWarnings about converting tensors to bools come from nn.LSTM's own argument checks. Both are
    about the export tools, not about the model, and parity verification checks the result, so exactly
    these categories are silenced here instead of being printed on every export."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        # "Exporting ... with a batch_size other than 1 ... define the initial states (h0/c0) as inputs": ours
        # are graph inputs, which is the fix it asks for; parity at batch 1 and 3 checks the result.
        warnings.filterwarnings("ignore", message=r".*with a batch_size other than 1.*")
        yield


# What the exporters print straight to file descriptors 1 and 2, past Python's warnings machinery, about their own
# workings: intermediate shape inference of packed sequences (the final graph passes onnx's strict shape inference
# and the parity checks, which is what matters) and the dynamo exporter's registry of torchvision operators.
NATIVE_NOISE = ("The shape inference of prim::PackPadded type is missing",
                "The shape inference of prim::PadPacked type is missing",
                "torchvision is not installed")


@contextmanager
def _captured_output(noise: tuple[str, ...] = NATIVE_NOISE):
    """Capture fds 1 and 2 while an exporter runs. When it succeeds, pass on every line except the known noise;
    when it raises, drop what it printed (a failed attempt's graph dump): the exception says what went wrong,
    and the caller records it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    captures = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    failed = True
    try:
        for fd, f in captures.items():
            os.dup2(f.fileno(), fd)
        yield
        failed = False
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        for fd, f in captures.items():
            f.seek(0)
            text = f.read().decode("utf-8", "replace")
            f.close()
            if not failed:
                for line in text.splitlines():
                    if line.strip() and not any(n in line for n in noise):
                        print(line, file=sys.stdout if fd == 1 else sys.stderr)


def to_torchscript(model: torch.nn.Module, args: tuple, path: Path,
                   traceable: torch.nn.Module | None = None) -> tuple[str, str]:
    """Save ``model`` as TorchScript: scripted where TorchScript compiles it (control flow and sizes stay
    dynamic), else traced (the traced graph must then pass the same length checks as everything else).
    ``traceable`` is what tracing takes where it differs from ``model`` (signature.FlatOutputs: forward returns
    Python lists). Returns (method, reason). The same weights give the same bytes, wherever and in whatever process."""
    with quiet_export_tools(), _module_relative_source_paths(), fresh_jit_state():
        try:
            module, method, reason = _script(model), "script", "torch.jit.script compiles the module"
        except Exception as e:  # TorchScript's frontend raises many types for unsupported Python
            first = script_reason(e)
            annotated = annotate_forward(model, args)
            try:
                if annotated is None:
                    raise e
                module, method = _script(annotated), "script"
                reason = (f"torch.jit.script failed ({first}); scripted with forward's argument types read off "
                          f"the example")
            except Exception:
                try:
                    module = torch.jit.trace(traceable or model, args, check_trace=False)
                except Exception as traced:  # neither compiles nor traces: both reasons, torch's first lines
                    from .program import first_line
                    raise ExportError(f"TorchScript: torch.jit.script failed ({first}); torch.jit.trace failed "
                                      f"({first_line(traced)})") from None
                method, reason = "trace", f"torch.jit.script failed ({first}); traced instead"
        module.save(str(path))
    return method, reason


def _script(model: torch.nn.Module) -> torch.jit.ScriptModule:
    """torch.jit.script, refusing a result without a ``forward`` method: scripting a bare ``nn.LSTM``/``GRU``/``RNN``
    keeps only its overloads (``forward_tensor``, ``forward_packed``), and the saved module cannot be called."""
    module = torch.jit.script(model)
    if not module._c._has_method("forward"):
        raise RuntimeError(f"torch.jit.script of {type(model).__name__} has no forward method (only its overloads)")
    return module


def script_reason(e: BaseException, limit: int = 240) -> str:
    """torch.jit.script's error as one line: its explanation without the overload signatures it lists, then the
    innermost source line it points at ("File ..., line N" and the code marked "<--- HERE")."""
    lines = [line.rstrip() for line in str(e).splitlines()]
    text, where = [], ""
    for i, line in enumerate(lines):
        m = re.match(r'\s*File "([^"]+)", line (\d+)', line)
        if m:
            here = next((lines[j].strip() for j in range(i + 1, min(i + 8, len(lines)))
                         if j + 1 < len(lines) and "<--- HERE" in lines[j + 1]), "")
            where = f" (at {Path(m.group(1)).name}:{m.group(2)}" + (f": {here[:100]}" if here else "") + ")"
            continue
        if where or not line.strip() or line.strip() == ":" or "<--- HERE" in line or "~~~" in line:
            continue
        if re.search(r"\)\s*->\s*.+:$", line.strip()) or line.strip().startswith("The following variants"):
            continue  # an overload's signature, or the header of their list
        text.append(line.strip().rstrip(":"))
    reason = " ".join(text)[:limit] or type(e).__name__
    return reason + where


@contextmanager
def fresh_jit_state():
    """Script in an empty TorchScript class registry, and give the caller's back afterwards.

    TorchScript registers every scripted class in one process-wide compilation unit and renames a second class
    of the same name (``___torch_mangle_N``), so model.pt would depend on what else the process scripted before.
    Clearing that registry would break every module the caller scripted earlier (they segfault when run or
    saved), so a new compilation unit and type caches stand in while we script, and the caller's return after.
    Modules keep their own compilation unit alive, so ours stay valid too."""
    import torch.jit._recursive as recursive
    import torch.jit._state as state

    saved = (state._python_cu, recursive.concrete_type_store, state._script_classes, state._name_to_pyclass)
    state._python_cu = torch._C.CompilationUnit()
    recursive.concrete_type_store = recursive.ConcreteTypeStore()
    state._script_classes, state._name_to_pyclass = {}, {}
    try:
        yield
    finally:
        state._python_cu, recursive.concrete_type_store, state._script_classes, state._name_to_pyclass = saved


@contextmanager
def _module_relative_source_paths():
    """Record source files in TorchScript's debug info as ``export/models.py``, ``torch/nn/modules/rnn.py``
    (relative to their sys.path entry), not as absolute paths: model.pt then holds no path of the machine that
    exported it and is the same from any checkout or virtualenv."""
    import torch._jit_internal as jit_internal
    import torch._sources as sources
    import torch.jit.frontend as frontend

    roots = sorted((Path(p).resolve() for p in sys.path if p and Path(p).is_dir()), key=lambda r: -len(r.parts))
    original = sources.get_source_lines_and_file

    def relative(obj, error_msg=None):
        lines, lineno, filename = original(obj, error_msg)
        if filename and not filename.startswith("<"):
            f = Path(filename).resolve()
            root = next((r for r in roots if f.is_relative_to(r)), None)
            filename = f.relative_to(root).as_posix() if root else f.name
        return lines, lineno, filename

    patched = [(m, m.get_source_lines_and_file) for m in (sources, frontend, jit_internal)]
    for m, _ in patched:
        m.get_source_lines_and_file = relative
    try:
        yield
    finally:
        for m, fn in patched:
            m.get_source_lines_and_file = fn


def to_onnx(module, args: tuple, path: Path, io: IOSpec, structure, exporter: str,
            manifest: Manifest | None = None) -> onnx.ModelProto:
    """Export with one of ``ONNX_PATHS``: "traced" and "scripted" are torch's TorchScript-based exporter on the
    eager module (which it traces) or on its scripted form (Python loops and ``len(x)`` stay dynamic); "dynamo"
    is torch's default exporter. Declared IO shapes are then set to ``io`` (verified by running) and the
    manifest's essentials put in ``metadata_props``, in memory; ``path`` is written once. Returns the model."""
    from .signature import unflatten

    names = {"input_names": [t.name for t in io.inputs], "output_names": [t.name for t in io.outputs]}
    # Every warning the exporters raise is about their own workings (deprecations, FutureWarnings from
    # torch.export's generated code, "no signature found for ScriptMethod"); the result is held to eager by
    # running it, which says more than any of them.
    with warnings.catch_warnings(), _captured_output():
        warnings.simplefilter("ignore")
        if exporter in ("traced", "scripted"):
            dynamic_axes = {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
                            for t in io.inputs + io.outputs}
            buffer = _io.BytesIO()
            torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET,
                              dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
                              do_constant_folding=True, **names)
            model = onnx.load_from_string(buffer.getvalue())
        elif exporter == "dynamo":
            shapes = unflatten(structure, [{i: torch.export.Dim.DYNAMIC for i, d in enumerate(t.shape)
                                            if isinstance(d, str)} or None for t in io.inputs])
            from .program import bound_shapes
            model = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=bound_shapes(module, shapes), verbose=False,
                                      opset_version=max(OPSET, 18), **names).model_proto
        elif exporter == "scan":  # ``module`` is the ExportedProgram of the scan form (program.export_program)
            model = torch.onnx.export(module, args, dynamo=True, verbose=False, opset_version=max(OPSET, 18),
                                      **names).model_proto
            _rename_symbols(model, io)
        else:
            raise ValueError(f"exporter: expected one of {ONNX_PATHS}, got {exporter!r}")
    _declare_shapes(model, io)
    if manifest is not None:
        add_metadata(model, manifest)
    Path(path).write_bytes(model.SerializeToString())
    return model


def _rename_symbols(model: onnx.ModelProto, io: IOSpec) -> None:
    """The dynamo exporter names symbolic sizes after torch's own symbols (``s77``, ``s15``), in the outer graph
    and inside a ``Scan`` body alike. tract unifies a body's dimensions with the outer graph's by name, and a
    user reads ``time``/``batch`` better than ``s77``: every dimension the exporter named after an input's symbol
    is renamed to the declared symbol, in every graph; any other exporter-named dimension is left unnamed (each
    runtime infers it)."""
    rename: dict[str, str] = {}
    specs = {t.name: t for t in io.inputs}
    for value in model.graph.input:
        spec = specs.get(value.name)
        if spec is None:
            continue
        for dim, want in zip(value.type.tensor_type.shape.dim, spec.shape):
            if dim.dim_param and isinstance(want, str):
                rename.setdefault(dim.dim_param, want)

    def graphs(g):
        yield g
        for node in g.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from graphs(a.g)
                for sub in a.graphs:
                    yield from graphs(sub)

    for g in graphs(model.graph):
        for value in list(g.input) + list(g.output) + list(g.value_info):
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param:
                    new = rename.get(dim.dim_param)
                    if new is None:
                        dim.Clear()
                    else:
                        dim.dim_param = new


def _declare_shapes(model: onnx.ModelProto, io: IOSpec) -> None:
    """Write the IO shapes learned by running eager into the graph's declarations. The TorchScript-based
    exporter declares fixed axes symbolic (``LogSoftmax..._dim_1``) and derived ones under its own names;
    ``check_onnx`` then holds the graph's own shape inference to these."""
    # Intermediate shape hints are the exporter's guesses, named after whatever symbol it met first (a Range over
    # the batch declared as "spellings_1"); tract refuses a graph whose hints disagree with its own inference
    # ("Output mismatch after rewiring expansion"). Every runtime infers intermediate shapes itself: drop them.
    del model.graph.value_info[:]
    specs = {t.name: t for t in io.inputs + io.outputs}
    for value in list(model.graph.input) + list(model.graph.output):
        spec = specs.get(value.name)
        if spec is None or len(value.type.tensor_type.shape.dim) != len(spec.shape):
            continue
        for dim, want in zip(value.type.tensor_type.shape.dim, spec.shape):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want


def quantize_int8(src: Path, dst: Path) -> None:
    """ONNX Runtime dynamic quantization: int8 weights for MatMul, LSTM and Gather (the embeddings), activations
    quantized on the fly. Accuracy and agreement with fp32 are checked by the model's own checks."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs "Please consider to run pre-processing before quantization" on the root logger;
    # pre-processing (symbolic shape inference, graph optimisation) is for static quantization of vision
    # models, and the int8 result is checked for accuracy and agreement anyway.
    root = logging.getLogger()
    hush = _MessageFilter("pre-processing before quantization")
    root.addFilter(hush)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / src.name
            onnx.save(_inline_weight_aliases(onnx.load(str(src))), str(plain))
            quantize_dynamic(str(plain), str(dst), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "LSTM", "Gather"])
    finally:
        root.removeFilter(hush)


# ORT format: onnxruntime's own converter, its default and recommended settings for CPU: optimization style
# "Fixed" (optimizations applied before saving, level "all"), no target platform (so no x86-only NCHWc layout),
# and the operator config with types, for a minimal build with reduced type support.
ORT_CONVERTER = ("onnxruntime.tools.convert_onnx_models_to_ort (optimization style Fixed, level all, no target "
                 "platform: no NCHWc layout; operator config with types)")


def start_ort(folder: Path, variants: list[str], previous: dict | None, previous_folder: Path) -> "OrtConversion":
    """Start converting the ONNX files of ``variants`` in ``folder`` to ORT format; ``finish()`` on the result
    writes them beside their sources with their operator config (OPS_CONFIG) and returns the manifest's
    ``export.ort`` record. The converter runs in a process of its own, so the export's next stages (torch.export,
    the ExecuTorch lowering) go on meanwhile on another core.

    The converter writes its kernel type table in hash-map order, and the hash is seeded by an address (absl), so
    its bytes change from process to process though the model does not. The converter's process runs with address
    randomization off, which makes its bytes the same on one machine; and when the artifact being replaced
    (``previous``, its manifest JSON, in ``previous_folder``) recorded the same conversion (the same record) of
    ONNX files with the same SHA-256, its ORT files are kept, after their own SHA-256 is checked: an export of
    unchanged files rewrites no byte on any machine. Either way the files are then checked against their ONNX
    sources like every other file (the export's checks)."""
    import onnxruntime

    sources = {ORT_VARIANTS[v]: VARIANTS[v] for v in variants}
    facts = scan((folder / VARIANTS["fp32"]).read_bytes())
    inputs = [i.name for i in onnx.load(str(folder / VARIANTS["fp32"]), load_external_data=False).graph.input]
    record = {"converter": ORT_CONVERTER, "onnxruntime": onnxruntime.__version__, "models": sources,
              "operators_config": OPS_CONFIG,
              "embedding_rows": {name: min(rows) for name in inputs if (rows := facts.gathered_rows(name))}}
    return OrtConversion(folder, sources, record, _previous_ort(folder, record, previous, previous_folder))


class OrtConversion:
    """onnxruntime's converter at work on copies of the sources under a temporary folder (or the previous
    artifact's files, when they are kept): ``finish()`` waits for it, writes the files and returns the record;
    ``cancel()`` (after a failure elsewhere, and after ``finish``) stops it and removes its folder; it may be called
    more than once."""

    def __init__(self, folder: Path, sources: dict[str, str], record: dict, reused: dict[str, bytes] | None):
        self.folder, self.sources, self.record, self.reused = folder, sources, record, reused
        self.tmp: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []  # its stdout and stderr once it ended (read by a thread meanwhile)
        self.reader: threading.Thread | None = None
        if reused is None:
            # Under /tmp where there is one: the converter's process then sees paths of one length whatever
            # TMPDIR says.
            self.tmp = Path(tempfile.mkdtemp(dir="/tmp" if os.path.isdir("/tmp") else None))
            try:
                (self.tmp / "onnx").mkdir()
                for onnx_name in sources.values():
                    (self.tmp / "onnx" / onnx_name).write_bytes((folder / onnx_name).read_bytes())
                self.proc = _start_converter(self.tmp)
                # A pipe left unread could fill and stop it; a file instead of pipes changes its bytes (measured:
                # its stdout's type changes what Python allocates at start, so where the hash seed lands).
                self.reader = threading.Thread(target=lambda: self.output.extend(self.proc.communicate()),
                                               daemon=True)
                self.reader.start()
            except BaseException:
                self.cancel()
                raise

    def finish(self) -> dict:
        folder, sources = self.folder, self.sources
        if self.reused is not None:
            for name, data in self.reused.items():
                (folder / name).write_bytes(data)
            return self.record
        if self.proc is None:
            raise ExportError("ORT format: the conversion was cancelled")
        try:
            self.reader.join()
            code = self.proc.returncode
            if code != 0:
                text = (self.output[1] or self.output[0]).strip() if self.output else ""
                tail = " ".join(text.splitlines()[-3:])[:500]
                raise ExportError(f"ORT format: onnxruntime's converter failed (exit {code}): {tail}")
            out = self.tmp / "ort"
            for ort_name, onnx_name in sources.items():
                (folder / ort_name).write_bytes((out / Path(onnx_name).with_suffix(".ort").name).read_bytes())
            # The converter's comment lines name the temporary paths of the models; name the artifact's files.
            lines = [line for line in (out / OPS_CONFIG).read_text().splitlines() if not line.startswith("# ")]
        finally:
            self.cancel()
        header = ["# ONNX Runtime operators (and types) the ORT-format models of this artifact use, for",
                  "# build.sh --minimal_build --include_ops_by_config <this file> --enable_reduced_operator_type_support",
                  *(f"# - {name}" for name in sorted(sources))]
        (folder / OPS_CONFIG).write_text("\n".join(header + lines) + "\n")
        return self.record

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cancel(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.reader is not None:
            self.reader.join()  # communicate() returns once the process has ended
            self.reader = None
        self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


_CONVERT = """
import pathlib, sys
from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort
convert_onnx_models_to_ort(pathlib.Path(sys.argv[1]), output_dir=pathlib.Path(sys.argv[2]),
                           optimization_styles=[OptimizationStyle.Fixed], enable_type_reduction=True)
"""


def _start_converter(tmp: Path) -> subprocess.Popen:
    """onnxruntime's converter on every .onnx in ``tmp/onnx``, into ``tmp/ort``, in a process of its own (it
    prints a line per step and logs at INFO, into pipes) started with address randomization off where
    ``setarch -R`` can do that: its hash seed is an address, so then its bytes are the same from run to run. Where
    that address lands also depends on what the process allocated before, so it starts the same way every time:
    the same arguments (relative paths, in ``tmp``) and a fixed environment (measured: inheriting pytest's made
    other bytes)."""
    return subprocess.Popen([*_no_aslr_prefix(), sys.executable, "-c", _CONVERT, "onnx", "ort"], cwd=tmp,
                            env={"PYTHONHASHSEED": "0", "LC_ALL": "C"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@functools.lru_cache(maxsize=1)
def _no_aslr_prefix() -> tuple[str, ...]:
    """``setarch <machine> -R`` if it works here (util-linux on Linux; a sandbox may forbid personality())."""
    setarch = shutil.which("setarch")
    if setarch is None:
        return ()
    prefix = (setarch, platform.machine(), "-R")
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return prefix if ok else ()


def _previous_ort(folder: Path, record: dict, previous: dict | None, previous_folder: Path) -> dict | None:
    """The previous artifact's ORT files and operator config (name -> bytes) if it recorded ``record`` for ONNX
    files identical to ``folder``'s, and its files still match its manifest; None otherwise."""
    if not previous or (previous.get("export") or {}).get("ort") != record:
        return None
    old = previous.get("files") or {}
    names = [*record["models"], OPS_CONFIG]
    for onnx_name in record["models"].values():
        if old.get(onnx_name) != sha256_bytes((folder / onnx_name).read_bytes()):
            return None
    try:
        data = {name: (previous_folder / name).read_bytes() for name in names}
    except OSError:
        return None
    return data if all(old.get(name) == sha256_bytes(b) for name, b in data.items()) else None


def _inline_weight_aliases(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node its own copy of the weights that ``Identity`` nodes alias.

    When one module runs more than once (pos-ewt's char BiLSTM, once per length bucket), the TorchScript-based
    exporter keeps one copy of its weights and feeds the other calls through ``Identity`` nodes. The quantizer
    only quantizes weights that are initializers, so those calls would stay float32 (and the float32 weights
    would stay in the file beside their int8 copy); and pointing all calls at one initializer is worse: with
    three LSTMs sharing one weight the int8 graph lost 19 points of dev accuracy (95.6% -> 76.6%, measured;
    the quantizer rewrites an LSTM's weights per node). So each
    aliasing ``Identity`` becomes an initializer of its own, a copy of the weight, under the same name."""
    weights = {t.name: t for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    aliases = [n for n in model.graph.node
               if n.op_type == "Identity" and n.input[0] in weights and n.output[0] not in outputs]
    for n in aliases:
        copy = onnx.TensorProto()
        copy.CopyFrom(weights[n.input[0]])
        copy.name = n.output[0]
        model.graph.initializer.append(copy)
        model.graph.node.remove(n)
    return model


class _MessageFilter(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def declared_shapes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(model.graph.input) + list(model.graph.output)}


def check_onnx(model: onnx.ModelProto | Path, io: IOSpec, where: str | Path | None = None) -> None:
    """Full onnx.checker and strict shape inference, then every declared IO shape must equal the IO spec:
    a symbolic axis pinned to a number (or a fixed one made symbolic) fails the export."""
    if isinstance(model, Path):
        model, where = onnx.load(str(model)), model
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{where}: onnx checker / shape inference failed: {e}") from None
    got = declared_shapes(model)
    for spec in io.inputs + io.outputs:
        if got.get(spec.name) != list(spec.shape):
            raise ExportError(f"{where}: {spec.name!r} declared as {got.get(spec.name)}, expected {list(spec.shape)} "
                              f"(a pinned axis makes the graph fail at other lengths/batches)")


def add_metadata(model: onnx.ModelProto, manifest: Manifest) -> None:
    """Put the essentials into the ONNX ``metadata_props``, so the .onnx alone says what it is."""
    props = {
        "seqedge.format_version": str(FORMAT_VERSION),
        "seqedge.name": manifest.name,
        "seqedge.kind": manifest.kind,
        "seqedge.config": json.dumps(manifest.config, sort_keys=True),
        "seqedge.io": json.dumps(manifest.io.to_json()),
        "seqedge.vocab": json.dumps(manifest.vocab, ensure_ascii=False),
    }
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "seqedge"
