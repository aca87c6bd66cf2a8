"""`make run` rewrites every committed file with identical bytes, on any machine of the same kind
(docs/reproducibility.md): trained models export their committed checkpoint instead of training (training
amplifies the CPU's rounding: char-hello's weights came out up to 0.1 apart on another CPU), and the figures a
check measures on this CPU (parity max diffs, printed-tensor diffs, int8 error and agreement) do not rewrite a
manifest whose files and bounds are unchanged.

The exports run in a subprocess with PYTHONHASHSEED=0, as ``python -m export`` does (model.pt depends on it). There,
``perturb_training`` makes every optimizer step 1.5x as far (retraining would give other weights), and
``other_cpu`` changes onnxruntime's answers the way another CPU's kernels do: fp32 outputs (not the recurrent
state) in their last bits, int8 outputs by more (other integer kernels, other saturation).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import export.api as api
from export.zoo import seeds
from export.zoo import spec as zoo_spec
from export.zoo.registry import REGISTRY
from export.zoo.spec import DataError
from runtime.artifact import MANIFEST, ORT_VARIANTS, Manifest, read_manifest, sha256_bytes

from .conftest import ARTIFACTS, ROOT

TRAINED_SEEDS = ["pos-tutorial", "pos-tutorial-gru", "char-hello", "char-hello-batch-first"]

DRIVER = r"""
import json, os, shutil, sys
from pathlib import Path

sys.path[0] = os.getcwd()  # as `python -m export` from the project root has it (model.pt's debug info paths)

import numpy as np
import torch

import export.api as api
import runtime.model
from export.zoo.build import export
from export.zoo.registry import REGISTRY

names, runs, perturb_training = json.loads(sys.argv[1])
report = {"optimizers": 0, "kept": {}, "measured": {}}
state = {"other_cpu": False}

torch.set_num_threads(1)  # a retraining export (the failure this guards against) trains 10x faster on a busy machine
if perturb_training:
    class FarSGD(torch.optim.SGD):
        def __init__(self, params, lr, **kw):
            report["optimizers"] += 1
            super().__init__(params, lr=lr * 1.5, **kw)

    class FarAdam(torch.optim.Adam):
        def __init__(self, params, lr, **kw):
            report["optimizers"] += 1
            super().__init__(params, lr=lr * 1.5, **kw)

    torch.optim.SGD, torch.optim.Adam = FarSGD, FarAdam

plain_run = runtime.model.Model._run


def other_cpu_run(self, feed):
    out = plain_run(self, feed)
    if not state["other_cpu"]:
        return out
    int8 = self.onnx_path.name in ("model.int8.onnx", "model.int8.ort")
    state_outputs = {o for _, o in self.io.state}  # not compounded over steps: the same kernels step and run whole
    for k, v in out.items():
        if v.dtype == np.float32 and k not in state_outputs:
            if int8:
                out[k] = v + np.float32(0.05) * np.cos(np.arange(v.size, dtype=np.float32)).reshape(v.shape)
            else:
                out[k] = v * np.float32(1 + 4e-6)  # within rtol; enough to move a max diff beside model.pt2's (char-hello)
    return out


runtime.model.Model._run = other_cpu_run

keep = getattr(api, "_keep_recorded_figures", None)
if keep is not None:
    def spy(manifest, previous):
        report["measured"][current] = manifest.to_json()
        kept = keep(manifest, previous)
        report["kept"][current] = kept
        return kept
    api._keep_recorded_figures = spy

for out, over_committed, other_cpu in runs:
    state["other_cpu"] = other_cpu
    for name in names:
        current = f"{out}/{name}"
        if over_committed:
            shutil.copytree(Path("artifacts") / name, Path(out) / name)
        export(REGISTRY[name], Path(out), force=over_committed)
print(json.dumps(report))
"""


def run_exports(names: list[str], runs: list[tuple[Path, bool, bool]], perturb_training: bool) -> dict:
    """Export ``names`` once per run (folder, over a copy of the committed artifacts?, simulate another CPU?)."""
    arg = json.dumps([names, [(str(out), over, cpu) for out, over, cpu in runs], perturb_training])
    out = subprocess.run([sys.executable, "-c", DRIVER, arg], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def manifest_json(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def assert_same_files(folder: Path, name: str, manifest_too: bool) -> None:
    committed = ARTIFACTS / name
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in committed.iterdir()), folder
    ort = set(ORT_VARIANTS.values())
    for f in committed.iterdir():
        if f.name == MANIFEST and not manifest_too:
            # Measured on this CPU: the same manifest but for figures measured on the CPU that exported it, and,
            # into an empty folder, the ORT files' hashes (below).
            a, b = api._masked(manifest_json(folder)), api._masked(manifest_json(committed))
            for m in (a, b):
                m["files"] = {k: v for k, v in m["files"].items() if k not in ort}
            assert a == b, f"{name}/{f.name}"
        elif f.name in ort and not manifest_too:
            # A fresh conversion: onnxruntime's converter orders its kernel type table by an address-seeded hash,
            # so the bytes may differ on another Python or machine (same length, same entries); the export checked
            # that it answers as model.onnx. Over the committed artifact (make run) the committed bytes are kept.
            assert (folder / f.name).stat().st_size == f.stat().st_size, f"{name}/{f.name}"
        else:
            assert (folder / f.name).read_bytes() == f.read_bytes(), (
                f"{name}/{f.name} differs from the committed file (`make run` would rewrite it)")


@pytest.fixture(scope="module")
def seed_exports(tmp_path_factory) -> tuple[Path, dict]:
    """The trained seed models and lstm-tutorial, retraining perturbed, exported as if on another CPU: into an empty
    folder, then over a copy of the committed artifacts. (Another CPU moves only figures the verification measures,
    so an export into an empty folder on this CPU adds nothing: it was a third run, 35 s.)"""
    root = tmp_path_factory.mktemp("seeds")
    report = run_exports([*TRAINED_SEEDS, "lstm-tutorial"], [(root / "fresh", False, True),
                                                            (root / "over", True, True)], perturb_training=True)
    return root, report


@pytest.mark.slow
def test_seed_exports_train_nothing(seed_exports):
    _, report = seed_exports
    assert report["optimizers"] == 0, "an export trained a model instead of loading its committed checkpoint"


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED_SEEDS)
def test_trained_seed_model_exports_its_committed_checkpoint(seed_exports, name):
    """Retraining would give other weights, yet the export writes the committed model.pt and model.onnx."""
    root, _ = seed_exports
    assert_same_files(root / "fresh" / name, name, manifest_too=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*TRAINED_SEEDS, "lstm-tutorial"])
def test_figures_measured_on_another_cpu_do_not_rewrite_the_manifest(seed_exports, name):
    root, report = seed_exports
    moved = report["measured"][f"{root / 'over'}/{name}"]
    assert moved["parity"] != manifest_json(ARTIFACTS / name)["parity"], "the simulated CPU moved no figure"
    assert report["kept"][f"{root / 'over'}/{name}"]
    assert_same_files(root / "over" / name, name, manifest_too=True)
    # Into an empty folder the figures are this CPU's own (nothing to keep), the rest is the same.
    assert manifest_json(root / "fresh" / name)["parity"] != manifest_json(ARTIFACTS / name)["parity"]


@pytest.mark.slow
def test_int8_figures_of_another_cpu_do_not_rewrite_pos_ewt(tmp_path):
    """The reported case: pos-ewt's int8 dev accuracy and agreement moved on another CPU (30 s, idle machine)."""
    report = run_exports(["pos-ewt"], [(tmp_path, True, True)], perturb_training=False)
    key = f"{tmp_path}/pos-ewt"
    int8 = {c["what"]: c["detail"] for c in report["measured"][key]["parity"]["checks"] if c["what"].startswith("int8")}
    recorded = {c["what"]: c["detail"] for c in manifest_json(ARTIFACTS / "pos-ewt")["parity"]["checks"]
                if c["what"].startswith("int8")}
    assert int8.keys() == recorded.keys() and len(int8) == 2, (int8, recorded)
    assert all(int8[w] != recorded[w] for w in int8), f"the simulated int8 kernels moved no figure: {int8}"
    assert report["kept"][key]
    assert_same_files(tmp_path / "pos-ewt", "pos-ewt", manifest_too=True)


# ---- the rule, on the committed pos-ewt manifest ---------------------------------------------------------------

def _committed_ewt() -> dict:
    return read_manifest(ARTIFACTS / "pos-ewt").to_json()


def _remeasured(change) -> Manifest:
    d = _committed_ewt()
    change(d)
    return Manifest.from_json(d)


def _int8(d: dict) -> dict:
    return next(c for c in d["parity"]["checks"] if c["what"].startswith("int8:"))


def test_only_measured_figures_are_kept():
    def other_cpu(d):
        d["parity"]["max_abs_diff"] *= 1.1
        d["parity"]["max_rel_diff"] *= 0.9
        d["parity"]["runtimes"]["openvino"]["max_abs_diff"] *= 1.2
        _int8(d)["detail"] = _int8(d)["detail"].replace("0.9992", "0.9991").replace("loss 0.00", "loss -0.01")
    m = _remeasured(other_cpu)
    assert m.to_json() != _committed_ewt()
    assert api._keep_recorded_figures(m, _committed_ewt())
    assert m.to_json() == _committed_ewt()


@pytest.mark.parametrize("what, change", [
    ("a file", lambda d: d["files"].__setitem__("model.onnx", "0" * 64)),
    ("a check's wording", lambda d: _int8(d).__setitem__("detail", _int8(d)["detail"].replace("agreement", "match"))),
    ("a tolerance", lambda d: d["parity"].__setitem__("atol", 2e-5)),
    ("a runtime's status", lambda d: d["parity"]["runtimes"]["openvino"].__setitem__("status", "unavailable")),
    ("a version", lambda d: d["export"].__setitem__("onnxruntime", "9.9.9")),
    ("the training record", lambda d: d["export"]["training"].__setitem__("data_dir", "/elsewhere")),
])
def test_figures_are_not_kept_when_anything_else_changed(what, change):
    def other_cpu_and(d):
        d["parity"]["max_abs_diff"] *= 1.1
        change(d)
    m = _remeasured(other_cpu_and)
    before = copy.deepcopy(m.to_json())
    assert not api._keep_recorded_figures(m, _committed_ewt()), what
    assert m.to_json() == before, what


def test_data_from_elsewhere_is_recorded(monkeypatch, tmp_path):
    spec = REGISTRY["pos-ewt"]
    assert zoo_spec.data_record(spec) == {}
    monkeypatch.setitem(zoo_spec._data_dirs, spec.name, tmp_path)
    assert zoo_spec.data_record(spec) == {"data_dir": str(tmp_path)}


# ---- retraining a seed model ---------------------------------------------------------------------------------

def test_retrain_trains_a_seed_model_again_and_rewrites_its_checkpoint(monkeypatch, tmp_path):
    committed = {n: sha256_bytes((seeds.CHECKPOINTS / f"{n}.pt").read_bytes()) for n in TRAINED_SEEDS}
    monkeypatch.setattr(seeds, "CHECKPOINTS", tmp_path)
    with pytest.raises(DataError, match="--retrain"):
        REGISTRY["pos-tutorial"].train(False)  # no checkpoint there
    steps = []

    class CountingSGD(torch.optim.SGD):
        def step(self, closure=None):
            steps.append(1)
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "SGD", CountingSGD)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: 10x faster than 2 threads on a busy machine
    try:
        trained = REGISTRY["pos-tutorial"].train(True)
    finally:
        torch.set_num_threads(threads)
    assert len(steps) == 600  # 300 epochs of 2 sentences
    ckpt = torch.load(tmp_path / "pos-tutorial.pt", weights_only=True)
    recorded = read_manifest(ARTIFACTS / "pos-tutorial")
    assert ckpt["config"] == recorded.config and ckpt["vocab"] == recorded.vocab
    assert ckpt["training"]["recipe"] == recorded.export["training"]["recipe"]
    assert trained.training == ckpt["training"]
    assert [ok for _, ok, _ in trained.facts] == [True], trained.facts  # seed 000's untrained scores
    loaded = REGISTRY["pos-tutorial"].train(False)
    assert len(steps) == 600, "loading the checkpoint trained"
    for k, v in trained.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k
    assert loaded.facts == trained.facts and loaded.vocab == trained.vocab
    monkeypatch.undo()
    assert {n: sha256_bytes((seeds.CHECKPOINTS / f"{n}.pt").read_bytes()) for n in TRAINED_SEEDS} == committed
