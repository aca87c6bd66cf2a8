"""The environment the Makefile builds (the CPU build of torch 2.13.0, no CUDA packages), and the README's
runtime-only install on a fresh virtualenv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata

import pytest

from .conftest import ROOT


def test_no_cuda_packages_installed():
    nvidia = sorted(d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].lower().startswith("nvidia"))
    assert nvidia == [], f"CUDA packages installed: {nvidia}"


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
    assert not torch.version.cuda, f"a CUDA build of torch: {torch.version.cuda}"


# ---- the runtime alone, installed from a copy of the clone into a fresh virtualenv ---------------------------------

@pytest.mark.slow  # a venv and `pip install .` (numpy and onnxruntime from the registry or pip's cache): ~30-60 s
def test_the_runtime_alone_installs_into_a_fresh_venv_and_runs_an_artifact(tmp_path):
    """README, Install: `pip install .` gives the runtime (numpy + onnxruntime, no torch) and the `seqedge` script;
    it runs an artifact, and the export side names the extra it needs in one line. Installed from a copy of the
    sources, so that the build leaves nothing in the checkout."""
    src = tmp_path / "seqedge"
    for name in ("pyproject.toml", "README.md"):
        src.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    for package in ("runtime", "export"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "data",
                                                                                       "checkpoints"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, script = venv / "bin" / "python", venv / "bin" / "seqedge"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(src)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert "torch" not in names and not any(n.startswith("nvidia") for n in names), sorted(names)
    assert {"numpy", "onnxruntime", "seqedge"} <= names, sorted(names)

    code = ("import numpy as np, runtime, sys\n"
            f"m = runtime.load({str(ROOT / 'artifacts' / 'lstm-2layer')!r})\n"
            "out = m.run(input=np.ones((4, 2, 3), np.float32))\n"
            "print(sorted(out), out['output'].shape, 'torch' in sys.modules)\n")
    run = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "['c_n', 'h_n', 'output'] (4, 2, 5) False", run.stderr
    tag = subprocess.run([str(script), "tag", str(ROOT / "artifacts" / "pos-ewt")], input="The dog barked.\n",
                         capture_output=True, text=True, cwd=tmp_path)
    assert tag.returncode == 0 and tag.stdout == "The/DET dog/NOUN barked/VERB ./PUNCT\n", tag.stderr
    for command in ([str(script), "export", "lstm-tutorial", "--out", str(tmp_path / "a")],
                    [str(py), "-m", "export", "lstm-tutorial", "--out", str(tmp_path / "a")]):
        export = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        lines = export.stderr.strip().splitlines()
        assert export.returncode == 1 and len(lines) == 1 and "needs the export extra" in lines[0] \
            and "pip install torch==2.13.0 && pip install '.[export]'" in lines[0], f"{command}: {export.stderr}"
