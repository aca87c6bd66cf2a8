from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"


def run_cli(*args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m ...`` the way a user does, from the project root."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, input=input, capture_output=True, text=True,
                          timeout=timeout)


def loaded(name: str):
    """A module-scoped fixture: artifact ``name`` loaded through the runtime, as a user loads it."""
    import runtime

    @pytest.fixture(scope="module")
    def fixture():
        return runtime.load(ARTIFACTS / name)
    return fixture


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return ARTIFACTS


def copy_artifact(tmp_path: Path, name: str, dest: str | None = None) -> Path:
    """A copy of committed artifact ``name`` under tmp_path, to damage or edit."""
    folder = tmp_path / (dest or name)
    shutil.copytree(ARTIFACTS / name, folder)
    return folder


def edit_manifest(folder: Path, change) -> None:
    """Apply ``change`` to the folder's parsed manifest.json and write it back."""
    from runtime.artifact import MANIFEST

    m = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    change(m)
    (folder / MANIFEST).write_text(json.dumps(m), encoding="utf-8")


def rehash(folder: Path, file_name: str = "model.onnx") -> None:
    """Record the file's current SHA-256, as someone who rewrote the whole artifact would."""
    from runtime.artifact import sha256_bytes

    edit_manifest(folder, lambda m: m["files"].__setitem__(file_name, sha256_bytes((folder / file_name).read_bytes())))


def pytest_collection_modifyitems(session, config, items):
    """Files with the most slow tests first, each file's tests in their own order: `make test` hands whole files
    to its worker processes in this order (pytest-xdist --dist loadfile), so the longest ones start first
    instead of finishing last on one worker while the other waits."""
    slow: dict[str, int] = {}
    for item in items:
        slow[item.fspath.strpath] = slow.get(item.fspath.strpath, 0) + (item.get_closest_marker("slow") is not None)
    order = {path: k for k, path in enumerate(sorted(slow, key=lambda p: -slow[p]))}
    items.sort(key=lambda item: order[item.fspath.strpath])
