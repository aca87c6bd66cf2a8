"""Parity suite: eager torch, TorchScript and ONNX Runtime (through ``runtime``) agree on every registered artifact.

Invariants, per artifact, re-checked here on the committed files with the plan export recorded:
- every pair of backends gives every output within ATOL/RTOL at time lengths 1, 2, the example's length, 3x it
  and 256, at batch 1 and 3, with and without an initial state (taggers: identical tags);
- stepping one element at a time with the state carried equals the whole sequence, on each backend;
- each ORT-format file (model.ort, model.int8.ort) answers as its .onnx through the runtime, on the same grid.
Failure messages name the model, backends, sizes, output, and max abs / max rel diff.
"""

from __future__ import annotations

from functools import lru_cache

import pytest

from export.feeds import Plan
import runtime
from export.verify import LONG, Subject, cases, check_backends, check_stepping, runtime_backend, stepping_cases
from export.zoo.build import subject_for
from export.zoo.registry import REGISTRY
from runtime.artifact import VARIANTS, ArtifactError, model_file, read_manifest

from .conftest import ARTIFACTS


@lru_cache(maxsize=None)
def subject(name: str) -> Subject:
    folder = ARTIFACTS / name
    if not (folder / "manifest.json").exists():
        pytest.fail(f"{name}: no artifact at {folder}; run `make run`")
    return subject_for(folder)


def _params(kind: str):
    params = []
    for name in REGISTRY:
        try:
            m = read_manifest(ARTIFACTS / name)
        except ArtifactError:
            continue  # no artifact: the meta-test below fails for it
        plan = Plan.from_json(m.parity["plan"])
        grid = cases(plan, bool(m.io.state)) if kind == "cases" else stepping_cases(plan, m.io)
        params += [pytest.param(name, case, id=f"{name}-{case}".replace(" ", "_")) for case in grid]
    return params


def _assert_all_ok(diffs):
    bad = [str(d) for d in diffs if not d.ok]
    assert not bad, f"{len(bad)} of {len(diffs)} comparisons failed:\n" + "\n".join(bad)


@pytest.mark.parametrize("name, case", _params("cases"))
def test_backends_agree(name, case):
    _assert_all_ok(check_backends(subject(name), case))


@pytest.mark.parametrize("name, case", _params("stepping"))
def test_stepping_equals_whole_sequence(name, case):
    _assert_all_ok(check_stepping(subject(name), case))


@lru_cache(maxsize=None)
def ort_pairs(name: str) -> list[Subject]:
    """Per variant the artifact ships: its .onnx and its .ort, both through the runtime."""
    s, folder = subject(name), ARTIFACTS / name
    shipped = read_manifest(folder).files
    return [Subject(name, s.kind, s.io, s.plan,
                    {model_file(v): runtime_backend(runtime.load(folder, variant=v)),
                     model_file(v, "ort"): runtime_backend(runtime.load(folder, variant=v, format="ort"))}, s.custom)
            for v in VARIANTS if model_file(v) in shipped]


@pytest.mark.parametrize("name, case", _params("cases"))
def test_ort_format_answers_as_onnx(name, case):
    for pair in ort_pairs(name):
        _assert_all_ok(check_backends(pair, case))


def test_every_registered_model_has_an_artifact_and_parity_coverage():
    """Meta-test: a registered model without an artifact or without parity cases fails here."""
    on_disk = {p.name for p in ARTIFACTS.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert set(REGISTRY) <= on_disk, f"registered models without an artifact: {sorted(set(REGISTRY) - on_disk)}"
    assert on_disk <= set(REGISTRY), f"artifacts no registered model produces: {sorted(on_disk - set(REGISTRY))}"
    covered = {p.values[0] for p in _params("cases")}
    assert covered == set(REGISTRY), f"models without parity cases: {sorted(set(REGISTRY) - covered)}"
    stepped = {p.values[0] for p in _params("stepping")}
    stateful = {name for name in REGISTRY if read_manifest(ARTIFACTS / name).io.state}
    assert stepped == stateful, f"models with state but no stepping cases: {sorted(stateful - stepped)}"
    for name in REGISTRY:  # every shipped variant has its ORT-format file, compared by test_ort_format_answers_as_onnx
        files = read_manifest(ARTIFACTS / name).files
        missing = [model_file(v, "ort") for v in VARIANTS if model_file(v) in files and model_file(v, "ort") not in files]
        assert not missing, f"{name}: no ORT-format file for {missing}"
    for name, spec in REGISTRY.items():
        grid = [p.values[1] for p in _params("cases") if p.values[0] == name]
        lengths = {c.size("time") for c in grid}
        t = spec.example_length
        assert {1, 2, t, 3 * t} <= lengths and max(lengths) >= LONG, name
        assert {c.size("batch") for c in grid} == {1, 3}, name
        assert {c.initial_state for c in grid} == ({True, False} if name in stateful else {False}), name


@pytest.mark.parametrize("name", list(REGISTRY))
def test_manifest_records_passing_parity(name):
    """What export recorded: every comparison passed, within the named tolerances, for the same case grid."""
    m = read_manifest(ARTIFACTS / name)
    parity = m.parity
    assert parity["ok"] and parity["failures"] == [], f"{name}: {parity['failures']}"
    assert parity["stepping_equals_whole"] is (True if m.io.state else None), name
    t = REGISTRY[name].example_length
    assert parity["lengths"] == sorted({1, 2, t, 3 * t, LONG}), name
