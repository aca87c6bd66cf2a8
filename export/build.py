"""train -> export (TorchScript, ONNX) -> check -> verify -> write: one artifact folder, complete or absent.

The artifact is built in a temporary folder beside its destination (``.NAME.PID.*.partial``) and moved into
place only after every check passed, so an interrupted or failing export never leaves a half artifact nor harms
the previous one. The previous artifact is moved aside (``.NAME.PID.*.old/NAME``) for the instant between the
two renames; an export killed there leaves ``NAME`` absent and the previous artifact intact beside it, and the
next export of NAME puts it back before starting. Leftovers of killed exports (their process is gone) are
removed by the next export of the same NAME into the same folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime
import torch

import runtime
from runtime.artifact import INT8_FILE, ONNX_FILE, TORCHSCRIPT_FILE, Manifest, sha256_bytes, write_manifest
from .convert import OPSET, ExportError, add_metadata, check_onnx, quantize_int8, to_onnx, to_torchscript
from .inputs import make_feed
from .models import io_for
from .spec import ModelSpec
from .verify import ParityError, backends_for, raise_on_failure, summarize, verify

EXPORTER_REASON = ("torch 2.13's dynamo exporter pins the time axis of LSTM/GRU/RNN graphs to the example length "
                   "(they fail at any other length); the TorchScript-based exporter keeps time and batch symbolic")


@dataclass
class Result:
    name: str
    folder: Path
    manifest: Manifest
    seconds: float


def export(spec: ModelSpec, out_root: Path, *, exporter: str = "torchscript", force: bool = False,
           retrain: bool = False) -> Result:
    """Train ``spec``, export it, verify it, and write ``out_root/NAME``. Raises ExportError or ParityError."""
    started = time.perf_counter()
    dest = out_root / spec.name
    if dest.exists() and not force:
        raise ExportError(f"{dest} exists; pass --force to replace it")
    out_root.mkdir(parents=True, exist_ok=True)
    clean_stale(out_root, spec.name)
    trained = spec.train(retrain)
    net = trained.net.eval()
    io = io_for(spec.kind, trained.cfg)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.{os.getpid()}.", suffix=".partial", dir=out_root))
    tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be read by others
    try:
        to_torchscript(net, tmp / TORCHSCRIPT_FILE)
        example = make_feed(io, trained.cfg, spec.example_length, spec.example_batch)
        to_onnx(net, io, tmp / ONNX_FILE, tuple(torch.from_numpy(a) for a in example.values()), exporter)
        manifest = Manifest(
            name=spec.name, kind=spec.kind, config=trained.cfg.to_json(), io=io, vocab=trained.vocab,
            export={"exporter": exporter, "exporter_call": "torch.onnx.export(dynamo=%s)" % (exporter == "dynamo"),
                    "exporter_reason": EXPORTER_REASON, "opset": OPSET, "torch": torch.__version__,
                    "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "source": spec.source,
                    "summary": spec.summary, "training": trained.training},
            parity={"example_length": spec.example_length})
        add_metadata(tmp / ONNX_FILE, manifest)
        check_onnx(tmp / ONNX_FILE, io)
        files = [ONNX_FILE, TORCHSCRIPT_FILE]
        if spec.int8:
            quantize_int8(tmp / ONNX_FILE, tmp / INT8_FILE)
            check_onnx(tmp / INT8_FILE, io)
            files.append(INT8_FILE)
        for name, data in trained.extra_files.items():
            (tmp / name).write_bytes(data)
            files.append(name)
        manifest.files = {f: sha256_bytes((tmp / f).read_bytes()) for f in files}
        write_manifest(tmp, manifest)

        diffs = verify(backends_for(tmp, net, spec.example_length))
        model = runtime.load(tmp)
        checks = [{"what": what, "ok": ok, "detail": detail} for what, ok, detail in trained.facts]
        for check in spec.checks:
            ok, detail = check.run(model)
            checks.append({"what": check.what, "ok": ok, "detail": detail})
        manifest.parity = {**summarize(diffs, spec.example_length), "checks": checks}
        write_manifest(tmp, manifest)
        raise_on_failure(diffs)
        failed = [c for c in checks if not c["ok"]]
        if failed:
            raise ParityError("artifact check(s) failed:\n" + "\n".join(
                f"  {spec.name}: {c['what']}: {c['detail']}" for c in failed))
        _replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Result(spec.name, dest, manifest, time.perf_counter() - started)


def _replace(new: Path, dest: Path) -> None:
    """Move the verified folder into place; the previous artifact is removed only once the new one is there."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".old", dir=dest.parent))
        dest.rename(old / dest.name)
    new.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale(out_root: Path, name: str) -> list[Path]:
    """Remove what killed exports of ``name`` left in ``out_root``; returns what was removed or restored.

    ``.NAME.PID.*.partial`` (never a complete artifact: removed) and ``.NAME.PID.*.old`` (the previous artifact,
    moved aside just before the new one took its place: put back when NAME is absent, else removed). Folders
    of a process that is still running (another export) are left alone.
    """
    touched = []
    for leftover in sorted(out_root.glob(f".{name}.*")):
        parts = leftover.name[len(name) + 2:].split(".")
        if len(parts) < 3 or parts[-1] not in ("partial", "old") or not parts[0].isdigit():
            continue
        if _alive(int(parts[0])):
            continue
        previous, dest = leftover / name, out_root / name
        if parts[-1] == "old" and previous.is_dir() and not dest.exists():
            previous.rename(dest)
        shutil.rmtree(leftover, ignore_errors=True)
        touched.append(leftover)
    return touched


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is just starting the export of NAME: nothing of it exists yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
