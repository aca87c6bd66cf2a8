"""Parity suite: eager torch, TorchScript and ONNX Runtime (through ``runtime``) agree on every artifact.

Invariants, per artifact:
- every pair of backends gives every output within ATOL/RTOL at time lengths 1, 2, the seed's example length,
  3x it and 256, at batch 1 and 3, with and without an initial state (taggers: identical tags);
- stepping one element at a time with the state carried equals the whole sequence, on each backend.
Failure messages name the model, backends, length, batch, output, and max abs / max rel diff.
"""

from __future__ import annotations

from functools import lru_cache

import pytest

from export.registry import REGISTRY
from export.verify import Backends, backends_for, cases, check_backends, check_stepping, stepping_cases

from runtime.artifact import ArtifactError, read_manifest

from .conftest import ARTIFACTS


@lru_cache(maxsize=None)
def backends(name: str) -> Backends:
    folder = ARTIFACTS / name
    if not (folder / "manifest.json").exists():
        pytest.fail(f"{name}: no artifact at {folder}; run `make run`")
    return backends_for(folder)


def _stateful(name: str) -> bool:
    """Read off the artifact's IO: bidirectional taggers carry no state and are never stepped."""
    try:
        return bool(read_manifest(ARTIFACTS / name).io.state)
    except ArtifactError:
        return True  # no artifact: the meta-test below fails for it


def _params(case_fn):
    return [pytest.param(name, case, id=f"{name}-{case}".replace(" ", "_"))
            for name, spec in REGISTRY.items() for case in case_fn(spec.example_length, _stateful(name))]


def _assert_all_ok(diffs):
    bad = [str(d) for d in diffs if not d.ok]
    assert not bad, f"{len(bad)} of {len(diffs)} comparisons failed:\n" + "\n".join(bad)


@pytest.mark.parametrize("name, case", _params(cases))
def test_backends_agree(name, case):
    _assert_all_ok(check_backends(backends(name), case))


@pytest.mark.parametrize("name, case", _params(stepping_cases))
def test_stepping_equals_whole_sequence(name, case):
    _assert_all_ok(check_stepping(backends(name), case))


def test_every_registered_model_has_an_artifact_and_parity_coverage():
    """Meta-test: a registered model without an artifact or without parity cases fails here."""
    on_disk = {p.name for p in ARTIFACTS.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert set(REGISTRY) <= on_disk, f"registered models without an artifact: {sorted(set(REGISTRY) - on_disk)}"
    assert on_disk <= set(REGISTRY), f"artifacts no registered model produces: {sorted(on_disk - set(REGISTRY))}"
    covered = {p.values[0] for p in _params(cases)}
    assert covered == set(REGISTRY), f"models without parity cases: {sorted(set(REGISTRY) - covered)}"
    stepped = {p.values[0] for p in _params(stepping_cases)}
    stateful = {name for name in REGISTRY if _stateful(name)}
    assert stepped == stateful, f"models with state but no stepping cases: {sorted(stateful - stepped)}"
    for name, spec in REGISTRY.items():
        grid = cases(spec.example_length, _stateful(name))
        lengths = {c.length for c in grid}
        assert {1, 2, spec.example_length, 3 * spec.example_length} <= lengths and max(lengths) >= 256, name
        assert {c.batch for c in grid} == {1, 3}, name
        assert {c.initial_state for c in grid} == ({True, False} if _stateful(name) else {False}), name


@pytest.mark.parametrize("name", list(REGISTRY))
def test_manifest_records_passing_parity(name):
    """What export recorded: every comparison passed, within the named tolerances, for the same case grid."""
    parity = read_manifest(ARTIFACTS / name).parity
    assert parity["ok"] and parity["failures"] == [], f"{name}: {parity['failures']}"
    assert parity["stepping_equals_whole"] is (True if _stateful(name) else None), name
    assert parity["lengths"] == sorted({c.length for c in cases(REGISTRY[name].example_length)}), name
