"""Tag many files into a folder: ``python -m runtime tag ARTIFACT INPUT... --out DIR``.

Inputs are files, folders (every file below them) and glob patterns; each gives one output file under DIR:

- a folder ``F``: ``F/a/b.txt`` -> ``DIR/a/b.txt`` (the path below the folder);
- a glob ``corpus/*/x*.txt``: each match's path below the pattern's fixed part (``corpus``);
- a file: ``DIR/<its name>``.

A trailing ``.xz`` is dropped from the output name (outputs are plain UTF-8). Two inputs mapping to one output
are refused before any work. Each output is written to a temporary file beside it and renamed into place when its
last sentence is tagged, so an output that exists is complete; ``resume`` skips those. A file that cannot be read
or parsed fails alone, with one line naming it and the line; the others are still tagged.

The engine here tags the files one after the other in this process; ``ray_engine`` spreads them over a Ray
cluster. Both tag each file in the chunks ``corpus.chunks`` cuts, so they write the same bytes.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import corpus


@dataclass(frozen=True)
class Job:
    source: str  # the input file, as the user named it (or as a folder/glob expanded it)
    output: Path  # its output file, under the output folder


@dataclass
class Summary:
    files: int = 0  # tagged in this run
    skipped: int = 0  # complete already (resume)
    sentences: int = 0
    tokens: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # one line each: "FILE: line N: what"

    def add(self, stats: dict) -> None:
        self.files += 1
        self.sentences += stats["sentences"]
        self.tokens += stats["tokens"]

    def line(self) -> str:
        rate = self.tokens / self.seconds if self.seconds > 0 else 0.0
        return (f"tagged {self.files} files ({self.skipped} complete already, {len(self.failures)} failed): "
                f"{self.sentences:,} sentences, {self.tokens:,} tokens, {rate:,.0f} tokens/s, {self.seconds:.1f} s")


def plan(inputs: list[str], out_dir: Path, note: Callable[[str], None] | None = None) -> list[Job]:
    """Every input file and its output path, in input order (a folder's and a glob's files sorted by path).

    Refused before any work (ValueError): an input that matches nothing; two inputs writing one output; an output
    that would land outside ``out_dir`` (a ``..`` after a glob's wildcard) or on an input; ``out_dir`` that is an
    input folder; an input named explicitly that is not a regular file (a FIFO would block forever). Folder and
    glob scans follow no symbolic links (a link to ``.`` would make them endless, a link out of the folder would
    tag what is not in it) and leave out ``out_dir`` (earlier outputs are not inputs): each link skipped is said
    in one ``note`` line."""
    out_real = Path(os.path.realpath(out_dir))
    jobs, seen, links = [], {}, []
    for arg in inputs:
        if glob.has_magic(arg):
            base = _fixed_prefix(arg)
            if ".." in Path(arg).parts[len(Path(base).parts) if base != "." else 0:]:
                raise ValueError(f"{arg}: a '..' after a wildcard would put outputs outside --out {out_dir} "
                                 f"(they are the paths below the pattern's fixed part); write the pattern without it")
            found = _scan(base, out_real, links, pattern=Path(arg).parts[len(Path(base).parts) if base != "." else 0:])
            pairs = [(p, os.path.relpath(p, base)) for p in found]
        elif os.path.isdir(arg):
            if Path(os.path.realpath(arg)) == out_real:
                raise ValueError(f"--out {out_dir} is the input folder {arg}: its outputs would replace the inputs; "
                                 f"write them elsewhere")
            pairs = [(p, os.path.relpath(p, arg)) for p in _scan(arg, out_real, links)]
        else:
            if os.path.exists(arg) and not os.path.isfile(arg):
                raise ValueError(f"{arg}: not a regular file (a FIFO, a device or a socket): give files or folders")
            pairs = [(arg, os.path.basename(arg))]  # missing or unreadable: that file fails when it is read
        if not pairs:
            raise ValueError(f"{arg}: no files match")
        for source, rel in pairs:
            output = out_dir / (rel[:-3] if rel.endswith(".xz") else rel)
            real = Path(os.path.realpath(output))
            if not real.is_relative_to(out_real):
                raise ValueError(f"{source}: its output {output} would be written outside --out {out_dir} (the "
                                 f"path below the pattern's fixed part leaves it); nothing was written")
            if os.path.exists(source) and os.path.exists(real) and os.path.samefile(source, real):
                raise ValueError(f"{source}: its output {output} is the input itself; write outputs elsewhere")
            if output in seen:
                raise ValueError(f"{source} and {seen[output]} would both be written to {output}")
            seen[output] = source
            jobs.append(Job(source, output))
    if links and note is not None:
        shown = ", ".join(links[:5]) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
        note(f"skipped {len(links)} symbolic link(s), which folder and glob scans do not follow: {shown}")
    return jobs


def _scan(root: str, out_real: Path, links: list[str], pattern: tuple[str, ...] | None = None) -> list[str]:
    """Regular files below ``root`` (matching ``pattern``'s parts below it, ``**`` any number of folders), sorted;
    symbolic links are not followed but recorded in ``links``; ``out_real`` (the output folder) is left out."""
    found = []
    deep = pattern is None or "**" in pattern
    for folder, dirs, names in os.walk(root, followlinks=False):
        if Path(os.path.realpath(folder)).is_relative_to(out_real):
            dirs[:] = []
            continue
        depth = len(Path(os.path.relpath(folder, root)).parts) if folder != root else 0
        if not deep and depth >= len(pattern) - 1:
            dirs[:] = []  # a pattern without ** matches nothing deeper
            if depth > len(pattern) - 1:
                continue
        for d in list(dirs):
            if os.path.islink(os.path.join(folder, d)):
                links.append(os.path.join(folder, d))
                dirs.remove(d)
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                links.append(path)
            elif name.startswith(".") and name.endswith(".partial"):
                continue  # a killed run's temporary output (write_atomic), never an input
            elif os.path.isfile(path) and (pattern is None or
                                           _matches(Path(os.path.relpath(path, root)).parts, pattern)):
                found.append(path)
    return sorted(found)


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether a relative path's ``parts`` match a glob's: fnmatch per part, ``**`` any number of parts."""
    if not pattern:
        return not parts
    if pattern[0] == "**":  # like glob: not into hidden folders
        return any(_matches(parts[i:], pattern[1:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    hidden = bool(parts) and parts[0].startswith(".") and not pattern[0].startswith(".")  # glob's rule for '*'
    return (bool(parts) and not hidden and fnmatch.fnmatchcase(parts[0], pattern[0])
            and _matches(parts[1:], pattern[1:]))


def _fixed_prefix(pattern: str) -> str:
    """The folders of a glob pattern before its first wildcard: ``corpus/*/x*.txt`` -> ``corpus``."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
    return str(Path(*fixed)) if fixed else "."


class OutputError(OSError):
    """Writing an output failed (a full disk, a read-only place, a folder where the file goes): the message names
    the output, not the input being read."""


class _Output:
    """The temporary output file, turning a failed write into an OutputError naming ``output``."""

    def __init__(self, f, output: Path):
        self._f, self._output = f, output

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            raise _output_error(self._output, e) from None

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            raise _output_error(self._output, e) from None

    def __getattr__(self, name):
        return getattr(self._f, name)


def _output_error(output: Path, e: OSError) -> OutputError:
    return OutputError(e.errno, f"{output}: cannot write the output: {e.strerror or e}")


def check_out(out_dir: Path) -> None:
    """Before any work: ``out_dir`` is (or can be made) a folder this process can write into; OutputError else.
    Nothing is created."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(20, f"--out {out_dir}: expected a folder, got a file")
    existing = out_dir.absolute()
    while not existing.exists():  # the folder is made only once there is work: probe where it would be made
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(20, f"--out {out_dir}: cannot be made: {existing} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".seqedge-write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(e.errno, f"--out {out_dir}: cannot write there: {e.strerror or e}") from None


def write_atomic(output: Path, write: Callable) -> dict:
    """``write(binary_file)`` into a temporary file beside ``output``, renamed to ``output`` once it returns;
    removed if it raises. Returns what ``write`` returns. Failures to write (the folder, the temporary file, the
    rename) are OutputErrors naming ``output``; what ``write`` raises while reading its input passes unchanged."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.{os.getpid()}.", suffix=".partial", dir=output.parent)
    except OSError as e:
        raise _output_error(output, e) from None
    f = os.fdopen(fd, "wb")
    try:
        out = _Output(f, output)
        result = write(out)
        out.flush()  # where a full disk shows, more often than in write()
        try:
            f.close()
            os.chmod(tmp, 0o644)
            os.replace(tmp, output)
        except OSError as e:
            raise _output_error(output, e) from None
    except BaseException:
        try:
            f.close()  # after a failed flush, closing fails again on the same bytes: the first error stands
        except OSError:
            pass
        os.unlink(tmp)
        raise
    return result


_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.partial$")


def clean_partials(out_dir: Path) -> list[Path]:
    """Remove the temporary outputs (``.NAME.PID.XXXX.partial``) that processes no longer running left under
    ``out_dir`` (a killed run's); a running process's are left alone. Returns what was removed."""
    removed = []
    if not out_dir.is_dir():
        return removed
    for folder, dirs, names in os.walk(out_dir, followlinks=False):
        for name in names:
            m = _PARTIAL.match(name)
            if m and not _running(int(m["pid"])):
                path = Path(folder) / name
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def pending(jobs: list[Job], resume: bool) -> tuple[list[Job], int]:
    """The jobs still to do and how many were skipped: with ``resume``, outputs that exist are complete."""
    todo = [j for j in jobs if not (resume and j.output.is_file())]
    return todo, len(jobs) - len(todo)


def tag_one(tagger, job: Job, fmt: str) -> dict:
    """Tag ``job.source`` into ``job.output`` atomically (the single-process command's per-file work)."""
    with corpus.open_input(job.source) as stream:
        return write_atomic(job.output, lambda out: corpus.tag_file(tagger, stream, out, fmt, job.source))


def run_local(tagger, jobs: list[Job], fmt: str, resume: bool) -> Summary:
    """Tag the files one by one in this process, a progress line per file on stderr."""
    started = time.perf_counter()
    todo, skipped = pending(jobs, resume)
    summary = Summary(skipped=skipped)
    for i, job in enumerate(todo, 1):
        try:
            stats = tag_one(tagger, job, fmt)
        except (ValueError, OSError) as e:
            summary.failures.append(failure(job, e))
            print(f"[{i}/{len(todo)}] error: {summary.failures[-1]}", file=sys.stderr, flush=True)
            continue
        summary.add(stats)
        print(f"[{i}/{len(todo)}] {job.output}: {stats['sentences']:,} sentences, {stats['tokens']:,} tokens",
              file=sys.stderr, flush=True)
    summary.seconds = time.perf_counter() - started
    return summary


def failure(job: Job, e: Exception) -> str:
    """The one line a file's failure is reported as (``Summary.failures``), by both engines: ValueErrors from
    ``corpus`` name the file and line already (others get the file put in front); OSErrors name the file."""
    if isinstance(e, OutputError):
        return e.strerror
    if isinstance(e, OSError):
        return f"{job.source}: {e.strerror or e}"
    text = str(e)
    return text if text.startswith(job.source) else f"{job.source}: {text}"
