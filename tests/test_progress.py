"""Long work shows progress on a terminal and stays quiet elsewhere (issue 24, item 4): ``export_module`` prints
one line per stage on stderr with the seconds since the call began; ``runtime loss`` and ``runtime eval`` keep a
progress line; pipes and logs get the results alone."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import warnings

import torch

import export
from runtime.progress import Progress

from .conftest import ARTIFACTS, ROOT, run_cli

EWT_DEV = ROOT / "export" / "zoo" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu.xz"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _on_a_terminal(*args: str) -> tuple[int, str, str]:
    """``python -m ARGS`` with stderr on a pseudo-terminal: (exit status, stdout, what the terminal showed)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed its side
            break
        if not data:
            break
        shown += data
    out = proc.stdout.read().decode()
    os.close(leader)
    return proc.wait(), out, shown.decode()


def test_progress_line_counts_on_a_terminal_and_is_silent_elsewhere():
    tty = Terminal()
    with Progress("loss", 1000, "characters", stream=tty, every=0) as p:
        p.update(250)
        p.update(1000)
    lines = tty.getvalue().split("\r")
    assert lines[1].startswith("loss: 250/1,000 characters (25%), "), lines
    assert lines[-1].startswith("loss: 1,000/1,000 characters (100%), ") and lines[-1].endswith(" s\n"), lines
    pipe = io.StringIO()
    with Progress("eval", unit="sentences", stream=pipe, every=0) as p:
        p.update(5)
    assert pipe.getvalue() == ""


def test_loss_and_eval_show_progress_on_a_terminal_only():
    text = ROOT / "export" / "zoo" / "data" / "tinyshakespeare" / "input.txt.xz"
    code, out, shown = _on_a_terminal("runtime", "loss", str(ARTIFACTS / "char-shakespeare"), str(text),
                                      "--start-fraction", "0.99")
    assert code == 0 and "nats/char" in out, (code, out, shown)
    assert "loss: " in shown and "(100%)" in shown, f"loss on a terminal showed {shown!r}"
    code, out, shown = _on_a_terminal("runtime", "eval", str(ARTIFACTS / "pos-ewt"), str(EWT_DEV))
    assert code == 0 and "accuracy" in out.lower(), (code, out, shown)
    assert "eval: 2,001 sentences" in shown, f"eval on a terminal showed {shown!r}"
    piped = run_cli("runtime", "loss", str(ARTIFACTS / "char-shakespeare"), str(text), "--start-fraction", "0.99")
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr


class TinyGRU(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(3, 4)

    def forward(self, x):
        return self.rnn(x)[0]


def test_export_module_reports_its_stages_on_a_terminal(tmp_path, monkeypatch):
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    args = (torch.randn(5, 2, 3),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export.export_module(TinyGRU().eval(), args, tmp_path / "gru", ["x"], {"x": {0: "time", 1: "batch"}},
                             formats=["ort"])
        lines = tty.getvalue().splitlines()
        stages = [line.split("] ", 1)[1] for line in lines]
        assert all(line.startswith("[") and " s] gru: " in line for line in lines), lines
        for stage in ("gru: IO x['time', 'batch', 3] -> output_0['time', 'batch', 4]", "gru: TorchScript", "gru: ONNX via",
                      "gru: ORT format", "gru: verifying", "gru: the same model.onnx in"):
            assert any(s.startswith(stage) for s in stages), f"no {stage!r} line in {stages}"
        tty.truncate(0)
        export.export_module(TinyGRU().eval(), args, tmp_path / "gru", ["x"], {"x": {0: "time", 1: "batch"}},
                             formats=[], force=True, quiet=True)
        assert tty.getvalue() == "", "quiet=True printed"
        got = []
        export.export_module(TinyGRU().eval(), args, tmp_path / "gru", ["x"], {"x": {0: "time", 1: "batch"}},
                             formats=[], force=True, log=got.append)
        assert tty.getvalue() == "" and any(g.startswith("gru: TorchScript") for g in got), got
