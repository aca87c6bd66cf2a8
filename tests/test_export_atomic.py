"""An artifact folder is complete or absent: an export killed at any moment leaves no half artifact and never
destroys the previous good one, and the next export cleans up after it. A folder that cannot be written, a full
disk, and two exports of one NAME publishing at once each end in one line or one complete artifact."""

from __future__ import annotations

import dataclasses
import errno
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import export
import runtime
from export import api, write
from export.__main__ import main
from export.zoo import build
from export.zoo.registry import REGISTRY
from runtime.artifact import MANIFEST

from .conftest import ARTIFACTS, ROOT, run_cli

NAME = "lstm-tutorial"  # a seed model: trains and exports in ~10 s
X = np.random.default_rng(0).standard_normal((5, 2, 3), dtype=np.float32)


def start_export(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "export", NAME, "--out", str(out), "--force"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def assert_good(folder: Path, previous_manifest: bytes) -> str:
    """The artifact loads (SHA-256 verified) and computes what the committed one does; returns 'previous' when
    it is byte-for-byte the previous artifact, 'new' when a completed export replaced it."""
    model = runtime.load(folder)
    want = runtime.load(ARTIFACTS / NAME).run(input=X)
    for k, v in model.run(input=X).items():
        np.testing.assert_allclose(v, want[k], atol=1e-5, err_msg=k)
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "model.onnx", "model.ort", "model.pt", "model.pt2", "model.pte",
            "required_operators_and_types.config"]
    return "previous" if (folder / MANIFEST).read_bytes() == previous_manifest else "new"


@pytest.mark.slow
def test_killing_an_export_at_any_moment_loses_nothing(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(ARTIFACTS / NAME, out / NAME)  # the previous good artifact
    previous = (out / NAME / MANIFEST).read_bytes()
    rng = random.Random(6)
    # When to kill: before the temporary folder exists, the moment it appears, and at random moments while it
    # is built and verified (~4 s on 2 cores; a kill after the final rename finds the new artifact complete).
    moments = [("before", 0.5), ("partial", 0.0)] + [("partial", rng.uniform(0.1, 3.0)) for _ in range(2)]
    outcomes = []
    for when, delay in moments:
        proc = start_export(out)
        if when == "partial":
            deadline = time.monotonic() + 60
            while not list(out.glob(f".{NAME}.{proc.pid}.*.partial")):  # this run's, not a leftover
                assert proc.poll() is None, f"export ended before building: {proc.stderr.read()}"
                assert time.monotonic() < deadline, "no .partial folder appeared"
                time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcomes.append((when, round(delay, 2), assert_good(out / NAME, previous), leftovers(out)))
        assert not [p for p in out.iterdir() if not p.name.startswith(".") and p.name != NAME], outcomes
    assert outcomes[1][2] == "previous" and outcomes[1][3], f"the kill did not land mid-export: {outcomes}"

    # The next export runs to completion, cleans every leftover, and replaces the artifact.
    proc = start_export(out)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert assert_good(out / NAME, previous) in ("new", "previous") and leftovers(out) == [], outcomes


def test_a_kill_between_the_two_renames_keeps_the_previous_artifact_and_the_next_export_restores_it(
        tmp_path, monkeypatch):
    """publish moves the previous artifact aside, then the new one in: dying in between leaves NAME absent (an
    artifact folder is complete or absent) and the previous one intact, which the next export puts back."""
    out = tmp_path / "out"
    shutil.copytree(ARTIFACTS / NAME, out / NAME)
    previous = (out / NAME / MANIFEST).read_bytes()
    new = out / f".{NAME}.{os.getpid()}.abc123.partial"
    shutil.copytree(ARTIFACTS / NAME, new)
    renames = []
    real_rename = Path.rename

    def dies_after_first_rename(self, target):
        if renames:
            raise KeyboardInterrupt("killed between the renames")
        renames.append((self, target))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", dies_after_first_rename)
    with pytest.raises(KeyboardInterrupt):
        write.publish(new, out / NAME)
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not (out / NAME).exists()
    old = [p for p in out.iterdir() if p.name.endswith(".old")]
    assert len(old) == 1 and (old[0] / NAME / MANIFEST).read_bytes() == previous

    removed = write.clean_stale(out, NAME)  # what the next export of NAME does first
    assert sorted(p.name for p in removed) == sorted([old[0].name, new.name])
    assert assert_good(out / NAME, previous) == "previous" and leftovers(out) == []


def test_leftovers_of_a_live_export_are_left_alone(tmp_path):
    out = tmp_path
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = out / f".{NAME}.{sleeper.pid}.xyz.partial"
        live.mkdir()
        dead = out / f".{NAME}.999999999.xyz.partial"  # no such process
        dead.mkdir()
        other = out / ".pos-tutorial.999999999.xyz.partial"  # another model's: not this export's business
        other.mkdir()
        assert write.clean_stale(out, NAME) == [dead]
        assert live.exists() and other.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert write.clean_stale(out, NAME) == [live]


# ---- the file system refusing: one line, before any work where it can be known (issue 13, item 9) --------------

TINY = """import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = torch.nn.LSTM(3, 4)

    def forward(self, x):
        return self.rnn(x)[0]
"""
TINY_INPUT = "x:float32[time=5,batch=2,3]"


def tiny(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A user's file holding a tiny LSTM module (for --module), and that module."""
    f = tmp_path / "tiny.py"
    f.write_text(TINY)
    namespace: dict = {}
    exec(TINY, namespace)
    return f, namespace["Tiny"]()


def export_tiny(model: torch.nn.Module, dest: Path, **kwargs) -> Path:
    return export.export_module(model, (torch.randn(5, 2, 3),), dest, ["x"], {"x": {0: "time", 1: "batch"}},
                                **kwargs)


def error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def no_work(monkeypatch) -> None:
    """Tracing a module or training a registered model fails the test: the check must come first."""
    def traced(*args, **kwargs):
        raise AssertionError("tracing started before the destination was checked")

    def trained(retrain):
        raise AssertionError("training started before the destination was checked")
    monkeypatch.setattr(api, "infer", traced)
    monkeypatch.setitem(REGISTRY, NAME, dataclasses.replace(REGISTRY[NAME], train=trained))


@pytest.mark.parametrize("how", ["export_module", "zoo export", "cli NAME", "cli --module"])
def test_an_unwritable_out_fails_in_one_line_before_any_work(tmp_path, monkeypatch, capsys, how):
    """Works as root too: the probe's OS call is refused the way a read-only folder refuses it."""
    out = tmp_path / "ro"
    out.mkdir()
    real_mkdtemp = tempfile.mkdtemp

    def refused(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(out):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)
        return real_mkdtemp(*args, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    no_work(monkeypatch)
    module_file, model = tiny(tmp_path)
    if how in ("export_module", "zoo export"):
        with pytest.raises(export.ExportError) as e:
            if how == "export_module":
                export_tiny(model, out / "m")
            else:
                build.export(REGISTRY[NAME], out)
        assert str(e.value) == f"{out / ('m' if how == 'export_module' else NAME)}: cannot write there " \
                               f"(Permission denied)"
    else:
        argv, where = ([NAME], out) if how == "cli NAME" else (
            ["--module", f"{module_file}:Tiny", "--input", TINY_INPUT], out / "m")
        assert main([*argv, "--out", str(where)]) == 1
        assert error_line(capsys.readouterr().err) == f"error: --out {where}: cannot write there (Permission denied)"
    assert list(out.iterdir()) == []


def test_a_read_only_out_folder_fails_in_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into folders whatever their permissions")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    _, model = tiny(tmp_path)
    try:
        with pytest.raises(export.ExportError, match=r"ro/new/m: cannot write there \(Permission denied\)$"):
            export_tiny(model, out / "new" / "m")
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize("how", ["cli NAME", "cli --module"])
def test_out_below_a_regular_file_fails_in_one_line_before_any_work(tmp_path, how):
    """``--out FILE/sub``, as users run it (the old code trained, then died in mkdir with a traceback)."""
    (tmp_path / "file").write_text("x")
    module_file, _ = tiny(tmp_path)
    out = tmp_path / "file" / "sub"
    argv = [NAME] if how == "cli NAME" else ["--module", f"{module_file}:Tiny", "--input", TINY_INPUT]
    proc = run_cli("export", *argv, "--out", str(out), timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert error_line(proc.stderr) == f"error: --out {out}: cannot write there (Not a directory)"
    assert "train, export" not in proc.stderr and "TorchScript" not in proc.stderr, proc.stderr


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def full_disk(monkeypatch, where: str) -> None:
    """The disk fills while the artifact is written: at model.pt (the first file), at model.onnx, at manifest.json (after
    model.onnx, half written), or the file system turns read-only at the final rename."""
    if where == "model.pt":
        def to_torchscript(model, args, path, *traceable):
            raise enospc(path)
        monkeypatch.setattr(api, "to_torchscript", to_torchscript)
    elif where == "model.onnx":  # inside the ONNX exporters' attempts, which record their own failures
        def to_onnx(module, args, path, *rest):
            Path(path).write_bytes(b"\x08")
            raise enospc(path)
        monkeypatch.setattr(api, "to_onnx", to_onnx)
    elif where == "manifest.json":
        def write_manifest(folder, manifest):
            (Path(folder) / MANIFEST).write_text('{"name": ')
            raise enospc(Path(folder) / MANIFEST)
        monkeypatch.setattr(api, "write_manifest", write_manifest)
    else:
        real_rename = Path.rename

        def rename(self, target):
            if self.name.endswith(".partial"):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return real_rename(self, target)
        monkeypatch.setattr(Path, "rename", rename)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["model.pt", "model.onnx", "manifest.json", "publish"])
def test_a_full_disk_while_writing_is_one_line_and_keeps_the_previous_artifact(tmp_path, monkeypatch, where):
    out = tmp_path / "out"
    shutil.copytree(ARTIFACTS / NAME, out / "m")
    previous = (out / "m" / MANIFEST).read_bytes()
    _, model = tiny(tmp_path)
    full_disk(monkeypatch, where)
    with pytest.raises(export.ExportError) as e:
        export_tiny(model, out / "m", force=True)
    reason = "Read-only file system" if where == "publish" else "No space left on device"
    assert str(e.value) == f"{out / 'm'}: not written: {reason} (the previous artifact is intact)"
    monkeypatch.undo()
    assert assert_good(out / "m", previous) == "previous" and leftovers(out) == []


@pytest.mark.parametrize("how", ["cli NAME", "cli --module"])
def test_cli_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys, how):
    out = tmp_path / "out"
    dest = out / NAME if how == "cli NAME" else out
    shutil.copytree(ARTIFACTS / NAME, dest)
    previous = (dest / MANIFEST).read_bytes()
    module_file, _ = tiny(tmp_path)
    full_disk(monkeypatch, "model.pt")
    argv = [NAME] if how == "cli NAME" else ["--module", f"{module_file}:Tiny", "--input", TINY_INPUT]
    assert main([*argv, "--out", str(out), "--force"]) == 1
    assert error_line(capsys.readouterr().err) == (f"error: {dest}: not written: No space left on device "
                                                   f"(the previous artifact is intact)")
    assert assert_good(dest, previous) == "previous" and leftovers(dest.parent) == []


# ---- two exports of one NAME publishing at the same time -----------------------------------------------------

@pytest.mark.slow
def test_an_export_racing_another_at_publish_wins_and_leaves_one_complete_artifact(tmp_path, monkeypatch):
    """B renames its complete artifact into DEST between A's two renames (A's second then met "Directory not
    empty"): A moves B's aside too and publishes; DEST is A's artifact, complete, and nothing else is left."""
    out = tmp_path / "out"
    dest = out / "m"
    shutil.copytree(ARTIFACTS / NAME, dest)  # the previous artifact
    theirs = tmp_path / "b"
    shutil.copytree(ARTIFACTS / NAME, theirs)
    real_rename = Path.rename

    def b_publishes_in_between(self, target):
        result = real_rename(self, target)
        if self == dest and theirs.exists():  # A just moved DEST aside
            real_rename(theirs, dest)
        return result
    monkeypatch.setattr(Path, "rename", b_publishes_in_between)
    _, model = tiny(tmp_path)
    export_tiny(model, dest, force=True)
    monkeypatch.undo()
    assert not theirs.exists()
    m = runtime.load(dest)  # every file's SHA-256 checked against the manifest
    assert (m.manifest.name, m.manifest.kind) == ("m", "module") and leftovers(out) == []


@pytest.mark.slow
def test_without_force_an_artifact_another_export_wrote_meanwhile_is_kept(tmp_path, monkeypatch):
    out = tmp_path / "out"
    dest = out / "m"
    real_publish = api.publish

    def another_export_first(new, dest, **kwargs):
        shutil.copytree(ARTIFACTS / NAME, dest)
        return real_publish(new, dest, **kwargs)
    monkeypatch.setattr(api, "publish", another_export_first)
    _, model = tiny(tmp_path)
    with pytest.raises(export.ExportError) as e:
        export_tiny(model, dest)
    assert str(e.value) == f"{dest}: not written: another export wrote it meanwhile; pass force=True (--force) " \
                           f"to replace it"
    assert runtime.load(dest).manifest.name == NAME and leftovers(out) == []


def publish_in_a_loop(src: Path, dest: Path, go, rounds: int) -> None:
    go.wait()
    for i in range(rounds):
        new = dest.parent / f".{dest.name}.{os.getpid()}.{i}.partial"
        shutil.copytree(src, new)
        write.publish(new, dest)


def test_two_processes_publishing_one_name_in_a_loop_end_with_one_complete_artifact(tmp_path):
    """Real concurrency: two processes publish NAME 300 times each, at the same time. Every publish succeeds
    (the old publish died with "Directory not empty" within a few dozen rounds) and one complete artifact is
    left, nothing else."""
    out = tmp_path / "out"
    shutil.copytree(ARTIFACTS / NAME, out / NAME)
    previous = (out / NAME / MANIFEST).read_bytes()
    fork = multiprocessing.get_context("fork")  # torch is imported already: no second import of it
    go = fork.Event()
    procs = [fork.Process(target=publish_in_a_loop, args=(ARTIFACTS / NAME, out / NAME, go, 300)) for _ in range(2)]
    for proc in procs:
        proc.start()
    go.set()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0, "a publish failed (its traceback is above)"
    assert assert_good(out / NAME, previous) == "previous" and leftovers(out) == []
