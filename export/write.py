"""Write an artifact folder atomically: complete or absent.

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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def staging(dest: Path) -> Iterator[Path]:
    """A private temporary folder beside ``dest``; removed on the way out whatever happens (``publish`` it first
    to keep it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(dest.parent, dest.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".partial", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be read by others
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(new: Path, dest: Path) -> None:
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
