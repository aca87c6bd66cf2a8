"""An artifact folder is complete or absent: an export killed at any moment leaves no half artifact and never
destroys the previous good one, and the next export cleans up after it."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import runtime
from export import write
from runtime.artifact import MANIFEST

from .conftest import ARTIFACTS, ROOT

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
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]
    return "previous" if (folder / MANIFEST).read_bytes() == previous_manifest else "new"


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
