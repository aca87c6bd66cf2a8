"""The benchmark's smoke test: `benchmarks/bench.py --quick` runs every section and writes its report.

No timing is asserted (these machines are noisy); the figures are read from a full `make bench` run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.mark.slow
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
    assert thr["tokens"] > 0
    assert thr["flops_per_token"] > thr["needed_flops_per_token"] > 0
    for k in ("tag_batch", "tag_batch (int8)", "bare session.run", "torch eager"):
        assert thr[k]["tokens_per_s"] > 0, k
        assert r["tag_roofline"][k]["of_model_shapes"] > 0 and r["tag_roofline"][k]["of_square_best"] > 0, k
    streaming = set(r["streaming_us_per_char"])
    assert {"runtime generate", "bare session.run loop", "torch eager", "TorchScript"} <= streaming
    ms = r["many_streams"]
    assert ms["streams"] == 64 and ms["fp32"]["step_streams"]["chars_per_s"] > 0
    assert ms["int8"]["step_streams"]["chars_per_s"] > 0 and "runtime generate (int8)" in streaming
    for variant in ("fp32", "int8"):
        assert r["weight_traffic"][variant]["bytes_per_step"] > 1e6 and r["weight_traffic"][variant]["gb_s"] > 0
    sv = r["serving"]  # the runtime's serving calls beside bare session.run on the very feeds they build
    assert set(sv["stream_us_per_call"]) and all(v["ratio"] > 0 for v in sv["stream_us_per_call"].values())
    assert all(v["session_runs"] >= 1 and v["ratio"] > 0 for v in sv["run_batch"].values())
    assert set(sv["run_streams"]) == {"char-shakespeare", "user LM"}
    # one step by onnxruntime's profiler: the LSTM kernels and the whole run, per variant
    assert r["step_profile"]["fp32"]["LSTM"] > 0 and r["step_profile"]["int8"]["DynamicQuantizeLSTM"] > 0
    assert all(p["model_run"] > 0 for p in r["step_profile"].values())
    # runtime.load of every .onnx against its .ort
    assert set(r["ort_format"]) == {"pos-ewt fp32", "pos-ewt int8", "char-shakespeare fp32", "char-shakespeare int8"}
    assert all(v[f]["load_ms"]["median"] > 0 and v[f]["bytes"] > 0 for v in r["ort_format"].values()
               for f in ("onnx", "ort"))
    assert set(r["threads"]) and all(v["1"] > 0 and v["2"] > 0 for v in r["threads"].values())
    # the roofline: onnxruntime's MatMul at large squares and at the models' own shapes, fp32 and int8
    roof = r["roofline"]
    assert roof["square_best"]["fp32"] > 0 and roof["square_best"]["int8"] > 0
    kinds = {e["kind"].split(" (")[0] for e in roof["pos-ewt"]}
    assert {"char LSTM input", "char LSTM recurrent", "word LSTM input", "word LSTM recurrent", "output layer"} == kinds
    assert all(e["gflops"]["fp32"] > 0 and e["gflops"]["int8"] > 0 and e["m"] >= 1 for e in roof["pos-ewt"])
    assert roof["char-shakespeare"]["step_us_batch_1"]["fp32"] > 0 and roof["char-shakespeare"]["shapes"]
    numpy_run = r["numpy_sgemm"]["OPENBLAS_* unset"]
    assert numpy_run["best"] > 0 and numpy_run["kernel"]
    assert r["memory_bandwidth"]["large"]["read_gb_s"] > 0
    # the machine: vector extensions read from it, its load before, during and after
    assert {"avx2", "fma", "avx512f"} <= set(r["cpu"]["flags"]) and "OPENBLAS_CORETYPE" in r["cpu"]["env"]
    for when in ("before", "during", "after"):
        assert r["load"][when]["others_cores"] >= 0 and r["load"][when]["seconds"] > 0
    assert isinstance(r["load"]["busy"], list)
    assert r["int8"]["int8_bytes"] < r["int8"]["fp32_bytes"]
    export_s = r["export_s"]["lstm-tutorial"]
    assert export_s["total"] > 0 and {"load", "torchscript", "onnx", "pt2", "pte", "verify"} <= set(export_s["stages"])
    assert abs(sum(export_s["stages"].values()) - export_s["total"]) < 1e-6 * export_s["total"] + 1e-3
    # ExecuTorch's two methods and model.pt2 beside onnxruntime, each loop's characters compared with its
    edge = r["edge_formats"]
    loops = {"runtime generate", "onnxruntime session.run loop (.onnx)", "torch.export model.pt2 loop",
             "ExecuTorch model.pte forward loop", "ExecuTorch model.pte step loop"}
    assert set(edge["us_per_char"]) == loops and all(v["median"] > 0 for v in edge["us_per_char"].values())
    assert set(edge["same_characters_as_onnxruntime"]) == {"pt2", "pte forward", "pte step"}
    assert "unavailable" in edge["pos_ewt"] or edge["pos_ewt"]["ExecuTorch (.pte)"]["tokens_per_s"] > 0
    md = (tmp_path / "results.md").read_text()
    first = md.splitlines()[0]
    assert first.startswith("**BUSY MACHINE: figures not representative**" if r["load"]["busy"] else "Quiet machine")
    sections = ("| target |", "1. cold start", "2. latency", "3. throughput", "4. streaming", "4b. 64 streams",
                "4c. weight traffic", "4d. one step", "4e. `runtime.load`", "4f. serving", "5. int8", "6. export", "7. threads", "8. roofline", "9. memory bandwidth",
                "10. Machine")
    for section in sections:
        assert section in md, section
    for target in ("75% of the MatMul roofline", "int8 >= 1.8x", "streaming int8 <= 60", "over 64 streams"):
        assert target in md, target
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_docs_update_needs_a_full_run():
    out = subprocess.run([sys.executable, "benchmarks/bench.py", "--quick", "--docs"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--docs" in out.stderr


def test_force_docs_goes_with_docs():
    out = subprocess.run([sys.executable, "benchmarks/bench.py", "--quick", "--force-docs"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--force-docs" in out.stderr


def test_docs_refused_after_a_busy_run_unless_forced():
    code = ("import bench; busy = {'busy': ['1-min load average 3.00 before the run (limit 0.5)']}; "
            "print(repr(bench.docs_refusal(busy, False))); print(repr(bench.docs_refusal(busy, True))); "
            "print(repr(bench.docs_refusal({'busy': []}, False)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "benchmarks", capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    refused, forced, quiet = out.stdout.splitlines()
    assert refused.startswith("'error: busy machine") and "--force-docs" in refused
    assert forced == quiet == "None"
