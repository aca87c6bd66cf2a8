"""``python -m export --module`` answers a bad command line or checkpoint in one line, never a traceback (issue 23,
item 6): exit 2 for a bad command line, 1 for a failed export.
"""

from __future__ import annotations

import os

import pytest
import torch

from .conftest import run_cli

MODULE = '''
import torch
class M(torch.nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.rnn = torch.nn.GRU(3, hidden)
    def forward(self, x):
        return self.rnn(x)[0]
'''


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "m.py").write_text(MODULE)
    import importlib.util
    spec = importlib.util.spec_from_file_location("seqedge_cli_m", root / "m.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.M(hidden=5).state_dict(), root / "other.pt")  # another hidden size: does not fit
    os.mkfifo(root / "fifo.pt")
    return root


CASES = {
    "a huge dimension": (["--input", "x:float32[time=100000,batch=100000,3]"], 2, "30,000,000,000 elements"),
    "a superscript size": (["--input", "x:float32[time=\u00b2,batch=2,3]"], 2, "expected a size >= 1 (digits 0-9)"),
    "a range past int64": (["--input", "x:int64[time=4,batch=2]:0..99999999999999999999"], 2, "does not fit int64"),
    "rank 70": (["--input", "x:float32[" + ",".join(["1"] * 70) + "]"], 2, "rank 70: expected at most 16"),
    "a checkpoint that does not fit": (["--checkpoint", "{root}/other.pt"], 1,
                                       "does not fit the module: size mismatch for rnn.weight_ih_l0"),
    "a checkpoint that is a folder": (["--checkpoint", "{root}"], 2, "is a folder, expected a checkpoint file"),
    "a checkpoint that is a FIFO": (["--checkpoint", "{root}/fifo.pt"], 2, "not a regular file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_export_cli_mistakes_are_one_line(user, tmp_path, case):
    extra, status, message = CASES[case]
    extra = [a.format(root=user) for a in extra]
    inputs = [] if "--input" in extra else ["--input", "x:float32[time=4,batch=2,3]"]
    out = run_cli("export", "--module", f"{user}/m.py:M", *inputs, *extra, "--out", str(tmp_path / "o"))
    assert out.returncode == status and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, \
        (case, out.returncode, out.stderr[-2000:])
    assert message in out.stderr and "Traceback" not in out.stderr, (case, out.stderr)
