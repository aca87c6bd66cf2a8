"""The command lines, called the way users call them."""

from __future__ import annotations

import json

from export.zoo.registry import REGISTRY
from export.zoo.seeds import HELLO

from .conftest import run_cli


def test_runtime_help_lists_commands():
    out = run_cli("runtime", "--help")
    assert out.returncode == 0 and all(c in out.stdout for c in ("tag", "eval", "generate", "info"))


def test_runtime_tag_reads_stdin_one_sentence_per_line():
    out = run_cli("runtime", "tag", "artifacts/pos-tutorial", "-",
                  input="The dog ate the apple\n\nEverybody read that book\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["The/DET dog/NN ate/V the/DET apple/NN", "", "Everybody/NN read/V that/DET book/NN"]


def test_runtime_tag_reads_a_file(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("Everybody read that book\n", encoding="utf-8")
    out = run_cli("runtime", "tag", "artifacts/pos-tutorial-gru", str(f))
    assert out.returncode == 0 and out.stdout == "Everybody/NN read/V that/DET book/NN\n", out.stderr


def test_runtime_generate_prints_prompt_and_continuation():
    out = run_cli("runtime", "generate", "artifacts/char-hello", "--prompt", "", "-n", "100")
    assert out.returncode == 0 and out.stdout == HELLO + "\n", out.stderr
    out = run_cli("runtime", "generate", "artifacts/char-hello", "--prompt", "hello", "-n", "9")
    assert out.stdout == "hello pytorch.\n"


def test_runtime_cli_errors_are_one_line_and_nonzero(tmp_path):
    out = run_cli("runtime", "generate", "artifacts/pos-tutorial", "--prompt", "x")
    assert out.returncode == 1 and "needs a CharLM artifact" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("runtime", "tag", str(tmp_path))
    assert out.returncode == 1 and "no manifest" in out.stderr and "Traceback" not in out.stderr


def test_runtime_info_prints_a_short_summary_and_json_on_request():
    out = run_cli("runtime", "info", "artifacts/lstm-tutorial")
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) <= 30, out.stdout
    assert lines[0] == "lstm-tutorial: recurrent artifact", lines
    for expected in ("inputs:  input float32 (time, batch, 3)", "state:   h_0 -> h_n, c_0 -> c_n", "model.pte",
                     "exported: model.onnx via traced", "verified: ok;", "onnx-reference"):
        assert expected in out.stdout, (expected, out.stdout)
    out = run_cli("runtime", "info", "artifacts/lstm-tutorial", "--json")
    info = json.loads(out.stdout)
    assert info["kind"] == "recurrent" and info["export"]["exporter"] == "torchscript"


def test_export_help_and_list():
    out = run_cli("export", "--help")
    assert out.returncode == 0 and "--all" in out.stdout and "--out" in out.stdout and "--force" in out.stdout
    out = run_cli("export", "--list")
    assert out.returncode == 0 and all(name in out.stdout for name in REGISTRY)


def test_export_rejects_unknown_names_and_existing_artifacts(tmp_path):
    out = run_cli("export", "no-such-model")
    assert out.returncode == 2 and "unknown model" in out.stderr
    out = run_cli("export", "lstm-tutorial", "--out", "artifacts")
    assert out.returncode == 2 and "--force" in out.stderr


def test_threads_is_taken_before_or_after_the_subcommand():
    """A global option after the subcommand (``generate A -n 5 --threads 2``) is the same option (issue 24)."""
    import runtime.__main__ as cli

    for argv in (["--threads", "2", "generate", "artifacts/char-hello"], ["generate", "artifacts/char-hello",
                                                                          "--threads", "2"]):
        assert cli._parser().parse_args(argv).threads == 2, argv
    assert cli._parser().parse_args(["info", "artifacts/char-hello"]).threads == 1
    assert cli._parser().parse_args(["run", "artifacts/lstm-tutorial", "x.npz", "--threads", "2"]).threads == 2
