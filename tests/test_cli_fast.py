"""The command lines answer --help, --version, --list and usage errors before torch (or numpy) is imported, the
`seqedge` script reaches both sides, and the same mistake gets the same exit status on every route.

Imports are read from ``python -X importtime``, which lists every module a process imported: no timing is asserted
(benchmarks/cli_start.py measures the start times).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ARTIFACTS, ROOT

SEQEDGE = Path(sys.executable).parent / "seqedge"  # the console script pyproject.toml declares
HEAVY = ("torch", "numpy", "onnx", "onnxruntime")


def imported(*args: str, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``python -X importtime ARGS`` (a ``-m`` module or the seqedge script); its result and the top-level
    packages it imported."""
    out = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=300)
    modules = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()
               if line.startswith("import time:")}
    out.stderr = "\n".join(line for line in out.stderr.splitlines() if not line.startswith("import time:"))
    return out, modules


@pytest.mark.parametrize("args, status, words", [
    (["-m", "export", "--help"], 0, ["--module", "--formats", "lstm-tutorial"]),
    (["-m", "export", "--version"], 0, ["seqedge 0."]),
    (["-m", "export", "--list"], 0, ["pos-ewt", "char-shakespeare", "UD English EWT"]),
    (["-m", "export", "--bogus"], 2, ["unrecognized arguments: --bogus"]),
    (["-m", "export", "nosuch"], 2, ["unknown model(s) ['nosuch']"]),
    (["-m", "export", "lstm-tutorial", "--data", "/tmp", "--out", "/tmp/x"], 2, ["lstm-tutorial read(s) no data files"]),
    (["-m", "export", "--module", "m.py:M", "--input", "x:float64[3]", "--out", "/tmp/x"], 2, ["expected NAME:DTYPE"]),
    (["-m", "runtime", "--help"], 0, ["tag", "generate"]),
    (["-m", "runtime", "--version"], 0, ["seqedge 0."]),
    (["-m", "runtime", "tag", "--bogus"], 2, ["the following arguments are required: artifact"]),
    ([str(SEQEDGE), "--help"], 0, ["export", "tag", "info", "run", "COMMAND --help"]),
    ([str(SEQEDGE), "--version"], 0, ["seqedge 0."]),
    ([str(SEQEDGE), "export", "--list"], 0, ["lstm-2layer-batch-first"]),
    ([str(SEQEDGE), "export", "--help"], 0, ["usage: seqedge export"]),
    ([str(SEQEDGE), "tag", "--help"], 0, ["usage: seqedge tag"]),
    ([str(SEQEDGE), "nosuch"], 2, ["unknown command 'nosuch'", "export, info, run, tag"]),
    ([str(SEQEDGE)], 2, ["usage: seqedge"]),
])
def test_answers_without_importing_torch(args, status, words):
    out, modules = imported(*args)
    case = " ".join(["python", *args])
    assert out.returncode == status, f"{case}: exit {out.returncode}, expected {status}: {out.stderr[-500:]}"
    for w in words:
        assert w in out.stdout + out.stderr, f"{case}: {w!r} not in its output: {(out.stdout + out.stderr)[:800]}"
    assert not modules & set(HEAVY), f"{case}: imported {sorted(modules & set(HEAVY))}"


def test_the_variant_choices_are_the_artifacts_variants():
    """The runtime's parser names the variants without importing the artifact reader (to start fast)."""
    from runtime.__main__ import VARIANT_CHOICES
    from runtime.artifact import VARIANTS

    assert VARIANT_CHOICES == tuple(VARIANTS), (VARIANT_CHOICES, tuple(VARIANTS))


def test_one_version_everywhere():
    """`python -m export --version`, `python -m runtime --version` and `seqedge --version` print the version pip
    installed (pyproject.toml reads runtime.__version__)."""
    from importlib import metadata

    versions = {subprocess.run(c, capture_output=True, text=True, cwd=ROOT).stdout.strip()
                for c in ([sys.executable, "-m", "export", "--version"], [sys.executable, "-m", "runtime", "--version"],
                          [str(SEQEDGE), "--version"])}
    assert versions == {f"seqedge {metadata.version('seqedge')}"}, versions


@pytest.mark.parametrize("route", ["registered model", "--module", "seqedge export --module"])
def test_an_existing_output_folder_is_exit_2_at_once_on_every_route(tmp_path, route):
    """The same mistake, the same answer: exit 2 and one line before any work (torch is not even imported)."""
    out_dir = tmp_path / "out"
    (out_dir / "lstm-tutorial").mkdir(parents=True)
    module = tmp_path / "m.py"
    module.write_text("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return x\n")
    if route == "registered model":
        args, existing = ["-m", "export", "lstm-tutorial", "--out", str(out_dir)], out_dir / "lstm-tutorial"
    else:
        head = [str(SEQEDGE), "export"] if route.startswith("seqedge") else ["-m", "export"]
        args, existing = [*head, "--module", f"{module}:M", "--input", "x:float32[time=4,3]", "--out",
                          str(out_dir / "lstm-tutorial")], out_dir / "lstm-tutorial"
    out, modules = imported(*args)
    assert out.returncode == 2, f"{route}: exit {out.returncode}: {out.stderr}"
    assert out.stderr.strip().splitlines() == [f"error: {existing} exists; pass --force to replace"], \
        f"{route}: {out.stderr}"
    assert "torch" not in modules, f"{route}: torch imported before the usage error"


def test_the_script_avoids_a_users_own_export_py(tmp_path):
    """`python -m export` in a folder holding the user's own export.py runs that file (Python puts the current folder
    first on its path); `seqedge export` runs seqedge's. The README says so."""
    (tmp_path / "export.py").write_text("print('the user export.py')\n")
    shadowed = subprocess.run([sys.executable, "-m", "export", "--version"], cwd=tmp_path, capture_output=True,
                              text=True)
    assert "the user export.py" in shadowed.stdout, shadowed.stdout + shadowed.stderr
    script = subprocess.run([str(SEQEDGE), "export", "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout.startswith("seqedge "), script.stdout + script.stderr


def test_the_script_runs_the_runtime(tmp_path):
    out = subprocess.run([str(SEQEDGE), "info", str(ARTIFACTS / "lstm-2layer")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("lstm-2layer: recurrent artifact"), out.stderr
    out = subprocess.run([str(SEQEDGE), "generate", str(ARTIFACTS / "char-hello"), "--prompt", "hello", "-n", "9",
                          "--threads", "1"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "hello pytorch.\n", out.stderr
