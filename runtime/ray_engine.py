"""Tag many files on a Ray cluster: ``python -m runtime tag ARTIFACT INPUT... --out DIR --engine ray``.

The files of ``files.plan`` go through one Ray Data pipeline, local (started here, stopped after) or an existing
cluster (``address``):

    files -> read (Ray tasks: ``corpus.chunks``, one row per chunk) -> tag (actor pool: one ``tag_batch`` per chunk)
          -> driver (reassembles each file's chunks, ``files.write_atomic`` when its last one arrives)

A row is one chunk of one file, cut by ``corpus.chunks`` exactly as the single-process command cuts it, and an
actor tags it with one ``tag_batch`` call and renders it with ``Block.render``: the bytes written are the
single-process command's whatever actor tags which chunk (int8's dynamic quantization scales depend on the batch,
so the same batches matter). A file that cannot be read or parsed gives one failure row naming it and the line;
its other chunks are dropped and the other files finish. Ray restarts an actor whose process dies and retries its
batches (``max_restarts``, ``max_task_retries``), so a killed worker changes nothing in the output. The driver
holds only the rendered chunks of files not yet complete.

``TagBatch`` is the same tagger as a callable class for users' own Ray Data programs::

    ds.map_batches(TagBatch, fn_constructor_kwargs={"artifact": "artifacts/pos-ewt"},
                   compute=ray.data.ActorPoolStrategy(size=2), batch_size=256)

Ray is imported here only, and only when this engine is asked for: ``runtime`` itself needs numpy + onnxruntime.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import corpus, files, load
from .artifact import (MANIFEST, MAX_MANIFEST_BYTES, VARIANTS, ArtifactError, Manifest, _read_file, open_folder,
                       read_artifact, read_manifest, read_onnx)
from .tagger import Tagger

INSTALL_HINT = "pip install '.[ray]' in the seqedge clone (the ray extra: ray[data]>=2.60)"
TOKENS, TAGS = "tokens", "tags"  # TagBatch's default input and output columns
# One read task per file, at most this many at once per worker: parsing is ~100x cheaper than tagging.
READERS_PER_WORKER = 1
# Rows are chunks of 256 sentences (~30-200 KB): small blocks so that a file's chunks spread over the actors.
BLOCK_BYTES = 1 << 20


class RayEngineError(OSError):
    """Ray could not be started or reached, or its pipeline failed (not one file's problem): one line."""


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _terminate(signum, frame):
    raise KeyboardInterrupt


def import_ray():
    """The ``ray`` module with Ray Data, or an ImportError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError(f"the ray engine needs Ray Data ({e.name or 'ray'} is not installed): "
                          f"{INSTALL_HINT}") from None
    return ray


def artifact_files(path: str | Path, variant: str = "fp32") -> dict[str, bytes]:
    """The files ``load(path, variant=variant)`` reads (manifest.json and the variant's model file), as bytes to
    ship to machines that do not share the folder; the model's SHA-256 is checked here and again where loaded."""
    return _read_shipped(path, variant)[1]


def _read_shipped(path: str | Path, variant: str) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and ``artifact_files``, from one read of the folder: ``run_ray`` checks the artifact it ships
    from these rather than reading the model twice. Checked as ``read_artifact`` checks, with its messages, so a bad
    artifact is the same error whether shipped or not."""
    folder = Path(path)
    with open_folder(folder) as dir_fd:
        manifest = read_manifest(folder, dir_fd)
        if VARIANTS[variant] not in manifest.files:
            read_artifact(folder, variant)  # raises its message (before any model is read): one wording, in artifact
        raw = _read_file(folder, MANIFEST, MAX_MANIFEST_BYTES, dir_fd)
        data, _ = read_onnx(folder, manifest, VARIANTS[variant], dir_fd)
    return manifest, {MANIFEST: raw, VARIANTS[variant]: data}


def load_tagger(artifact: Any, variant: str = "fp32") -> Tagger:
    """A Tagger with one intra-op thread from a folder path, from ``artifact_files``' dict, or from a Ray
    ObjectRef to that dict (written to a private temporary folder, loaded, SHA-256 checked, removed)."""
    if type(artifact).__name__ == "ObjectRef":
        artifact = import_ray().get(artifact)
    if isinstance(artifact, dict):
        folder = tempfile.mkdtemp(prefix="seqedge-artifact-")
        try:
            for name, data in artifact.items():
                if name not in (MANIFEST, *VARIANTS.values()):
                    raise ArtifactError(f"shipped artifact: unexpected file {name!r}")
                Path(folder, name).write_bytes(data)
            tagger = load(folder, variant=variant)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        tagger = load(artifact, variant=variant)
    if not isinstance(tagger, Tagger):
        raise ArtifactError(f"{artifact if isinstance(artifact, (str, Path)) else 'shipped artifact'}: is a "
                            f"{tagger.manifest.kind!r} artifact; tagging needs a tagger artifact")
    return tagger


class TagBatch:
    """Ray Data callable class: adds a column of tags to a batch holding a column of token lists.

    Constructor: ``artifact`` (a tagger folder visible to every worker, or ``artifact_files(path)``, or a
    ``ray.put`` of it), ``variant`` ("fp32" or "int8"), ``column`` (the token lists, default "tokens"),
    ``output`` (the tags column, default "tags"). Each actor loads the artifact once (one intra-op thread);
    each call is one ``Tagger.tag_batch`` over the batch's sentences. Batches as dicts of numpy arrays (Ray Data's
    default) or pandas DataFrames; the batch comes back with the tags column added, one list of tags per row.
    """

    def __init__(self, artifact: Any, variant: str = "fp32", column: str = TOKENS, output: str = TAGS):
        self.tagger = load_tagger(artifact, variant)
        self.column, self.output = column, output

    def __call__(self, batch):
        sentences = [[str(w) for w in s] for s in batch[self.column]]
        tags = np.empty(len(sentences), dtype=object)  # (B,) of lists, not a 2-D array: lengths differ
        tags[:] = self.tagger.tag_batch(sentences)
        batch[self.output] = tags if isinstance(batch, dict) else list(tags)
        return batch


# ---- the engine ------------------------------------------------------------------------------------------------
# Read rows: file (index in the plan), chunk (index in the file), last (the file's last chunk), source (its path),
# blocks (JSON: the list of the chunk's ``corpus.Block.to_row``), error (a failure line, "" when none).
# Tagged rows: file, chunk, last, text (the rendered chunk), sentences, tokens, error.

def _read(row: dict, fmt: str):
    """flat_map: one file into its chunk rows, or a failure row where it cannot be read or parsed."""
    index, source = int(row["file"]), str(row["source"])
    base = {"file": index, "source": source, "blocks": "", "error": ""}
    k, held = 0, None
    try:
        with corpus.open_input(source) as stream:
            for chunk in corpus.chunks(stream, fmt, source):
                if held is not None:
                    yield {**base, "chunk": k - 1, "last": False, "blocks": held}
                held = json.dumps([b.to_row() for b in chunk], ensure_ascii=False)
                k += 1
    except (ValueError, OSError) as e:
        yield {**base, "chunk": -1, "last": True, "error": files.failure(files.Job(source, Path()), e)}
        return
    yield {**base, "chunk": max(k - 1, 0), "last": True, "blocks": held or "[]"}  # an empty file: one empty chunk


class _ChunkTagger:
    """The engine's actor: each row's chunk tagged with one ``tag_batch`` and rendered as the file command does."""

    def __init__(self, artifact: Any, variant: str, fmt: str):
        self.tagger, self.fmt = load_tagger(artifact, variant), fmt

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["file"])
        text, sentences, tokens, error = [""] * n, [0] * n, [0] * n, list(batch["error"])
        for i in range(n):
            if error[i]:
                continue
            chunk = [corpus.Block.from_row(row) for row in json.loads(batch["blocks"][i])]
            try:
                text[i] = corpus.tag_chunk(self.tagger, chunk, self.fmt)
            except ValueError as e:  # e.g. a sentence longer than max_words_per_run: that file fails
                error[i] = files.failure(files.Job(str(batch["source"][i]), Path()), e)
                continue
            sentences[i], tokens[i] = corpus.counts(chunk)
        return {"file": batch["file"], "chunk": batch["chunk"], "last": batch["last"],
                "text": np.array(text, dtype=object), "sentences": np.array(sentences, np.int64),
                "tokens": np.array(tokens, np.int64), "error": np.array(error, dtype=object)}


class _Assembly:
    """The driver's side: each file's rendered chunks until all have come, then its output written."""

    def __init__(self, jobs: list[files.Job], todo: list[int], summary: files.Summary):
        self.jobs, self.todo, self.summary = jobs, todo, summary
        self.parts: dict[int, dict[int, str]] = {}
        self.count: dict[int, int] = {}  # chunks in the file, known once its last one has come
        self.stats: dict[int, list[int]] = {}
        self.done: set[int] = set()  # written or failed
        self.failures: dict[int, str] = {}

    def add(self, row: dict) -> None:
        f = int(row["file"])
        if f in self.done:
            return  # a failed file's other chunks
        job = self.jobs[f]
        if row["error"]:
            self.done.add(f)
            self.parts.pop(f, None)
            self.failures[f] = str(row["error"])
            print(f"error: {row['error']}", file=sys.stderr, flush=True)
            return
        self.parts.setdefault(f, {})[int(row["chunk"])] = str(row["text"])
        stats = self.stats.setdefault(f, [0, 0])
        stats[0] += int(row["sentences"])
        stats[1] += int(row["tokens"])
        if row["last"]:
            self.count[f] = int(row["chunk"]) + 1
        if len(self.parts[f]) == self.count.get(f):
            parts = self.parts.pop(f)
            self.done.add(f)
            try:
                files.write_atomic(job.output, lambda out: out.write("".join(parts[k] for k in range(len(parts)))
                                                                   .encode("utf-8")))
            except OSError as e:  # the output cannot be written (permission, disk full): that file fails
                self.failures[f] = files.failure(job, e)
                print(f"error: {self.failures[f]}", file=sys.stderr, flush=True)
                return
            self.summary.add({"sentences": stats[0], "tokens": stats[1]})

    def check(self) -> None:
        """Every file written or failed (anything else is a bug in the pipeline, never silently passed)."""
        missing = [str(self.jobs[f].source) for f in self.todo if f not in self.done]
        if missing:
            raise RuntimeError(f"ray engine: no complete output for {len(missing)} file(s): {missing[:5]}")
        self.summary.failures.extend(self.failures[f] for f in sorted(self.failures))  # in input order


def run_ray(artifact: str | Path, jobs: list[files.Job], fmt: str, variant: str = "fp32", resume: bool = False,
            address: str | None = None, workers: int | None = None) -> files.Summary:
    """Tag ``jobs`` on Ray: a local Ray started here (``workers`` CPUs, default all; stopped on every path) or the
    cluster at ``address`` (the artifact shipped through the object store, inputs and outputs on a shared file
    system). Returns the Summary (wall time from before Ray starts)."""
    corpus.check_format(fmt)  # here, not in the read tasks only: one error before Ray starts, not one per file
    if workers is not None and workers < 1:
        raise ValueError(f"--workers: expected at least 1, got {workers}")
    ray = import_ray()
    started = time.perf_counter()
    todo, skipped = files.pending(jobs, resume)
    summary = files.Summary(skipped=skipped)
    if not todo:
        summary.seconds = time.perf_counter() - started
        return summary
    # A bad artifact fails here, in one line, before Ray starts. A shared folder is checked, not loaded (the actors
    # load it); one shipped to a cluster is read once, for the check and for the object store.
    payload = None
    if address is None:
        manifest, _, _ = read_artifact(Path(artifact), variant)
    else:
        manifest, payload = _read_shipped(artifact, variant)
    if manifest.kind != "tagger":
        raise ArtifactError(f"{artifact}: is a {manifest.kind!r} artifact; 'tag' needs a Tagger artifact")
    quiet = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False,
             "configure_logging": True}
    # Not the user's business: the notice that token authentication is on by default for a new local cluster (it
    # stays on). Ray's core worker still logs one line per actor pool that the actors' constructor arguments live in
    # the object store (Ray Data puts them there; they stay referenced until the pipeline ends).
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # SIGTERM (kill, timeout) as Ctrl-C: the local Ray is stopped on the way out rather than left to linger.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        if address is None:
            workers = workers or os.cpu_count() or 1
            ray.init(address="local", num_cpus=workers, **quiet)  # "local": never join a cluster found here
        else:
            ray.init(address=address, **quiet)
    except (RuntimeError, ConnectionError, ValueError) as e:
        ray.shutdown()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        raise RayEngineError(f"ray engine: cannot {'start a local Ray' if address is None else 'connect to ' + address}"
                             f": {_first_line(e)}") from None
    if main_thread:  # again: ray.init installs its core's own SIGTERM handler (a C++ stack dump, exit 15)
        signal.signal(signal.SIGTERM, _terminate)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if payload is None:
            shipped = str(Path(artifact).resolve())
        else:
            shipped, payload = ray.put(payload), None  # the object store holds the bytes now, not the driver
        ctx = ray.data.DataContext.get_current()
        ctx.target_max_block_size = BLOCK_BYTES
        ctx.enable_progress_bars = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        index = {job: i for i, job in enumerate(jobs)}
        items = [{"file": index[job], "source": str(job.source)} for job in todo]
        ds = (ray.data.from_items(items, override_num_blocks=len(items))
              .flat_map(_read, fn_kwargs={"fmt": fmt}, num_cpus=0,
                        compute=ray.data.TaskPoolStrategy(size=READERS_PER_WORKER * workers))
              .map_batches(_ChunkTagger, fn_constructor_kwargs={"artifact": shipped, "variant": variant, "fmt": fmt},
                           batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1))
        assembly = _Assembly(jobs, [item["file"] for item in items], summary)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for i in range(len(batch["file"])):
                    assembly.add({k: v[i] for k, v in batch.items()})
        except ray.exceptions.RayError as e:  # e.g. an actor that cannot load the artifact on a remote machine
            raise RayEngineError(f"ray engine: {_first_line(e)}") from None
        assembly.check()
    finally:
        ray.shutdown()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    summary.seconds = time.perf_counter() - started
    return summary
