"""Parity: an artifact's three backends (eager torch, TorchScript, ONNX Runtime through ``runtime``) must agree.

For every pair of backends, at time lengths 1, 2, the seed's example length, 3x it and 256, at batch 1 and 3,
with and without an initial state, every output is compared. Stepping one element at a time with the state
carried must equal the whole sequence, on each backend. Taggers' argmax tags must agree exactly.

Results are facts (``Diff`` records with max abs/rel differences), collected in full before anything fails.
The export CLI and the test suite run this same code.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import runtime
from runtime.artifact import BATCH, TIME, TORCHSCRIPT_FILE, IOSpec, read_manifest
from .convert import quiet_export_tools
from .inputs import Feed, make_feed
from .models import NetConfig, TaggerConfig, build_any, config_from_json

# fp32 tolerances: |a - b| <= ATOL * max(1, max|b|) + RTOL * |b|, element-wise, b the whole output tensor. The
# absolute part scales with the tensor's magnitude: rounding differences accumulated over hundreds of steps are
# relative to the largest values (logits of ~40 differ by ~4e-4 at T=384), and they land on the elements near zero
# too. Seed outputs are below 1 in magnitude, so for them this is plain 1e-5 + 1e-5 |b|. Measured differences
# are in the manifests' parity.max_abs_diff.
ATOL = 1e-5
RTOL = 1e-5
TOLERANCE = "|a - b| <= atol * max(1, max|b|) + rtol * |b|"
LONG = 256  # the long sequence every artifact must handle
BATCHES = (1, 3)

Backend = Callable[[Feed], Feed]


class ParityError(Exception):
    """Backends disagree beyond tolerance; the message lists every failing comparison."""


@dataclass(frozen=True)
class Case:
    length: int
    batch: int
    initial_state: bool

    def __str__(self) -> str:
        return f"T={self.length} B={self.batch} {'with' if self.initial_state else 'without'} initial state"


@dataclass(frozen=True)
class Diff:
    """One output compared between two results."""

    model: str
    check: str  # e.g. "eager vs onnxruntime" or "stepping vs whole on torchscript"
    case: Case
    output: str
    max_abs: float
    max_rel: float
    ok: bool

    def __str__(self) -> str:
        return (f"{self.model}: {self.check}, {self.case}, output {self.output!r}: max abs diff {self.max_abs:.3g}, "
                f"max rel diff {self.max_rel:.3g} ({'ok' if self.ok else 'FAIL'}; {TOLERANCE}, "
                f"atol {ATOL}, rtol {RTOL})")


def cases(example_length: int, stateful: bool = True) -> list[Case]:
    lengths = sorted({1, 2, example_length, 3 * example_length, LONG})
    states = (True, False) if stateful else (False,)
    return [Case(t, b, s) for t in lengths for b in BATCHES for s in states]


def case_feed(bk: "Backends", case: Case) -> Feed:
    """Inputs for a case, deterministic per case; without an initial state the runtime must fill zeros."""
    return make_feed(bk.io, bk.cfg, case.length, case.batch, initial_state=case.initial_state,
                     seed=zlib.crc32(str(case).encode()))


def torch_backend(module: torch.nn.Module, io: IOSpec) -> Backend:
    """Call an eager or TorchScript module with a feed; absent state inputs are zeros, as in the runtime."""
    def call(feed: Feed) -> Feed:
        batch = feed[io.data_inputs[0].name].shape[io.data_inputs[0].axis(BATCH)]
        args = []
        for spec in io.inputs:
            if spec.name in feed:
                args.append(torch.from_numpy(feed[spec.name]))
            else:
                args.append(torch.zeros([batch if d == BATCH else d for d in spec.shape]))
        with torch.no_grad():
            out = module(*args)
        if isinstance(out, torch.Tensor):  # a single output
            out = (out,)
        return {spec.name: t.numpy() for spec, t in zip(io.outputs, out)}
    return call


def runtime_backend(model: runtime.Model) -> Backend:
    return lambda feed: model.run(**feed)


@dataclass
class Backends:
    name: str
    kind: str
    io: IOSpec
    cfg: NetConfig | TaggerConfig
    example_length: int
    by_name: dict[str, Backend]
    modules: dict[str, torch.nn.Module]  # the eager and TorchScript modules behind the torch backends


def backends_for(folder: Path, net: torch.nn.Module | None = None, example_length: int | None = None) -> Backends:
    """The three backends of an artifact folder. Without ``net``, eager torch is rebuilt from the manifest's
    config with the weights of the TorchScript file."""
    manifest = read_manifest(folder)
    cfg = config_from_json(manifest.config)
    with quiet_export_tools():  # torch.jit.load's deprecation warning, as at export
        scripted = torch.jit.load(str(folder / TORCHSCRIPT_FILE))
    if net is None:
        net = build_any(cfg)
        net.load_state_dict(scripted.state_dict())
        net.eval()
    length = example_length or manifest.parity["example_length"]
    return Backends(manifest.name, manifest.kind, manifest.io, cfg, length, {
        "eager": torch_backend(net, manifest.io),
        "torchscript": torch_backend(scripted, manifest.io),
        "onnxruntime": runtime_backend(runtime.load(folder)),
    }, {"eager": net, "torchscript": scripted})


def compare(model: str, check: str, case: Case, a: Feed, b: Feed, kind: str) -> list[Diff]:
    diffs = []
    for name in b:
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        if x.shape != y.shape:
            diffs.append(Diff(model, check, case, f"{name} shape {x.shape} vs {y.shape}", np.inf, np.inf, False))
            continue
        err = np.abs(x - y)
        rel = err / np.maximum(np.abs(y), ATOL)  # relative to |y|, floored: near zero only abs diff means much
        scale = max(1.0, float(np.abs(y).max(initial=0.0)))
        ok = bool(np.all(err <= ATOL * scale + RTOL * np.abs(y)))
        diffs.append(Diff(model, check, case, name, float(err.max()), float(rel.max()), ok))
    if kind == "tagger":
        out = next(iter(b))  # scores: tags are its argmax and must agree exactly
        differ = int((a[out].argmax(-1) != b[out].argmax(-1)).sum())
        diffs.append(Diff(model, check, case, "tags (argmax)", float(differ), float(differ), differ == 0))
    return diffs


def check_backends(bk: Backends, case: Case) -> list[Diff]:
    """Every output of every pair of backends on the same inputs."""
    feed = case_feed(bk, case)
    results = {name: fn(feed) for name, fn in bk.by_name.items()}
    return [d for a, b in itertools.combinations(results, 2)
            for d in compare(bk.name, f"{a} vs {b}", case, results[a], results[b], bk.kind)]


def step(fn: Backend, io: IOSpec, feed: Feed) -> Feed:
    """Run one element at a time, carrying the state; concatenate sequence outputs along time."""
    seq = io.data_inputs[0]
    t_in = seq.axis(TIME)
    state = {k: v for k, v in feed.items() if k in dict(io.state)}
    pieces: dict[str, list[np.ndarray]] = {o.name: [] for o in io.data_outputs}
    out: Feed = {}
    for t in range(feed[seq.name].shape[t_in]):
        x = np.take(feed[seq.name], [t], axis=t_in)  # one step, time axis kept (size 1)
        out = fn({seq.name: np.ascontiguousarray(x), **state})
        state = {i: out[o] for i, o in io.state}
        for o in io.data_outputs:
            pieces[o.name].append(out[o.name])
    return {**{o.name: np.concatenate(pieces[o.name], axis=o.axis(TIME)) for o in io.data_outputs},
            **{o: out[o] for _, o in io.state}}


def check_stepping(bk: Backends, case: Case) -> list[Diff]:
    """On each backend, stepping equals the whole sequence (every output, final state included)."""
    feed = case_feed(bk, case)
    return [d for name, fn in bk.by_name.items()
            for d in compare(bk.name, f"stepping vs whole on {name}", case, step(fn, bk.io, feed), fn(feed), bk.kind)]


def stepping_cases(example_length: int, stateful: bool = True) -> list[Case]:
    """Models without recurrent state (bidirectional taggers) are never stepped: no cases."""
    lengths = sorted({1, 2, example_length, 3 * example_length}) if stateful else []
    return [Case(t, b, True) for t in lengths for b in BATCHES]


def verify(bk: Backends) -> list[Diff]:
    stateful = bool(bk.io.state)
    diffs = [d for c in cases(bk.example_length, stateful) for d in check_backends(bk, c)]
    diffs += [d for c in stepping_cases(bk.example_length, stateful) for d in check_stepping(bk, c)]
    return diffs


def summarize(diffs: list[Diff], example_length: int) -> dict:
    numeric = [d for d in diffs if not d.output.startswith("tags")]
    return {
        "ok": all(d.ok for d in diffs),
        "atol": ATOL,
        "rtol": RTOL,
        "tolerance": TOLERANCE,
        "example_length": example_length,
        "lengths": sorted({d.case.length for d in diffs}),
        "batches": list(BATCHES),
        "backends": ["eager", "torchscript", "onnxruntime"],
        "comparisons": len(diffs),
        "failures": [str(d) for d in diffs if not d.ok],
        "max_abs_diff": max(d.max_abs for d in numeric),
        "max_rel_diff": max(d.max_rel for d in numeric),
        "stepping_equals_whole": (all(d.ok for d in diffs if d.check.startswith("stepping"))
                                  if any(d.check.startswith("stepping") for d in diffs) else None),
    }


def raise_on_failure(diffs: list[Diff]) -> None:
    bad = [d for d in diffs if not d.ok]
    if bad:
        raise ParityError(f"{len(bad)} of {len(diffs)} comparisons failed:\n" + "\n".join(f"  {d}" for d in bad))
