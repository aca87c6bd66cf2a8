from __future__ import annotations

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
