"""Write an artifact folder atomically: complete or absent.

The artifact is built in a temporary folder beside its destination (``.NAME.PID.*.partial``) and moved into
place only after every check passed, so an interrupted or failing export never leaves a half artifact nor harms
the previous one. The previous artifact is moved aside (``.NAME.PID.*.old/NAME``) for the instant between the
two renames; an export killed there leaves ``NAME`` absent and the previous artifact intact beside it, and the
next export of NAME puts it back before starting. Leftovers of killed exports (their process is gone) are
removed by the next export of the same NAME into the same folder.

What the file system refuses is one line (``WriteError``, an ExportError): ``check_writable`` before any work,
and any OSError while the artifact is written (a full disk, a read-only file system) after it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from .errors import ExportError, WriteError

RETRIES = 10  # publish: rounds against other exports of the same NAME replacing it at the same time
_OCCUPIED = (errno.ENOTEMPTY, errno.EEXIST)  # rename(dir, non-empty dir), as Linux and other systems say it


def check_writable(folder: Path, label: str) -> None:
    """``folder`` (which receives the artifact) can be made and written into, checked before any work by making
    and removing a folder in it (or in its nearest existing parent); leaves nothing behind. Raises
    ``WriteError("LABEL: cannot write there (Permission denied)")`` with the OS's reason."""
    where = folder
    while not os.path.exists(where) and where != where.parent:
        where = where.parent  # a file on the way stays: making the probe in it fails with "Not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".seqedge-probe.", dir=where))
    except OSError as e:
        raise WriteError(f"{label}: cannot write there ({e.strerror or e})") from None


@contextmanager
def staging(dest: Path) -> Iterator[Path]:
    """A private temporary folder beside ``dest``; removed on the way out whatever happens (``publish`` it first
    to keep it). An OSError inside (a full disk, a read-only file system, a permission) comes out as
    ``WriteError("DEST: not written: No space left on device (the previous artifact is intact)")``."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(dest.parent, dest.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".partial", dir=dest.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be read by others
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        intact = " (the previous artifact is intact)" if os.path.isdir(dest) else ""
        raise WriteError(f"{dest}: not written: {e.strerror or e}{intact}") from None


def publish(new: Path, dest: Path, replace: bool = True) -> None:
    """Move the verified folder ``new`` to ``dest``; a previous artifact there is removed only once the new one
    is in place. ``dest`` is one complete artifact at every moment, or absent between the two renames (the
    previous one then held in ``.NAME.PID.*.old``).

    Exports of one NAME racing here: when another export renames its artifact into ``dest`` between this one's
    two renames (the rename of a folder onto a non-empty one fails: "Directory not empty"), this one moves that
    aside too and tries again: the last to publish wins, both succeed (exit status 0), ``dest`` is its complete
    artifact and nothing of the other remains. After ``RETRIES`` rounds lost it gives up with ``WriteError``
    ("DEST: not written: other exports of NAME kept replacing it ...; DEST is one of theirs, complete": exit
    status 1). With ``replace`` False an artifact that appeared at ``dest`` meanwhile is kept: ``WriteError``
    ("... another export wrote it meanwhile; pass force=True (--force) to replace it").
    """
    if not replace:
        try:
            new.rename(dest)
        except OSError as e:
            if e.errno in _OCCUPIED:
                raise WriteError(f"{dest}: not written: another export wrote it meanwhile; pass force=True "
                                 f"(--force) to replace it") from None
            raise
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".old", dir=dest.parent))
    held, done = aside / dest.name, False
    try:
        for _ in range(RETRIES):
            shutil.rmtree(held, ignore_errors=True)  # moved aside in a round lost: dest had a newer one since
            with suppress(FileNotFoundError):  # no artifact there (yet, or another export moved it aside)
                dest.rename(held)
            try:
                new.rename(dest)
                done = True
                return
            except OSError as e:
                if e.errno not in _OCCUPIED:
                    raise
        raise WriteError(f"{dest}: not written: other exports of {dest.name} kept replacing it at the same time "
                         f"({RETRIES} tries); {dest} is one of theirs, complete")
    finally:
        if not done and os.path.lexists(held):
            with suppress(OSError):  # put back what was moved aside, unless another artifact took its place
                held.rename(dest)
        if done or os.path.lexists(dest) or not os.path.lexists(held):  # else held is the only copy: clean_stale
            shutil.rmtree(aside, ignore_errors=True)                       # puts it back


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
