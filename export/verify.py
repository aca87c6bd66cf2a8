"""Parity: an artifact's backends (eager torch, TorchScript, ONNX Runtime through ``runtime``) must agree.

For every pair of backends, at every combination of its symbols' sizes (time 1, 2, the example's T, 3T and 256;
batch 1 and 3; any other symbol at the sizes the model accepts), with and without an initial state, every output
is compared. Where the model has recurrent state, stepping one element at a time with the state carried must
equal the whole sequence, on each backend. Where it has a ``lengths`` input, outputs past a sequence's length
are padding and not compared, and each sequence run alone must equal its row of the padded batch. Taggers'
argmax tags must agree exactly.

Results are facts (``Diff`` records with max abs/rel differences), collected in full before anything fails; a
backend that raises is a failing fact naming the case. The export API, the CLI and the test suite run this code.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import runtime
from runtime.artifact import BATCH, TIME, IOSpec, TensorSpec
from . import runtimes
from .errors import ParityError
from .feeds import Custom, Feed, Plan, complete, make_feed

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
MAX_GRID = 48  # more combinations than this: symbols other than time and batch are varied one at a time

Backend = Callable[[Feed], Feed]


@dataclass(frozen=True)
class Case:
    sizes: tuple[tuple[str, int], ...]  # (symbol, size), in the plan's order
    initial_state: bool

    def size(self, symbol: str, default: int | None = None) -> int | None:
        return dict(self.sizes).get(symbol, default)

    def __str__(self) -> str:
        if not self.sizes:
            return "(no inputs: at load)"
        where = " ".join(f"{'T' if s == TIME else 'B' if s == BATCH else s}={n}" for s, n in self.sizes)
        return f"{where} {'with' if self.initial_state else 'without'} initial state"


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
    error: str = ""  # a backend raised instead of answering

    def __str__(self) -> str:
        if self.error:
            return f"{self.model}: {self.check}, {self.case}: FAIL: {self.error}"
        return (f"{self.model}: {self.check}, {self.case}, output {self.output!r}: max abs diff {self.max_abs:.3g}, "
                f"max rel diff {self.max_rel:.3g} ({'ok' if self.ok else 'FAIL'}; {TOLERANCE}, "
                f"atol {ATOL}, rtol {RTOL})")


@dataclass
class Subject:
    """What is verified: an artifact's IO, how to make its inputs, and its backends by name."""

    name: str
    kind: str
    io: IOSpec
    plan: Plan
    backends: dict[str, Backend]
    custom: Custom | None = None
    modules: dict = field(default_factory=dict)  # the torch modules behind the torch backends, for callers


def cases(plan: Plan, stateful: bool) -> list[Case]:
    symbols = list(plan.sizes)
    states = (True, False) if stateful else (False,)
    grid = list(itertools.product(*[plan.sizes[s] for s in symbols]))
    if len(grid) * len(states) > MAX_GRID:
        main = [s for s in symbols if s in (TIME, BATCH)]
        grid = [tuple(dict(zip(main, combo)).get(s, plan.example[s]) for s in symbols)
                for combo in itertools.product(*[plan.sizes[s] for s in main])]
        for s in symbols:
            if s not in main:
                grid += [tuple(n if t == s else plan.example[t] for t in symbols) for n in plan.sizes[s]]
        grid = list(dict.fromkeys(grid))
    return [Case(tuple(zip(symbols, combo)), st) for combo in grid for st in states]


def stepping_cases(plan: Plan, io: IOSpec) -> list[Case]:
    """Recurrent models step at time 1, 2, T and 3T and both batches; models without state are never stepped,
    nor are models with a ``lengths`` input (their sequences end at different steps)."""
    if not io.state or io.lengths or TIME not in plan.sizes:
        return []
    base = {s: plan.example[s] for s in plan.sizes}
    grid = []
    for t in sorted({1, 2, plan.example[TIME], 3 * plan.example[TIME]}):
        for b in BATCHES if BATCH in base else (None,):
            sizes = {**base, TIME: t, **({BATCH: b} if b else {})}
            grid.append(Case(tuple(sizes.items()), True))
    return grid


def probe_cases(plan: Plan, io: IOSpec) -> list[Case]:
    """The example's sizes, then each symbol at its smallest and largest verified size."""
    base = {s: plan.example[s] for s in plan.sizes}
    grid = [dict(base)]
    for s, sizes in plan.sizes.items():
        grid += [{**base, s: min(sizes)}, {**base, s: max(sizes)}]
    if TIME in base and BATCH in base:
        grid.append({**base, TIME: max(plan.sizes[TIME]), BATCH: max(plan.sizes[BATCH])})
    unique = list(dict.fromkeys(tuple(g.items()) for g in grid))
    return [Case(sizes, bool(io.state)) for sizes in unique]


def padding_cases(plan: Plan, io: IOSpec) -> list[Case]:
    """Models with a ``lengths`` input: each sequence alone equals its row of the padded batch."""
    if not io.lengths or not _splittable(io):
        return []
    base = {s: plan.example[s] for s in plan.sizes}
    return [Case(tuple({**base, TIME: t, BATCH: 3}.items()), True)
            for t in sorted({2, plan.example[TIME], 3 * plan.example[TIME]})]


def fixed_cases(plan: Plan, io: IOSpec, fixed: dict[str, int], stepping: bool = False) -> list[Case]:
    """The cases (``stepping``: the stepping cases) of a format that fixes some symbols (the .pte's batch): those at
    the fixed sizes, each other case moved to them, and time RUNTIME_LONG_T (300) where there is a time axis."""
    def at(case: Case) -> Case:
        return Case(tuple((s, fixed.get(s, n)) for s, n in case.sizes), case.initial_state)

    if stepping:
        return list(dict.fromkeys(at(c) for c in stepping_cases(plan, io)))
    found = [at(c) for c in cases(plan, bool(io.state))]
    if TIME in plan.sizes:
        long = {**{s: plan.example[s] for s in plan.sizes}, **fixed, TIME: RUNTIME_LONG_T}
        found.append(Case(tuple(long.items()), bool(io.state)))
    return list(dict.fromkeys(found))


def _splittable(io: IOSpec) -> bool:
    """Every input has a batch axis, so one sequence can be cut out of a batch."""
    return all(BATCH in spec.shape for spec in io.inputs)


def case_feed(subject: Subject, case: Case) -> Feed:
    """Inputs for a case, deterministic per case; without an initial state the backends must fill zeros."""
    return make_feed(subject.io, subject.plan, dict(case.sizes), initial_state=case.initial_state,
                     seed=zlib.crc32(str(case).encode()), custom=subject.custom)


def runtime_backend(model: runtime.Model) -> Backend:
    return lambda feed: model.run(**feed)


# ---- canonical outputs: time first, batch second, padding zeroed ---------------------------------------------

def canonical(spec: TensorSpec, arr: np.ndarray, sizes: dict[str, int]) -> np.ndarray:
    """``arr`` with a flattened product axis (``time*batch``) split into its symbols, then its time axis first
    and its batch axis next (those it has), so every check can index (t, b, ...)."""
    dims: list[str | int] = []
    shape: list[int] = []
    for d, n in zip(spec.shape, arr.shape):
        parts = d.split("*") if isinstance(d, str) and "*" in d else [d]
        if len(parts) > 1 and all(p in sizes for p in parts):
            dims += parts
            shape += [sizes[p] for p in parts]
        else:
            dims.append(d)
            shape.append(n)
    arr = arr.reshape(shape)
    front = [dims.index(s) for s in (TIME, BATCH) if s in dims]
    return np.moveaxis(arr, front, list(range(len(front))))


def _canonical_all(io: IOSpec, out: Feed, sizes: dict[str, int]) -> Feed:
    return {o.name: canonical(o, out[o.name], sizes) for o in io.outputs}


def _padding_mask(spec: TensorSpec, canon: np.ndarray, lengths: np.ndarray | None) -> np.ndarray | None:
    """True where ``canon`` (time first, batch second) is past its sequence's length."""
    if lengths is None or TIME not in _symbols(spec) or BATCH not in _symbols(spec):
        return None
    t = np.arange(canon.shape[0])[:, None]
    mask = t >= lengths[None, :]  # (T, B)
    return mask.reshape(mask.shape + (1,) * (canon.ndim - 2))


def _symbols(spec: TensorSpec) -> list[str]:
    return [p for d in spec.shape if isinstance(d, str) for p in d.split("*")]


def compare(subject: Subject, check: str, case: Case, a: Feed, b: Feed, lengths: np.ndarray | None = None,
            canon: bool = False) -> list[Diff]:
    """Every output of ``b`` against ``a`` (canonical already when ``canon``), padding excluded."""
    diffs = []
    sizes = dict(case.sizes)
    for spec in subject.io.outputs:
        if spec.name not in b:
            continue
        x, y = (a[spec.name], b[spec.name]) if canon else (canonical(spec, a[spec.name], sizes),
                                                           canonical(spec, b[spec.name], sizes))
        x, y = x.astype(np.float64), y.astype(np.float64)
        if x.shape != y.shape:
            diffs.append(Diff(subject.name, check, case, f"{spec.name} shape {x.shape} vs {y.shape}", np.inf, np.inf,
                              False))
            continue
        mask = _padding_mask(spec, y, lengths)
        if mask is not None:
            x, y = np.where(mask, 0.0, x), np.where(mask, 0.0, y)
        err = np.abs(x - y)
        rel = err / np.maximum(np.abs(y), ATOL)  # relative to |y|, floored: near zero only abs diff means much
        scale = max(1.0, float(np.abs(y).max(initial=0.0)))
        ok = bool(np.all(err <= ATOL * scale + RTOL * np.abs(y)))
        diffs.append(Diff(subject.name, check, case, spec.name, float(err.max(initial=0.0)),
                          float(rel.max(initial=0.0)), ok))
        if subject.kind == "tagger" and spec is subject.io.outputs[0]:  # tags are the scores' argmax
            differ = x.argmax(-1) != y.argmax(-1)
            if mask is not None:
                differ &= ~mask[..., 0]
            n = int(differ.sum())
            diffs.append(Diff(subject.name, check, case, "tags (argmax)", float(n), float(n), n == 0))
    return diffs


def _run_all(subject: Subject, check: str, case: Case, feed: Feed) -> tuple[dict[str, Feed], list[Diff]]:
    results, failures = {}, []
    for name, fn in subject.backends.items():
        try:
            results[name] = fn(feed)
        except Exception as e:  # the backend's own error is the finding
            failures.append(_error(subject, f"{check}{name}", case, e))
    return results, failures


def _error(subject: Subject, check: str, case: Case, e: Exception) -> Diff:
    message = " ".join(str(e).split())
    return Diff(subject.name, check, case, "-", np.inf, np.inf, False,
                error=f"{check} raised {type(e).__name__}: {message[:600]}")


def check_backends(subject: Subject, case: Case) -> list[Diff]:
    """Every output of every pair of backends on the same inputs."""
    feed = case_feed(subject, case)
    lengths = feed.get(subject.io.lengths) if subject.io.lengths else None
    results, diffs = _run_all(subject, "", case, feed)
    for a, b in itertools.combinations(results, 2):
        diffs += compare(subject, f"{a} vs {b}", case, results[a], results[b], lengths)
    return diffs


def step(subject: Subject, fn: Backend, feed: Feed, sizes: dict[str, int]) -> Feed:
    """Run one time step at a time, carrying the state; outputs canonical, concatenated along time."""
    io = subject.io
    timed = [t for t in io.inputs if TIME in t.shape]
    state = {i: feed[i] for i, _ in io.state if i in feed}
    pieces: dict[str, list[np.ndarray]] = {o.name: [] for o in io.data_outputs}
    out: Feed = {}
    for t in range(sizes[TIME]):
        one = {**feed, **{s.name: np.ascontiguousarray(np.take(feed[s.name], [t], axis=s.axis(TIME)))
                          for s in timed}, **state}
        out = fn(one)
        state = {i: out[o] for i, o in io.state}
        for o in io.data_outputs:
            pieces[o.name].append(canonical(o, out[o.name], {**sizes, TIME: 1}))
    result = {o.name: (np.concatenate(pieces[o.name], axis=0) if TIME in _symbols(o) else pieces[o.name][-1])
              for o in io.data_outputs}
    state_outputs = {o for _, o in io.state}
    return {**result, **{o.name: canonical(o, out[o.name], sizes) for o in io.outputs if o.name in state_outputs}}


def check_stepping(subject: Subject, case: Case) -> list[Diff]:
    """On each backend, stepping equals the whole sequence (every output, final state included)."""
    feed, sizes, diffs = case_feed(subject, case), dict(case.sizes), []
    for name, fn in subject.backends.items():
        check = f"stepping vs whole on {name}"
        try:
            whole = _canonical_all(subject.io, fn(feed), sizes)
            diffs += compare(subject, check, case, step(subject, fn, feed, sizes), whole, canon=True)
        except Exception as e:
            diffs.append(_error(subject, check, case, e))
    return diffs


def check_padding(subject: Subject, case: Case) -> list[Diff]:
    """On each backend, every sequence run alone (cut to its length) equals its row of the padded batch."""
    io, feed, sizes, diffs = subject.io, case_feed(subject, case), dict(case.sizes), []
    lengths = feed[io.lengths]
    for name, fn in subject.backends.items():
        check = f"alone vs padded on {name}"
        try:
            padded = _canonical_all(io, fn(feed), sizes)
            for b, n in enumerate(lengths.tolist()):
                one = {}
                for spec in io.inputs:
                    if spec.name not in feed:
                        continue
                    x = np.take(feed[spec.name], [b], axis=spec.axis(BATCH))
                    if TIME in spec.shape:
                        x = np.take(x, np.arange(n), axis=spec.axis(TIME))
                    one[spec.name] = np.ascontiguousarray(x)
                alone_sizes = {**sizes, TIME: n, BATCH: 1}
                alone = _canonical_all(io, fn(one), alone_sizes)
                row = {}
                for o in io.outputs:
                    syms, x = _symbols(o), padded[o.name]
                    if BATCH in syms:
                        x = x[:, b:b + 1] if TIME in syms else x[b:b + 1]
                    if TIME in syms:
                        x = x[:n]
                    row[o.name] = x
                diffs += compare(subject, f"{check} (sequence {b}, length {n})", case, alone, row, canon=True)
        except Exception as e:
            diffs.append(_error(subject, check, case, e))
    return diffs


def verify(subject: Subject) -> list[Diff]:
    diffs = [d for c in cases(subject.plan, bool(subject.io.state)) for d in check_backends(subject, c)]
    diffs += [d for c in stepping_cases(subject.plan, subject.io) for d in check_stepping(subject, c)]
    diffs += [d for c in padding_cases(subject.plan, subject.io) for d in check_padding(subject, c)]
    return diffs


def summarize(diffs: list[Diff], subject: Subject) -> dict:
    numeric = [d for d in diffs if not d.output.startswith("tags") and np.isfinite(d.max_abs)]
    stepping = [d for d in diffs if d.check.startswith("stepping")]
    padding = [d for d in diffs if d.check.startswith("alone vs padded")]
    return {
        "ok": all(d.ok for d in diffs),
        "atol": ATOL,
        "rtol": RTOL,
        "tolerance": TOLERANCE,
        "example_length": subject.plan.example.get(TIME),
        "lengths": subject.plan.sizes.get(TIME, []),
        "batches": subject.plan.sizes.get(BATCH, []),
        "sizes": subject.plan.sizes,
        "backends": list(subject.backends),
        "comparisons": len(diffs),
        "failures": [str(d) for d in diffs if not d.ok],
        "max_abs_diff": max((d.max_abs for d in numeric), default=None),
        "max_rel_diff": max((d.max_rel for d in numeric), default=None),
        "stepping_equals_whole": all(d.ok for d in stepping) if stepping else None,
        "padded_equals_alone": all(d.ok for d in padding) if padding else None,
    }


def raise_on_failure(diffs: list[Diff], limit: int = 40) -> None:
    bad = [d for d in diffs if not d.ok]
    if bad:
        shown = "\n".join(f"  {d}" for d in bad[:limit])
        more = f"\n  ... and {len(bad) - limit} more" if len(bad) > limit else ""
        raise ParityError(f"{len(bad)} of {len(diffs)} comparisons failed:\n{shown}{more}")


# ---- the same ONNX file in other runtimes ---------------------------------------------------------------------

OTHER_RUNTIMES = ("onnx-reference", "openvino", "tract")
# Checked where it runs: tract refuses some valid graphs (a Loop, a TopK whose k is a symbolic size), at load or at
# run, with an error; that is recorded, not failed. A wrong answer from a runtime that runs the graph fails.
MAY_REFUSE = ("tract",)
RUNTIME_MAX_T = 64  # the ONNX reference evaluator is pure numpy: ~1.4 s per call for char-shakespeare at T=50
RUNTIME_LONG_T = 300  # plus one long case at batch 3 (mixed lengths where the model takes them)


def runtime_cases(plan: Plan, io: IOSpec) -> list[Case]:
    """Time 1, 2, T and 3T (at most RUNTIME_MAX_T), batch 1 and 3, and time 300 at batch 3, with the initial
    state given; other symbols at their smallest and largest verified sizes; each state-carrying case also once
    without initial state."""
    base = {s: plan.example[s] for s in plan.sizes}
    grid = []
    times = sorted({1, 2, plan.example[TIME], min(3 * plan.example[TIME], RUNTIME_MAX_T)}) if TIME in base else [None]
    for t in times:
        for b in BATCHES if BATCH in base else (None,):
            grid.append({**base, **({TIME: t} if t else {}), **({BATCH: b} if b else {})})
    if TIME in base:
        grid.append({**base, TIME: RUNTIME_LONG_T, **({BATCH: max(BATCHES)} if BATCH in base else {})})
    for s, sizes in plan.sizes.items():
        if s not in (TIME, BATCH):
            grid += [{**base, s: min(sizes)}, {**base, s: max(sizes)}]
    unique = list(dict.fromkeys(tuple(g.items()) for g in grid))
    cases_ = [Case(sizes, bool(io.state)) for sizes in unique]
    if io.state:
        cases_.append(Case(unique[-1], False))
    return cases_


def case_of(io: IOSpec, feed: Feed) -> Case:
    """The sizes of a given feed (real inputs), as a case to name in reports."""
    sizes: dict[str, int] = {}
    for spec in io.inputs:
        if spec.name in feed:
            for d, n in zip(spec.shape, feed[spec.name].shape):
                if d in (TIME, BATCH):
                    sizes.setdefault(d, int(n))
    return Case(tuple(sizes.items()), any(i in feed for i, _ in io.state))


def check_runtimes(subject: Subject, onnx_path, feeds: list[Feed] | None = None,
                   names: tuple[str, ...] = OTHER_RUNTIMES) -> tuple[list[Diff], dict]:
    """Run ``onnx_path`` in each other runtime and compare every output with onnxruntime's (``subject``'s
    "onnxruntime" backend) on ``runtime_cases`` plus ``feeds``. Returns the comparisons and, per runtime, a record
    for the manifest: version, status (agrees, disagrees, refused, unavailable), max abs diff, comparisons."""
    versions = runtimes.available()
    reference = subject.backends["onnxruntime"]
    work = [(c, complete(subject.io, case_feed(subject, c))) for c in runtime_cases(subject.plan, subject.io)]
    work += [(case_of(subject.io, f), complete(subject.io, f)) for f in feeds or []]
    expected = [(c, f, reference(f)) for c, f in work]
    diffs, record = [], {}
    for name in names:
        entry: dict = {"version": versions.get(name)}
        record[name] = entry
        try:
            run = runtimes.load(name, onnx_path)
        except runtimes.RuntimeUnavailable as e:
            entry.update(status="unavailable", error=str(e))
            continue
        except RuntimeError as e:
            entry.update(status="refused", error=" ".join(str(e).split())[:400])
            if name not in MAY_REFUSE:
                diffs.append(_error(subject, f"{name} loading", Case((), False), e))
            continue
        mine = []
        for case, feed, want in expected:
            lengths = feed.get(subject.io.lengths) if subject.io.lengths else None
            try:
                mine += compare(subject, f"onnxruntime vs {name}", case, want, run(feed), lengths)
            except Exception as e:  # the runtime's own failure is the finding
                mine.append(_error(subject, f"{name} ", case, e))
        raised = [d for d in mine if d.error]
        if raised and name in MAY_REFUSE:  # it loaded but cannot run the graph: an error, never a wrong answer
            entry.update(status="refused", error=f"at run ({len(raised)} of {len(expected)} feeds): "
                                                 f"{raised[0].error[:400]}")
            continue
        numeric = [d.max_abs for d in mine if not d.output.startswith("tags") and np.isfinite(d.max_abs)]
        bad = [d for d in mine if not d.ok]
        entry.update(status="disagrees" if bad else "agrees", comparisons=len(mine),
                     max_abs_diff=max(numeric, default=None))
        if bad:
            entry.update(failed=len(bad), first_failure=str(bad[0]))
        diffs += mine
    return diffs, record
