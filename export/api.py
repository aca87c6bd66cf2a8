"""``export_module``: any trained torch module -> a verified artifact folder (TorchScript + ONNX + manifest).

    describe (signature.py) -> TorchScript (convert.py) -> ONNX, first path that keeps the axes (``_onnx``:
    convert.py, probed by verify.py; the fourth path is the ONNX Scan of the torch.export program, program.py) ->
    the optional stages (``_STAGES``: int8, ORT format, model.pt2, model.pte; each makes its files and may add a
    check) -> full verification (verify.py) -> checks -> write (write.py)

Nothing is written at ``folder`` unless every check passed; the caller's torch state (random generators, grad
mode, anything it scripted before) is as it was after the call.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import onnxruntime
import torch

import runtime
from runtime.artifact import (BATCH, INT8_FILE, ONNX_FILE, OPS_CONFIG, ORT_VARIANTS, PT2_FILE, PTE_FILE, TIME,
                              TORCHSCRIPT_FILE, ArtifactError, Manifest, model_file, read_manifest, sha256_bytes,
                              write_manifest)
from .choices import EXPORTERS, FORMATS
from .convert import (ONNX_PATHS, OPSET, check_onnx, quantize_int8, start_ort, to_onnx,
                      to_torchscript, quiet_export_tools)
from .errors import ExportError, ExportWarning, ParityError, PortabilityWarning, SignatureError
from . import program as programs
from .diagnose import declared_pins, explain, pinned_places, suspect_symbols
from .feeds import Custom, Feed, make_feed
from .rewrite import portable_recurrent
from .signature import AttributeGuard, FlatOutputs, Signature, infer, returns_lists, torch_backend, unflatten
from .verify import (MAY_REFUSE, OTHER_RUNTIMES, Case, Diff, Subject, case_feed, check_backends, check_runtimes, check_stepping,
                     fixed_cases, probe_cases, raise_on_failure, runtime_backend, summarize, verify)
from .write import check_writable, publish, staging

# What the portable form of recurrent layers cannot give (rewrite.PortableRNN), said where an export fails.
PORTABILITY = ("note: in the portable form an LSTM's c_n for a sequence shorter than its batch's longest is not "
               "available (no ONNX runtime but onnxruntime honours sequence_lens); if the model reads it, use h_n "
               "or the output at the sequence's last step")
INT8_MAX_ERROR = 0.1  # int8 vs fp32: RMS of the difference / RMS of fp32, per float output
# onnxruntime's dynamic quantization writes its own operators (com.microsoft DynamicQuantizeLSTM, MatMulInteger,
# DynamicQuantizeLinear): model.int8.onnx is for onnxruntime only; model.onnx is the portable one.
INT8_RUNTIMES = {"runtimes": ["onnxruntime"], "why": "onnxruntime dynamic quantization: com.microsoft "
                 "DynamicQuantizeLSTM and integer MatMul operators, which other runtimes do not implement"}


@dataclass
class _Job:
    """What one export_module call was asked for, beyond the module and its signature."""

    name: str
    kind: str
    exporter: str
    config: dict
    vocab: dict
    info: dict
    int8: bool
    checks: Sequence["Check"]
    facts: Sequence[tuple[str, bool, str]]
    custom: Custom | None
    extra_files: dict[str, bytes]
    runtime_feeds: Callable[[runtime.Model], list[Feed]] | None
    say: Callable[[str], None]
    formats: tuple[str, ...] = FORMATS
    required: bool = False  # the caller named the formats: each must pass, or the export fails
    pte_batch: int = 1
    pte_max: dict[str, int] = field(default_factory=dict)
    portable: bool = False  # every installed ONNX runtime must agree with onnxruntime, or the export fails
    stage: str = ""  # the last progress line: where an unexpected failure happened
    warn: Callable[..., None] = print  # (message, category=ExportWarning)
    previous: dict | None = None  # the manifest (JSON) of the artifact this export replaces, if any
    dest: Path | None = None  # where the artifact is published (the one it replaces is there until then)


@dataclass(frozen=True)
class Check:
    """A fact the artifact must show (a seed's printed tensor, an accuracy, a size). ``run`` gets the artifact
    loaded through the runtime and returns (ok, detail)."""

    what: str
    run: Callable[[runtime.Model], tuple[bool, str]]


def export_module(model: torch.nn.Module, args: Any, folder: str | Path, input_names: Sequence[str],
                  axes: dict[str, dict[int, str]] | None = None, output_names: Sequence[str] | None = None,
                  lengths: str | None = None, state: dict[str, str] | None = None, int8: bool = False,
                  force: bool = False, *, exporter: str = "auto", kind: str = "module", name: str | None = None,
                  config: dict | None = None, vocab: dict | None = None, info: dict | None = None,
                  checks: Sequence[Check] = (), facts: Sequence[tuple[str, bool, str]] = (),
                  custom_inputs: Custom | None = None, extra_files: dict[str, bytes] | None = None,
                  runtime_feeds: Callable[[runtime.Model], list[Feed]] | None = None,
                  log: Callable[[str], None] | None = None, formats: Sequence[str] | None = None,
                  pte_batch: int = 1, pte_max: dict[str, int] | None = None, portable: bool = False,
                  dynamic_axes: dict | None = None, quiet: bool = False) -> Path:
    """Export ``model`` to TorchScript and ONNX with its ``axes`` dynamic, verify it, and write ``folder``.

    ``args``: forward's example arguments as torch.onnx.export takes them (a tuple of tensors and nested tuples
    of tensors); ``input_names`` name the flattened tensors in order; ``axes`` maps input names to
    ``{axis: symbol}`` ("time", "batch", or any other name, e.g. "width"; torch.onnx's ``dynamic_axes=`` is taken
    for it, its outputs' entries dropped); outputs' axes are learned by running
    the module. ``lengths`` names the input holding each sequence's valid length along "time"; ``state`` maps
    state inputs to the outputs that continue them ({"h_0": "h_n"}), detected when not given. ``int8`` also
    writes model.int8.onnx, checked against fp32. Each .onnx is also written in ORT format (model.ort,
    model.int8.ort, with required_operators_and_types.config), checked against it. The module with its recurrent
    layers in scan form (export/scan.py) goes through torch.export: model.pt2 (``torch.export.load``) and
    model.pte (ExecuTorch, XNNPACK; batch fixed at ``pte_batch``, since ExecuTorch 1.5.1 cannot keep both dynamic;
    every other symbol dynamic up to its ``pte_max`` bound, program.PTE_MAX_SIZE by default, for which its memory
    plan is sized), each verified like the others. ``formats`` names the optional
    formats ("ort", "pt2", "pte"); by default all are written wherever they pass, and one that cannot be made is
    recorded in the manifest (``export.not_written``) and said once; named ones must pass. ``force`` replaces an
    existing folder.

    model.onnx is also run in the other installed ONNX runtimes (the ONNX reference evaluator, OpenVINO, tract)
    and each is recorded as agrees, refused (why) or disagrees (max diff, first failing case). Where torch and
    onnxruntime (what ``runtime`` runs) agree, another runtime's refusal or wrong answer is one warning line
    (``PortabilityWarning``, or a "warning:" line in ``log``), not a failure; ``portable=True`` requires every
    installed runtime to agree (tract may refuse, never answer wrong).

    The keyword-only arguments are for model zoos built on this function (the registered models use them):
    ``exporter`` ("auto" tries torch's TorchScript-based exporter on the traced module, then on the scripted
    module, then the dynamo exporter, and keeps the first that passes; "torchscript" or "dynamo" restrict it),
    ``kind``/``config``/``vocab`` for the runtime class that loads the artifact, ``info`` for the manifest's
    export record, ``checks``/``facts`` for model-specific facts, ``custom_inputs`` for inputs that generated
    random tensors cannot be (see feeds.py), ``extra_files`` written beside the model, ``runtime_feeds`` for real
    inputs (made with the loaded artifact, e.g. ``Tagger.inputs``) that the other ONNX runtimes are checked on too,
    ``log`` for progress lines (and warning lines, instead of Python warnings).

    Progress: by default, when stderr is a terminal, each stage (the IO learned, TorchScript, the ONNX path,
    int8, ORT format, torch.export and ExecuTorch, verification, the other runtimes) is one line on stderr with
    the seconds since the call began; nothing when stderr is not a terminal, or with ``quiet=True``; ``log=``
    takes the lines instead.

    Returns the artifact folder; raises ExportError (bad arguments, unsupported layers, pinned axes; WriteError
    when the file system refuses: checked before any work, or a full disk while writing) or ParityError
    (backends disagree), and writes nothing then.
    """
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if dynamic_axes is not None:  # torch.onnx.export's name for the same {input: {axis: symbol}}
        if axes:
            raise ExportError("axes and dynamic_axes name the same thing (torch.onnx's name is dynamic_axes): "
                              "pass one")
        axes = _from_dynamic_axes(dynamic_axes, list(input_names))
    if axes is None:
        raise ExportError("axes: declare the axes that vary, e.g. axes={'x': {0: 'time', 1: 'batch'}} "
                          "(dynamic_axes=, torch.onnx's name, is taken too)")
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter: expected one of {EXPORTERS}, got {exporter!r}")
    wanted = FORMATS if formats is None else tuple(dict.fromkeys([formats] if isinstance(formats, str) else formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ExportError(f"formats: unknown {unknown}: expected names from {list(FORMATS)} (model.pt and "
                          f"model.onnx are always written)")
    if not isinstance(pte_batch, int) or isinstance(pte_batch, bool) or pte_batch < 1:
        raise ExportError(f"pte_batch: expected an int >= 1, got {pte_batch!r}")
    if pte_max is not None and not (isinstance(pte_max, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1 for k, v in pte_max.items())):
        raise ExportError(f"pte_max: expected a dict of symbol -> int >= 1 (e.g. {{'time': 512}}), got {pte_max!r}")
    dest = Path(folder)
    name = name or dest.name
    check_writable(dest.parent, str(dest))  # before any work: WriteError "DEST: cannot write there (...)"
    if dest.exists() and not force:
        raise ExportError(f"{dest} exists; pass force=True (--force) to replace it")
    if dest.is_symlink():  # publishing renames a new folder over it: the link would become a folder
        raise ExportError(f"{dest} is a symbolic link (to {dest.readlink()}): give the folder it points to, or "
                          f"another path; an export replaces folders, never links")
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest}: expected an artifact folder, got a file")
    progress = log if log is not None else None if quiet else _terminal_log()

    def say(message: str) -> None:
        job.stage = message.split(": ", 1)[-1].rstrip(" .")
        if progress is not None:
            progress(message)

    job = _Job(name, kind, exporter, config or {}, vocab or {}, info or {}, int8, checks, facts, custom_inputs,
               extra_files or {}, runtime_feeds, say, formats=wanted,
               required=formats is not None, pte_batch=pte_batch, pte_max=dict(pte_max or {}), dest=dest,
               portable=bool(portable), warn=_warner(log))

    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    guard = AttributeGuard(model)
    # Verification runs eager torch hundreds of times on small tensors: one thread is 1.5-6x faster there than
    # two (measured on nn.LSTM(64, 128, 2), T=256, B=3, on 2 cores), and the caller gets its setting back.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(), torch.no_grad():
            model.eval()
            try:
                sig = infer(model, args, list(input_names), axes, list(output_names) if output_names else None,
                            lengths, state, custom_inputs, guard)
            except SignatureError as e:
                raise ExportError(f"{name}: {e}") from None
            except Exception as e:  # the module's own failure on its example: named, never raw
                raise ExportError(f"{name}: running the module on its example failed: "
                                  f"{programs.first_line(e)}") from e
            job.say(f"{name}: IO {_io_line(sig)}")
            for message in _silent_pins(model, sig) + _state_hints(model, sig, state):
                job.warn(f"{name}: {message}")
            with staging(dest) as tmp:
                job.previous = _recorded(dest)  # after staging put back a previous artifact a kill left aside
                try:
                    _build(job, model, sig, tmp)
                except ExportError as e:  # every message starts with the model's name
                    if str(e).startswith(f"{name}: "):
                        raise
                    raise type(e)(f"{name}: {e}") from e.__cause__
                except OSError:  # WriteError, one line (write.staging)
                    raise
                except Exception as e:  # torch's own failures: never raw, always the model, stage and line
                    raise ExportError(f"{name}: {job.stage or 'export'} failed: {programs.first_line(e)}") from e
                publish(tmp, dest, replace=force)
    finally:
        torch.set_grad_enabled(grad)
        torch.set_num_threads(threads)
        guard.restore(model)
    return dest


def _terminal_log() -> Callable[[str], None] | None:
    """Progress lines on stderr, each with the seconds since the export began, where stderr is a terminal."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    start = time.perf_counter()
    return lambda message: print(f"[{time.perf_counter() - start:5.1f} s] {message}", file=sys.stderr, flush=True)


def _warner(log: Callable[[str], None] | None) -> Callable[..., None]:
    """One warning line: into ``log`` where the caller reads progress there (the CLI), else a Python warning."""
    def warn(message: str, category: type[Warning] = ExportWarning) -> None:
        if log is not None:
            log(f"warning: {message}")
        else:
            warnings.warn(message, category, stacklevel=_caller_level())
    return warn


def _caller_level() -> int:
    """``warnings.warn``'s stacklevel for the first frame outside this package: the user's call."""
    package = str(Path(__file__).resolve().parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _from_dynamic_axes(dynamic_axes, input_names: list[str]) -> dict[str, dict[int, str]]:
    """torch.onnx.export's ``dynamic_axes`` as ``axes``: {name: {axis: symbol}} is the same; {name: [axis, ...]}
    (torch.onnx names such axes itself) needs the symbols, so it is refused saying how to write them. Entries for
    outputs (which torch.onnx takes too) are dropped: export_module learns the outputs' axes by running."""
    if not isinstance(dynamic_axes, dict):
        raise ExportError(f"dynamic_axes: expected a dict like {{'x': {{0: 'time', 1: 'batch'}}}}, got "
                          f"{type(dynamic_axes).__name__}")
    axes = {}
    for k, v in dynamic_axes.items():
        if isinstance(v, (list, tuple)):
            example = ", ".join(f"{a}: SYMBOL" for a in v)
            raise ExportError(f"dynamic_axes[{k!r}]: a list of axes ({list(v)}) names no symbols; give each one, "
                              f"e.g. axes={{{k!r}: {{{example}}}}} with SYMBOL 'time', 'batch' or a name of yours "
                              f"(axes of the same size share one)")
        if k in input_names:
            axes[k] = v
    return axes


def _silent_pins(model: torch.nn.Module, sig: Signature) -> list[str]:
    """Axes that are fixed because none was declared, where that is rarely meant: an input of rank >= 2 with no
    dynamic axis, and a module with a sequence layer (nn.LSTM/GRU/RNN) whose inputs have no axis but batch that
    varies (a CRNN's time follows its image's 'width')."""
    found = [f"input {t.name!r} has no dynamic axis: its shape {list(t.shape)} is fixed at every call (declare "
             f"the axes that vary in axes=, e.g. {{{t.name!r}: {{0: 'time', 1: 'batch'}}}})"
             for t in sig.io.inputs if len(t.shape) >= 2 and not any(isinstance(d, str) for d in t.shape)]
    sequence_layer = any(isinstance(m, (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN)) for m in model.modules())
    varying = any(isinstance(d, str) and d != BATCH for t in sig.io.inputs for d in t.shape)  # CRNN: 'width'
    if sequence_layer and not varying:
        shapes = ", ".join(f"{t.name}{list(t.shape)}" for t in sig.io.inputs)
        found.append(f"no input declares a 'time' axis, so every call takes sequences of the example's length "
                     f"({shapes}); declare it in axes= if lengths vary")
    return found


_STATE_AFFIXES = re.compile(r"^(new|next|out|updated)_|_(0|n|in|out|new|next|prev)$|(?<=[a-z])(0|n|N)$")
_RECURRENT = (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN, torch.nn.LSTMCell, torch.nn.GRUCell, torch.nn.RNNCell)


def _state_hints(model: torch.nn.Module, sig: Signature, given: dict | None) -> list[str]:
    """A per-call model (no time axis: a streaming VAD, a predictor or decoder step) has no sequence to split,
    so its state cannot be detected by running: propose the pairs whose names and shapes match (``state`` ->
    ``stateN``, ``h`` -> ``h_n``, ``hidden`` -> ``new_hidden``), or say how to pass ``state=``."""
    if given or sig.io.state or any(TIME in t.shape for t in sig.io.inputs):
        return []
    floats = [t for t in sig.io.inputs if t.dtype == "float32"]
    outs = [t for t in sig.io.outputs if t.dtype == "float32"]
    root = lambda name: _STATE_AFFIXES.sub("", name.lower())  # noqa: E731
    pairs = {}
    for t in floats:
        match = [o.name for o in outs if o.shape == t.shape and o.name != t.name and root(o.name) == root(t.name)]
        if len(match) == 1:
            pairs[t.name] = match[0]
    if pairs:
        return [f"inputs and outputs that look like recurrent state, by name and shape: {pairs}; the artifact records "
                f"no state unless you pass state={pairs} (then the runtime starts them at zeros and carries them "
                f"from call to call)"]
    same_shape = any(o.shape == t.shape for t in floats for o in outs)  # could carry state, names aside
    if same_shape and any(isinstance(m, _RECURRENT) for m in model.modules()):
        return ["a recurrent model with no time axis and no state pair found: if it is called once per step, "
                "pass state={'INPUT': 'OUTPUT'} naming each state input and the output that continues it"]
    return []


def _io_line(sig: Signature) -> str:
    def fmt(t):
        return f"{t.name}{list(t.shape)}"
    state = f"; state {dict(sig.io.state)}" if sig.io.state else ""
    lengths = f"; lengths {sig.io.lengths!r}" if sig.io.lengths else ""
    return (", ".join(fmt(t) for t in sig.io.inputs) + " -> " + ", ".join(fmt(t) for t in sig.io.outputs)
            + state + lengths)


def _build(job: _Job, model: torch.nn.Module, sig: Signature, tmp: Path) -> None:
    """Everything between the learned signature and a complete, verified folder ``tmp``."""
    name, say = job.name, job.say
    args = _example_args(sig)
    say(f"{name}: TorchScript ...")
    sig.guard.restore(model)
    lists = returns_lists(model(*args))
    sig.guard.restore(model)
    exportable = FlatOutputs(model).eval() if lists else model  # what tracing and the exporters take
    ts_method, ts_reason = to_torchscript(model, args, tmp / TORCHSCRIPT_FILE, exportable)
    with quiet_export_tools():  # torch.jit.load's deprecation warning
        scripted = torch.jit.load(str(tmp / TORCHSCRIPT_FILE))
    manifest = Manifest(name=name, kind=job.kind, config=job.config, io=sig.io, vocab=job.vocab,
                        export={"torchscript": {"method": ts_method, "reason": ts_reason}, "opset": OPSET,
                                "torch": torch.__version__, "onnx": onnx.__version__,
                                "onnxruntime": onnxruntime.__version__, "signature": sig.notes, **job.info},
                        parity={"plan": sig.plan.to_json()})
    if lists:
        manifest.export["flattened_outputs"] = ("forward returns Python lists: exported through a wrapper that "
                                                "flattens its outputs into one tuple, in the order of the outputs")
    subject = Subject(name, job.kind, sig.io, sig.plan,
                      {"eager": torch_backend(model, sig.io, sig.structure, sig.guard),
                       "torchscript": torch_backend(scripted, sig.io, sig.structure, sig.guard)},
                      job.custom, {"eager": model, "torchscript": scripted})

    build = _Build(tmp, sig, manifest, subject, _Programs(exportable, args, sig, job),
                   ["fp32", "int8"] if job.int8 else ["fp32"])
    attempts = _onnx(job, build, exportable, scripted, ts_method, ts_reason)

    files = [ONNX_FILE, TORCHSCRIPT_FILE]
    for file_name, data in job.extra_files.items():
        (tmp / file_name).write_bytes(data)
        files.append(file_name)
    stages = [_STAGES[s] for s in _STAGES if (job.int8 if s == "int8" else s in job.formats)]
    try:
        for stage in stages:
            files += stage.make(job, build)
        build.finish(say, name)
    finally:
        build.cancel()  # after a failure: stop what still runs (a no-op once finished)
    if build.not_written:
        manifest.export["not_written"] = build.not_written
    manifest.files = {f: sha256_bytes((tmp / f).read_bytes()) for f in files}
    write_manifest(tmp, manifest)

    say(f"{name}: verifying {', '.join(subject.backends)} and onnxruntime ...")
    loaded = runtime.load(tmp)
    subject.backends["onnxruntime"] = runtime_backend(loaded)
    diffs = verify(subject) + build.diffs
    say(f"{name}: the same model.onnx in {', '.join(OTHER_RUNTIMES)} ...")
    real = job.runtime_feeds(loaded) if job.runtime_feeds else []
    cross, record = check_runtimes(subject, tmp / ONNX_FILE, real)
    if job.portable:
        diffs += cross
    for runtime_name, entry in record.items():
        if entry["status"] == "disagrees" and not job.portable:
            job.warn(f"{name}: {runtime_name} disagrees with onnxruntime in {entry['failed']} of "
                     f"{entry['comparisons']} comparisons (first: {entry['first_failure']}); model.onnx is written "
                     f"for onnxruntime, which agrees with torch ({_PORTABLE_HINT})", PortabilityWarning)
        elif entry["status"] == "refused" and (not job.portable or runtime_name in MAY_REFUSE):
            job.warn(f"{name}: {runtime_name} refuses model.onnx: {entry['error'][:200]}"
                     + ("" if job.portable or runtime_name in MAY_REFUSE else f" ({_PORTABLE_HINT})"),
                     PortabilityWarning)
    results = [{"what": what, "ok": ok, "detail": detail} for what, ok, detail in job.facts]
    results += [stage.check(build, loaded) for stage in stages if stage.check]
    for check in job.checks:
        ok, detail = check.run(loaded)
        results.append({"what": check.what, "ok": ok, "detail": detail})
    manifest.parity = {**summarize(diffs, subject), "checks": results, "plan": sig.plan.to_json(),
                       "runtimes": {"onnxruntime": {"version": onnxruntime.__version__, "status": "reference"},
                                    **record}, "portable_required": job.portable}
    if job.int8:
        manifest.export["int8_runtimes"] = INT8_RUNTIMES
    if job.previous is not None and all(d.ok for d in diffs) and all(c["ok"] for c in results):
        if _keep_recorded_figures(manifest, job.previous):
            say(f"{name}: the same files as the artifact it replaces: every bound passed again here; its "
                f"recorded figures are kept (measured on the CPU that first wrote them)")
    write_manifest(tmp, manifest)
    if not all(d.ok for d in diffs):
        notes = [_diagnose(model, args, sig, diffs)]
        if ts_method == "trace":
            notes.append(f"model.pt was traced: {ts_reason}")
        notes.append("model.onnx came from: " + "; ".join(attempts))
        if any(not d.ok and d.check.startswith("onnxruntime vs") for d in diffs):
            notes.append("other ONNX runtimes disagree with onnxruntime: the graph is not portable"
                         + (f" ({PORTABILITY})" if _reads_packed_lstm(model, sig) else "")
                         + "; without portable=True (--portable) it is written for onnxruntime, which agrees "
                           "with torch, and each runtime's result is recorded")
        try:
            raise_on_failure(diffs)
        except ParityError as e:
            raise ParityError("\n".join([f"{name}: {e}", *filter(None, notes)])) from None
    failed = [c for c in results if not c["ok"]]
    if failed:
        raise ParityError("artifact check(s) failed:\n" + "\n".join(f"  {name}: {c['what']}: {c['detail']}"
                                                                     for c in failed))


@dataclass
class _Build:
    """The artifact being built in ``tmp``, as the stages after ONNX read it and add to it."""

    tmp: Path
    sig: Signature
    manifest: Manifest
    subject: Subject  # the verified backends: a stage that passes its own checks may add its format's
    exported: "_Programs"
    variants: list[str]  # the ONNX variants: fp32, and int8 when asked for
    not_written: dict[str, str] = field(default_factory=dict)  # format -> why it could not be made
    diffs: list[Diff] = field(default_factory=list)  # a stage's own verification, joined to the whole artifact's
    # Work a stage started in another process: (its handle, what takes its result), finished or cancelled in _build.
    pending: list[tuple[Any, Callable[[Any], None]]] = field(default_factory=list)

    def finish(self, say: Callable[[str], None], name: str) -> None:
        """Wait for the pending work and hand each result on."""
        for work, take in self.pending:
            if work.running():
                say(f"{name}: waiting for the ORT converter ...")
            take(work.finish())

    def cancel(self) -> None:
        for work, _ in self.pending:
            work.cancel()


@dataclass(frozen=True)
class _Stage:
    """One optional format. ``make`` writes its files into the folder being built, from the module, its
    torch.export programs or an earlier stage's file, and returns their names (none where it records why it could
    not); ``check``, once the whole artifact loads through the runtime, gives one result for the parity record.
    A new format is one more entry in ``_STAGES``: no other stage changes."""

    make: Callable[[_Job, _Build], list[str]]
    check: Callable[[_Build, runtime.Model], dict] | None = None


def _onnx(job: _Job, build: _Build, model: torch.nn.Module, scripted, ts_method: str, ts_reason: str) -> list[str]:
    """model.onnx: the first ONNX path whose graph passes the length probes against eager (the manifest records
    every attempt); raises ExportError naming each when none does."""
    name, tmp, manifest, sig, subject, exported = (job.name, build.tmp, build.manifest, build.sig, build.subject,
                                                   build.exported)
    args = _example_args(sig)
    paths = {"auto": ONNX_PATHS, "torchscript": ONNX_PATHS[:2], "dynamo": ONNX_PATHS[2:]}[job.exporter]
    attempts: list[str] = []
    first = programs.needs_scan(model) if "scan" in paths else None
    if first:  # layers the ONNX RNN operators cannot hold portably: the Scan form first
        attempts.append(f"scan tried first: {first}")
        paths = ("scan", *(p for p in paths if p != "scan"))
    chosen = None
    for path in paths:
        if path == "scripted" and ts_method != "script":
            attempts.append(f"scripted: skipped ({ts_reason.removesuffix('; traced instead')})")
            continue
        job.say(f"{name}: ONNX via {path} ...")
        if path == "scan":
            try:
                program = exported.get({})
            except ExportError as e:
                attempts.append(f"scan: {' '.join(str(e).split())}")
                continue
            ok, detail = _try_onnx(program.program, args, tmp, manifest, sig, subject, path)
        else:
            ok, detail = _try_onnx(model if path != "scripted" else scripted, args, tmp, manifest, sig, subject, path)
        attempts.append(f"{path}: {detail}")
        if ok:
            chosen = path
            break
    manifest.export.update(_exporter_record(chosen, attempts))
    if chosen is None:
        failures = "\n".join(f"  {a}" for a in attempts)
        raise ExportError(f"{name}: no ONNX path keeps the declared axes dynamic; not written:\n{failures}")
    return attempts


def _int8(job: _Job, build: _Build) -> list[str]:
    """model.int8.onnx from model.onnx (onnxruntime's dynamic quantization)."""
    job.say(f"{job.name}: int8 (onnxruntime dynamic quantization) ...")
    quantize_int8(build.tmp / ONNX_FILE, build.tmp / INT8_FILE)
    check_onnx(build.tmp / INT8_FILE, build.sig.io)
    return [INT8_FILE]


def _ort(job: _Job, build: _Build) -> list[str]:
    """model.ort (and model.int8.ort) from each ONNX variant, with the operators config a minimal build needs.
    The converter runs in a process of its own while the next stages run; its files are in place before the
    manifest lists them (``_Build.finish``)."""
    job.say(f"{job.name}: ORT format (onnxruntime's converter, in its own process beside the next stages) ...")
    conversion = start_ort(build.tmp, build.variants, job.previous, job.dest)
    record = build.manifest.export["ort"] = {}  # its place in the manifest now, its contents when it finishes
    build.pending.append((conversion, record.update))
    return [*(ORT_VARIANTS[v] for v in build.variants), OPS_CONFIG]


class _Programs:
    """The torch.export programs of the scan form, made on first use and shared: the one with every symbol dynamic
    (the ONNX Scan path and model.pt2) and the one for the .pte (batch fixed). A failure is kept and raised again."""

    def __init__(self, model: torch.nn.Module, args: tuple, sig: Signature, job: _Job):
        self.model, self.args, self.sig, self.job = model, args, sig, job
        self.made: dict[tuple, programs.Program | ExportError] = {}

    def get(self, fixed: dict[str, int], largest: dict[str, int] | None = None, scan: bool = True) -> programs.Program:
        key = (tuple(sorted(fixed.items())), tuple(sorted((largest or {}).items())), scan)
        if key not in self.made:
            self.job.say(f"{self.job.name}: torch.export of the {'scan form' if scan else 'module'}"
                         + (f" ({', '.join(f'{k} {v}' for k, v in fixed.items())})" if fixed else "") + " ...")
            # torch.export specializes a size-1 (or 0) example to a constant: such a symbol is exported at size 2.
            sizes = {**{s: 2 for s, n in self.sig.plan.example.items() if n < 2 and s not in fixed}, **fixed}
            args = _args_at(self.sig, sizes, self.job.custom, fixed) if sizes else self.args
            try:
                self.made[key] = programs.export_program(self.model, args, self.sig.io, self.sig.structure,
                                                         fixed=fixed, largest=largest,
                                                         smallest={k: min(v) for k, v in self.sig.plan.sizes.items()},
                                                         restore=self.sig.guard.restore, scan=scan)
            except ExportError as e:
                self.made[key] = e
        made = self.made[key]
        if isinstance(made, ExportError):
            raise made
        return made


def _args_at(sig: Signature, sizes: dict[str, int], custom: Custom | None, fixed: dict[str, int]) -> tuple:
    """Example arguments at other sizes of some symbols (the .pte's fixed batch), made like verification's, with
    every symbol not ``fixed`` at size 2 or more (torch.export makes a size-1 example a constant). Structured
    inputs (``custom``) decide some sizes themselves (pos-ewt's spellings per bucket): the first of a few seeds
    whose feed has them all >= 2 is taken."""
    for seed in range(32):
        feed = make_feed(sig.io, sig.plan, {**sig.plan.example, **sizes}, seed=seed, custom=custom)
        got = {d: n for spec in sig.io.inputs for d, n in zip(spec.shape, feed[spec.name].shape) if isinstance(d, str)}
        if custom is None or all(n >= 2 for d, n in got.items() if d not in fixed):
            break
    leaves = [torch.from_numpy(feed[spec.name]) for spec in sig.io.inputs]
    args = unflatten(sig.structure, leaves)
    return args if isinstance(args, tuple) else (args,)


def _skip(job: _Job, build: _Build, fmt: str, why: str) -> list[str]:
    """A format that cannot be made: with ``formats=`` naming it, the export fails; else it is recorded and said."""
    if job.required:
        raise ExportError(f"{job.name}: {fmt} cannot be made: {why}")
    build.not_written[fmt] = why
    job.say(f"{job.name}: {fmt} not written: " + "; ".join(line.strip() for line in why.splitlines() if line.strip()))
    return []


def _pt2(job: _Job, build: _Build) -> list[str]:
    """model.pt2: the program with every symbol dynamic, saved, loaded back and probed against eager; it then
    joins the verified backends (every pair, every size, stepping)."""
    exported, subject, tmp, manifest = build.exported, build.subject, build.tmp, build.manifest
    try:
        program = exported.get({})
    except ExportError as e:
        return _skip(job, build, PT2_FILE, str(e))
    job.say(f"{job.name}: {PT2_FILE} ...")
    programs.save_pt2(program.program, tmp / PT2_FILE)
    backend = torch_backend(programs.load_pt2(tmp / PT2_FILE), subject.io, exported.sig.structure)
    probe = Subject(subject.name, subject.kind, subject.io, subject.plan,
                    {"eager": subject.backends["eager"], "pt2": backend}, subject.custom)
    bad = [d for c in probe_cases(subject.plan, subject.io) for d in check_backends(probe, c) if not d.ok]
    if bad:
        (tmp / PT2_FILE).unlink()
        return _skip(job, build, PT2_FILE, f"{len(bad)} probe comparisons failed, e.g. {bad[0]}")
    subject.backends["pt2"] = backend
    manifest.export["pt2"] = {"file": PT2_FILE, "torch_export": {"strict": program.strict, "attempts": program.attempts},
                              "scan_layers": program.layers, "load": "torch.export.load(path).module()"}
    return [PT2_FILE]


def _pte(job: _Job, build: _Build) -> list[str]:
    """model.pte: the program exported again with the batch fixed (ExecuTorch keeps only the time axis dynamic),
    lowered with XNNPACK, run in ExecuTorch's runtime against eager at every verified size it takes, stepping
    included, and held to refuse (an error, not an answer) another batch and a sequence past its bound."""
    exported, subject, tmp, manifest = build.exported, build.subject, build.tmp, build.manifest
    version = programs.executorch_version()
    if version is None:
        return _skip(job, build, PTE_FILE, programs.EXECUTORCH_MISSING)
    io = subject.io
    fixed = {BATCH: job.pte_batch} if any(BATCH in t.shape for t in io.inputs) else {}
    symbols = dict.fromkeys(d for t in io.inputs for d in t.shape if isinstance(d, str) and d not in fixed)
    bounds = {d: job.pte_max.get(d, programs.PTE_MAX_SIZE) for d in symbols}
    try:
        program = exported.get(fixed, largest=bounds)
    except ExportError as e:
        return _skip(job, build, PTE_FILE, str(e))
    methods, step = {"forward": program.program}, _pte_step(job, exported, io, fixed)
    if isinstance(step, programs.Program):
        methods[programs.STEP_METHOD] = step.program
    job.say(f"{job.name}: {PTE_FILE} (ExecuTorch lowering: {', '.join(methods)}) ...")
    try:
        lowering = programs.lower_pte(methods, tmp / PTE_FILE)
        runner = programs.PteRunner(tmp / PTE_FILE, io)
    except Exception as e:  # ExecuTorch's lowering and loader raise many types; the first line says which
        return _skip(job, build, PTE_FILE, f"ExecuTorch lowering failed: {programs.first_line(e)}")
    pair = Subject(subject.name, subject.kind, io, subject.plan, {"eager": subject.backends["eager"], "pte": runner},
                   subject.custom)
    # Time-1 calls go to the step method: the cases at time 1 and stepping check it against eager and forward.
    found = [d for c in fixed_cases(subject.plan, io, fixed) for d in check_backends(pair, c)]
    found += [d for c in fixed_cases(subject.plan, io, fixed, stepping=True) for d in check_stepping(pair, c)]
    refusals = _pte_refusals(pair, runner, fixed, bounds)
    found += [r for r in refusals if not r.ok]
    bad = [d for d in found if not d.ok]
    if bad and not job.required:
        (tmp / PTE_FILE).unlink()
        return _skip(job, build, PTE_FILE,
                     f"{len(bad)} of {len(found)} comparisons in ExecuTorch failed, e.g. {bad[0]}")
    build.diffs += found
    one_step = {TIME: 1, **fixed}
    manifest.export["pte"] = {
        "file": PTE_FILE, "executorch": version, "lowering": lowering,
        "torch_export": {"strict": program.strict, "attempts": program.attempts},
        "fixed": fixed, "max": bounds,
        "inputs": {t.name: programs.pte_shape(t.shape, fixed) for t in io.inputs},
        "outputs": {t.name: programs.pte_shape(t.shape, fixed) for t in io.outputs},
        programs.STEP_METHOD: ({"inputs": {t.name: programs.pte_shape(t.shape, one_step) for t in io.inputs},
                                "outputs": {t.name: programs.pte_shape(t.shape, one_step) for t in io.outputs},
                                "torch_export": {"strict": step.strict, "attempts": step.attempts}}
                               if isinstance(step, programs.Program) else {"not_made": step}),
        "refuses": [r.output for r in refusals],
        "load": "executorch.runtime.Runtime.get().load_program(path).load_method('forward')"
                + (f" (or '{programs.STEP_METHOD}')" if isinstance(step, programs.Program) else "")}
    return [PTE_FILE]


def _pte_step(job: _Job, exported: _Programs, io, fixed: dict[str, int]) -> programs.Program | str:
    """The .pte's one-step method, or why there is none: a model that carries state over a time axis, exported
    as it is (no scan) at time 1 and the .pte's batch, where XNNPACK takes every operator (it does not enter a
    scan's body, so ``forward`` steps on portable kernels). The on-device streaming call."""
    symbols = {d for t in io.inputs for d in t.shape if isinstance(d, str)}
    if not io.state or io.lengths or TIME not in symbols:
        return "the model carries no state over a time axis: it is not stepped"
    if symbols - {TIME, *fixed}:
        return f"symbols other than time and batch ({sorted(symbols - {TIME, *fixed})}) are not fixed for one step"
    try:
        return exported.get({**fixed, TIME: 1}, scan=False)
    except ExportError as e:
        return str(e)


def _pte_refusals(pair: Subject, runner: programs.PteRunner, fixed: dict[str, int],
                  bounds: dict[str, int]) -> list[Diff]:
    """The .pte must raise, not answer, at a batch other than its own and at a length past its bound."""
    base = dict(pair.plan.example, **fixed)
    tries = []
    if BATCH in fixed:
        tries.append((f"batch {fixed[BATCH] + 1}", {**base, BATCH: fixed[BATCH] + 1}))
    if TIME in bounds:
        tries.append((f"time {bounds[TIME] + 1}", {**base, TIME: bounds[TIME] + 1}))
    if programs.STEP_METHOD in runner.methods:
        tries.append((f"time 2 in {programs.STEP_METHOD}", {**base, TIME: 2}))
    out = []
    for what, sizes in tries:
        case = Case(tuple(sizes.items()), False)
        try:
            runner(case_feed(pair, case), method=programs.STEP_METHOD if programs.STEP_METHOD in what else None)
        except Exception as e:  # the refusal expected: ExecuTorch's own error
            out.append(Diff(pair.name, "pte refuses", case, f"{what}: refused ({programs.first_line(e, 120)})",
                            0.0, 0.0, True))
        else:
            out.append(Diff(pair.name, "pte refuses", case, what, np.inf, np.inf, False,
                            error=f"the .pte answered at {what} instead of refusing: a wrong shape would pass silently"))
    return out


def _example_args(sig: Signature) -> tuple:
    args = unflatten(sig.structure, sig.example)
    return args if isinstance(args, tuple) else (args,)


def _try_onnx(module, args, tmp: Path, manifest: Manifest, sig: Signature, subject: Subject,
              path: str) -> tuple[bool, str]:
    """Export by ``path`` into tmp/model.onnx and probe it against eager at sizes other than the example's:
    (passed, what happened), with the pinned axis and its source line where found."""
    onnx_path = tmp / ONNX_FILE
    if isinstance(module, torch.nn.Module):
        sig.guard.restore(module)
    # The traced and dynamo paths export a copy whose recurrent layers are portable (rewrite.py); the scripted
    # module keeps torch's own (the cross-runtime check tells whether its graph is portable); the scan path gets
    # the torch.export program of the scan form (program.py).
    graph_of_python = path in ("traced", "dynamo")
    portable, layers = portable_recurrent(module) if graph_of_python else (module, [])
    note = f" (recurrent layers {layers} in the portable form)" if layers else ""
    try:
        graph = to_onnx(portable, args, onnx_path, sig.io, sig.structure, path, manifest)
        check_onnx(graph, sig.io, onnx_path)
    except OSError as e:  # the file system's refusal (a full disk) is no exporter's: write.staging says it in one line
        if e.errno is not None:
            raise
        return False, f"export failed: {type(e).__name__}: {e}"
    except Exception as e:  # each exporter fails in its own way; the reason is recorded and the next tried
        cause = e
        while cause.__cause__ is not None:  # the dynamo exporter's "step 1/3" wraps torch.export's own reason
            cause = cause.__cause__
        if cause is not e:
            return False, f"export failed: {type(e).__name__}, from {programs.first_line(cause)}"
        message = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(e).split()))  # the dynamo exporter's colours
        return False, f"export failed: {type(e).__name__}: {message[:300]}"
    manifest.files = {ONNX_FILE: sha256_bytes(graph.SerializeToString())}  # the bytes to_onnx wrote
    write_manifest(tmp, manifest)
    try:
        loaded = runtime.load(tmp)
    except ArtifactError as e:  # onnxruntime infers a fixed size where the manifest has a symbol: a pinned axis
        pins = declared_pins(onnx_path, sig.io, sig.plan.example)
        symbols = list(dict.fromkeys(pins.values())) or list(sig.plan.example)
        places = pinned_places(module, args, sig.plan.example, symbols) if graph_of_python else []
        return False, "\n".join([" ".join(str(e).split()), *pins, *(f"  {p}" for p in places)])
    probe = Subject(subject.name, subject.kind, sig.io, sig.plan,
                    {"eager": subject.backends["eager"], "onnxruntime": runtime_backend(loaded)}, subject.custom)
    diffs = [d for c in probe_cases(sig.plan, sig.io) for d in check_backends(probe, c)]
    bad = [d for d in diffs if not d.ok]
    if not bad:
        return True, f"ok: every probe passed{note}"
    if sig.io.lengths and any(isinstance(module.get_submodule(n), torch.nn.LSTM) for n in layers):
        note += f"; {PORTABILITY}"
    diagnosis = _diagnose(module, args, sig, diffs) if graph_of_python else ""
    return False, f"{len(bad)} of {len(diffs)} probe comparisons failed{note}, e.g. {bad[0]}" + (
        f"\n{diagnosis}" if diagnosis else "")


_PORTABLE_HINT = "portable=True / --portable requires every runtime to agree"


def _reads_packed_lstm(model: torch.nn.Module, sig: Signature) -> bool:
    """Where PORTABILITY applies: an LSTM over sequences of their own lengths (its c_n at a shorter sequence's end)."""
    return bool(sig.io.lengths) and any(isinstance(m, torch.nn.LSTM) for m in model.modules())


def _diagnose(module, args, sig: Signature, diffs: list[Diff]) -> str:
    suspects = suspect_symbols(diffs, sig.plan.example)
    if not suspects or isinstance(module, torch.jit.ScriptModule):
        return explain(diffs, sig.io, sig.plan.example, [])
    return explain(diffs, sig.io, sig.plan.example, pinned_places(module, args, sig.plan.example, suspects))


def _exporter_record(chosen: str | None, attempts: list[str]) -> dict:
    calls = {"traced": "torch.onnx.export(model, dynamo=False): the TorchScript-based exporter, tracing the module",
             "scripted": "torch.onnx.export(torch.jit.script(model), dynamo=False): the TorchScript-based exporter "
                         "on the scripted module (Python loops and len() stay dynamic)",
             "dynamo": "torch.onnx.export(model, dynamo=True): torch's default exporter"}
    scan = {"scan": "torch.onnx.export(torch.export.export(scan form of model), dynamo=True): the dynamo exporter "
                    "on the torch.export program with recurrent layers in scan form (ONNX Scan)"}
    return {"exporter": {"traced": "torchscript", "scripted": "torchscript", "dynamo": "dynamo",
                         "scan": "dynamo"}.get(chosen),
            "onnx_path": chosen, "exporter_call": {**calls, **scan}.get(chosen),
            "exporter_reason": (f"first of {list(calls)} whose graph passed the length probes against eager"
                                if chosen else "no path passed"),
            "exporter_attempts": attempts}


def _int8_check(build: _Build, fp32: runtime.Model) -> dict:
    """int8 vs fp32 (``fp32``, loaded already) through the runtime on the probe sizes: relative RMS error per
    float output, its worst over the sizes. The detail names the worst size only on failure: which size is
    worst can change with the CPU's int8 kernels, and a passing detail must read the same on every machine but
    for its figures (``_keep_recorded_figures``)."""
    subject, q = build.subject, runtime.load(build.tmp, variant="int8")
    cases = probe_cases(subject.plan, subject.io)
    worst: dict[str, tuple[float, str]] = {}  # float output -> (its worst error, where)
    for case in cases:
        feed = case_feed(subject, case)
        a, b = fp32.run(**feed), q.run(**feed)
        for spec in subject.io.outputs:
            if spec.dtype != "float32":
                continue
            ref = a[spec.name].astype(np.float64)
            err = float(np.sqrt(np.mean((b[spec.name] - ref) ** 2)) / max(np.sqrt(np.mean(ref ** 2)), 1e-12))
            if err > worst.get(spec.name, (-1.0, ""))[0]:
                worst[spec.name] = (err, str(case))
    top, where = max(worst.values(), default=(0.0, "no float output"))
    ok = top <= INT8_MAX_ERROR
    detail = f"worst over {len(cases)} probe sizes: " + ", ".join(f"{n} {e:.4f}" for n, (e, _) in worst.items())
    if not ok:
        detail += (f"; {top:.4f} at {where} (output {max(worst, key=lambda n: worst[n][0])}): int8 changes this "
                   f"model's outputs too much; export it without int8")
    return {"what": f"int8 vs fp32: relative RMS error of every float output <= {INT8_MAX_ERROR}", "ok": ok,
            "detail": detail}


def _ort_check(build: _Build, loaded: runtime.Model) -> dict:
    """Each ORT-format file answers as its ONNX source, both through the runtime, at every probe size (fp32
    tolerances; measured: identical)."""
    subject, tmp, variants = build.subject, build.tmp, build.variants
    cases = probe_cases(subject.plan, subject.io)
    diffs: list[Diff] = []
    for v in variants:
        pair = Subject(subject.name, subject.kind, subject.io, subject.plan,
                       {model_file(v): runtime_backend(runtime.load(tmp, variant=v)),
                        model_file(v, "ort"): runtime_backend(runtime.load(tmp, variant=v, format="ort"))},
                       subject.custom)
        diffs += [d for case in cases for d in check_backends(pair, case)]
    bad = [d for d in diffs if not d.ok]
    worst = max((d.max_abs for d in diffs if np.isfinite(d.max_abs)), default=0.0)
    files = ", ".join(model_file(v, "ort") for v in variants)
    return {"what": f"ORT format: {files} answer as their ONNX files through the runtime at every probe size "
                    f"(fp32 tolerances)", "ok": not bad,
            "detail": f"{len(diffs)} comparisons over {len(cases)} probe sizes: max abs diff {worst:.3g}"
                      + (f"; {len(bad)} failed, e.g. {bad[0]}" if bad else "")}


# The optional stages in the order they run (the ORT stage converts the int8 file when there is one).
_STAGES = {"int8": _Stage(_int8, _int8_check), "ort": _Stage(_ort, _ort_check), "pt2": _Stage(_pt2),
           "pte": _Stage(_pte)}


# ---- figures measured on this CPU ------------------------------------------------------------------------------
# A figure measured by running the model (the parity tables' max diffs, each runtime's max diff, the numbers in a
# check's detail: a seed's printed-tensor diff, an accuracy, int8's error and agreement) depends in its last digits
# on the CPU: torch, onnxruntime (MLAS), OpenVINO and numpy pick AVX2, AVX-512 or VNNI kernels at run time, which
# sum in other orders, and int8 kernels also saturate differently. Everything else in the manifest is decided by
# the files and the tools' versions. So a re-export whose manifest differs from the one it replaces only in these
# figures, after every bound passed again on this machine, keeps the recorded figures: `make run` on another CPU
# rewrites no committed byte, and each figure stays the one measured by the export that first wrote the files.
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")  # with its sign: int8 may gain accuracy


def _figure_paths(m: dict) -> list[tuple]:
    """Where the manifest (JSON) holds figures measured on the exporting CPU: numbers, or text with numbers in it
    (a check's detail; the ONNX paths tried, whose failures quote measured diffs)."""
    parity, export = m.get("parity") or {}, m.get("export") or {}
    paths: list[tuple] = [("parity", k) for k in ("max_abs_diff", "max_rel_diff") if k in parity]
    paths += [("parity", "runtimes", r, "max_abs_diff") for r, v in (parity.get("runtimes") or {}).items()
              if "max_abs_diff" in v]
    paths += [("parity", "checks", i, "detail") for i in range(len(parity.get("checks") or []))]
    paths += [("export", "exporter_attempts", i) for i in range(len(export.get("exporter_attempts") or []))]
    return paths


def _at(obj, path: tuple):
    for key in path[:-1]:
        obj = obj[key]
    return obj, path[-1]


def _masked(m: dict) -> dict:
    """A copy of the manifest JSON, as written (tuples are lists), with its measured figures masked (in text: only
    the numbers)."""
    m = json.loads(json.dumps(m))
    for path in _figure_paths(m):
        obj, key = _at(m, path)
        obj[key] = _NUMBER.sub("#", obj[key]) if isinstance(obj[key], str) else "#"
    return m


def _keep_recorded_figures(manifest: Manifest, previous: dict) -> bool:
    """If ``manifest`` (every check passed) equals ``previous`` but for its measured figures, take those from
    ``previous``; returns whether it did."""
    new = manifest.to_json()
    try:
        if _masked(new) != _masked(previous):
            return False
    except (TypeError, AttributeError, KeyError, IndexError):  # a previous manifest of another shape
        return False
    live = {"parity": manifest.parity, "export": manifest.export}  # the manifest's own dicts, edited in place
    for path in _figure_paths(new):
        obj, key = _at(live, path)
        old, old_key = _at(previous, path)
        obj[key] = copy.deepcopy(old[old_key])
    return True


def _recorded(dest: Path) -> dict | None:
    """The manifest of the artifact at ``dest`` (which this export replaces), if there is a readable one."""
    try:
        return read_manifest(dest).to_json()
    except (ArtifactError, OSError):
        return None
