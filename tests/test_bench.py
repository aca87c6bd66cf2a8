"""The benchmark's smoke test: `benchmarks/bench.py --quick` runs every section and writes its report.

No timing is asserted (these machines are noisy); the figures are read from a full `make bench` run."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_quick_bench_runs_every_section_and_writes_json_markdown_and_chart(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/bench.py", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["mode"] == "quick"
    assert set(r["cold_start"]) == {"runtime", "torch eager", "TorchScript"}
    assert all(v["wall_s"]["median"] > 0 and v["peak_rss_mib"]["median"] > 0 for v in r["cold_start"].values())
    assert {"Tagger.tag", "bare session.run", "torch eager", "TorchScript", "Tagger.tag (int8)"} <= set(r["latency_us"])
    thr = r["throughput"]
    assert thr["tokens"] > 0 and thr["sgemm_gflops_1thread"] > 0
    assert thr["flops_per_token"] > thr["needed_flops_per_token"] > 0
    for k in ("tag_batch", "tag_batch (int8)", "bare session.run", "torch eager"):
        assert thr[k]["tokens_per_s"] > 0, k
    streaming = set(r["streaming_us_per_char"])
    assert {"runtime generate", "bare session.run loop", "torch eager", "TorchScript"} <= streaming
    assert r["int8"]["int8_bytes"] < r["int8"]["fp32_bytes"]
    assert r["export_s"]["lstm-tutorial"] > 0
    md = (tmp_path / "results.md").read_text()
    sections = ("| target |", "1. cold start", "2. latency", "3. throughput", "4. streaming", "5. int8", "6. export")
    for section in sections:
        assert section in md, section
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_readme_update_needs_a_full_run():
    out = subprocess.run([sys.executable, "benchmarks/bench.py", "--quick", "--readme"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--readme" in out.stderr
