"""What an edge user pays: seqedge's runtime side by side with eager torch and TorchScript, in one run.

    python benchmarks/bench.py            # full run (a few minutes), writes results.json, results.md, chart.png
    python benchmarks/bench.py --quick    # about a minute: fewer repeats, smaller inputs (CI smoke test)

Every figure: same inputs, one intra-op thread everywhere (onnxruntime's session and torch.set_num_threads(1)),
warm-up first, then the median of repeated runs with min and max. No thresholds are asserted anywhere: the
targets are read from the table (see README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # numpy's BLAS and torch: one thread, set before they load
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "artifacts"
POS = ARTIFACTS / "pos-ewt"
LM = ARTIFACTS / "char-shakespeare"
DEV = ROOT / "export" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu.xz"
SENTENCE = "The new rules , announced on Tuesday , take effect next month for most small firms .".split()  # 17


def stats(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def timed(fn, repeats: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return stats(samples)


# ---- 1. cold start -----------------------------------------------------------------------------------------

COLD = {
    "runtime": f"""
import runtime
t = runtime.load({str(POS)!r})
t.tag({SENTENCE!r})
""",
    "torch eager": f"""
import torch
torch.set_num_threads(1)
from export.models import CharBiLSTMTagger, TaggerConfig
ckpt = torch.load({str(ROOT / 'export' / 'checkpoints' / 'pos-ewt.pt')!r}, weights_only=True)
net = CharBiLSTMTagger(TaggerConfig(**ckpt["config"]))
net.load_state_dict(ckpt["state_dict"])
net.eval()
import runtime
t = runtime.load({str(POS)!r})  # only to encode the sentence the same way
feed = t.inputs([{SENTENCE!r}])
with torch.no_grad():
    net(**{k: torch.from_numpy(v) for k, v in feed.items()})
""",
    "TorchScript": f"""
import torch
torch.set_num_threads(1)
m = torch.jit.load({str(POS / 'model.pt')!r})
import runtime
t = runtime.load({str(POS)!r})
feed = t.inputs([{SENTENCE!r}])
with torch.no_grad():
    m(**{k: torch.from_numpy(v) for k, v in feed.items()})
""",
}


def cold_start(repeats: int) -> dict:
    """A fresh process that imports, loads pos-ewt and tags one sentence: wall time and peak RSS.

    The torch paths also import the runtime to encode the sentence identically; that cost is the same small
    addition on both torch paths and is part of what the runtime path pays anyway."""
    out = {}
    for name, code in COLD.items():
        walls, rss = [], []
        for i in range(repeats + 1):
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t
            if status != 0:
                raise RuntimeError(f"cold start {name}: exit {status}: {proc.stderr.read().decode()[-2000:]}")
            if i:  # the first run warms the OS file cache
                walls.append(wall)
                rss.append(usage.ru_maxrss / 1024)  # KiB -> MiB
        out[name] = {"wall_s": stats(walls), "peak_rss_mib": stats(rss)}
    return out


# ---- 2-5. in-process figures -------------------------------------------------------------------------------

def load_backends():
    import torch

    import runtime
    from export.verify import backends_for

    torch.set_num_threads(1)
    tagger = runtime.load(POS)
    bk = backends_for(POS)
    return torch, runtime, tagger, bk


def latency(repeats: int) -> dict:
    """One 17-token sentence at batch 1."""
    torch, runtime, tagger, bk = load_backends()
    feed = tagger.inputs([SENTENCE])
    names = tagger.output_names
    out = {
        "Tagger.tag": timed(lambda: tagger.tag(SENTENCE), repeats),
        "bare session.run": timed(lambda: tagger.session.run(names, feed), repeats),
        "torch eager": timed(lambda: bk.by_name["eager"](feed), repeats),
        "TorchScript": timed(lambda: bk.by_name["torchscript"](feed), repeats),
    }
    q = runtime.load(POS, variant="int8")
    out["Tagger.tag (int8)"] = timed(lambda: q.tag(SENTENCE), repeats)
    return {k: {s: v * 1e6 if s != "n" else v for s, v in d.items()} for k, d in out.items()}  # microseconds


def dev_sentences(limit: int | None) -> list[list[str]]:
    from export.ewt import read_conllu

    sents = [w for w, _ in read_conllu(DEV)]
    return sents[:limit] if limit else sents


def sgemm_gflops(n: int = 512, repeats: int = 20) -> float:
    """numpy's single-precision matmul on one thread (BLAS threads pinned to 1 above)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    r = timed(lambda: a @ b, repeats)
    return 2 * n ** 3 / r["median"] / 1e9


def flops_per_token(cfg: dict, chars_per_token: float) -> float:
    """Multiply-adds x 2 of the tagger per token: char BiLSTM over its characters, the word BiLSTM, the output."""
    lstm = lambda inp, h: 2 * 4 * h * (inp + h)  # one direction, one step: gates = W x + U h
    char = 2 * lstm(cfg["char_dim"], cfg["char_hidden"]) * chars_per_token
    word = 0.0
    inp = cfg["word_dim"] + 2 * cfg["char_hidden"]
    for _ in range(cfg["num_layers"]):
        word += 2 * lstm(inp, cfg["hidden"])
        inp = 2 * cfg["hidden"]
    return char + word + 2 * (2 * cfg["hidden"]) * cfg["num_tags"]


def throughput(repeats: int, limit: int | None) -> dict:
    """All of EWT dev through tag_batch (tokens/s), and the same batches through eager torch."""
    torch, runtime, tagger, bk = load_backends()
    sents = dev_sentences(limit)
    tokens = sum(len(s) for s in sents)
    from runtime.tagger import BATCH_SENTENCES, word_chars

    order = sorted(range(len(sents)), key=lambda i: len(sents[i]), reverse=True)  # as tag_batch batches them
    feeds = [tagger.inputs([sents[i] for i in order[s:s + BATCH_SENTENCES]])
             for s in range(0, len(order), BATCH_SENTENCES)]
    eager = bk.by_name["eager"]
    q = runtime.load(POS, variant="int8")
    res = {
        "tag_batch": timed(lambda: tagger.tag_batch(sents), repeats, warmup=1),
        "tag_batch (int8)": timed(lambda: q.tag_batch(sents), repeats, warmup=1),
        "bare session.run": timed(lambda: [tagger.session.run(["scores"], f) for f in feeds], repeats, warmup=1),
        "torch eager": timed(lambda: [eager(f) for f in feeds], repeats, warmup=1),
    }
    chars = sum(len(word_chars(w, tagger.manifest.config["max_word_chars"])) for s in sents for w in s) / tokens
    fpt = flops_per_token(tagger.manifest.config, chars)
    peak = sgemm_gflops()
    out = {"tokens": tokens, "sentences": len(sents), "flops_per_token": fpt, "sgemm_gflops_1thread": peak}
    for k, r in res.items():
        tps = tokens / r["median"]
        out[k] = {"tokens_per_s": tps, "tokens_per_s_min": tokens / r["max"], "tokens_per_s_max": tokens / r["min"],
                  "gflops": tps * fpt / 1e9, "roofline_fraction": tps * fpt / 1e9 / peak}
    return out


def streaming(n_chars: int, repeats: int) -> dict:
    """Microseconds per generated character (greedy, state carried), char-shakespeare."""
    import torch

    import runtime
    from export.verify import backends_for

    torch.set_num_threads(1)
    lm = runtime.load(LM)
    first = np.array([[lm.bos_id]], dtype=np.int64)

    def torch_loop(module):
        def go():
            with torch.no_grad():
                x = torch.from_numpy(first)
                h = c = torch.zeros(lm.manifest.config["num_layers"], 1, lm.manifest.config["hidden_size"])
                for _ in range(n_chars):
                    logits, h, c = module(x, h, c)
                    x = logits[-1:, :, :].argmax(-1)
        return go

    bk = backends_for(LM)  # eager torch rebuilt from the config, TorchScript from model.pt
    res = {
        "runtime generate": timed(lambda: lm.generate("", max_chars=n_chars), repeats, warmup=1),
        "torch eager": timed(torch_loop(bk.modules["eager"]), repeats, warmup=1),
        "TorchScript": timed(torch_loop(bk.modules["torchscript"]), repeats, warmup=1),
    }
    return {k: {s: v / n_chars * 1e6 if s != "n" else v for s, v in d.items()} for k, d in res.items()}


def int8_vs_fp32(latency_res: dict, throughput_res: dict) -> dict:
    import runtime

    man = runtime.load(POS).manifest
    checks = {c["what"]: c["detail"] for c in man.parity["checks"]}
    return {
        "fp32_bytes": (POS / "model.onnx").stat().st_size,
        "int8_bytes": (POS / "model.int8.onnx").stat().st_size,
        "fp32_latency_us": latency_res["Tagger.tag"]["median"],
        "int8_latency_us": latency_res["Tagger.tag (int8)"]["median"],
        "fp32_tokens_per_s": throughput_res["tag_batch"]["tokens_per_s"],
        "int8_tokens_per_s": throughput_res["tag_batch (int8)"]["tokens_per_s"],
        "accuracy": next((v for k, v in checks.items() if k.startswith("int8")), None),
    }


def export_times(names: list[str]) -> dict:
    """Seconds to train/load, export and verify each artifact (into a temporary folder)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "export", name, "--out", tmp], cwd=ROOT,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"export {name} failed: {proc.stderr[-2000:]}")
            out[name] = time.perf_counter() - t
    return out


# ---- report --------------------------------------------------------------------------------------------------

def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x"


def markdown(r: dict) -> str:
    c, lat, thr, st, q = r["cold_start"], r["latency_us"], r["throughput"], r["streaming_us_per_char"], r["int8"]
    rt = c["runtime"]
    lines = [f"Measured {r['date']} on {r['machine']} ({r['mode']} mode), one intra-op thread everywhere; "
             "median [min-max].", "",
             "| 1. cold start (import, load pos-ewt, tag one sentence) | wall s | peak RSS MiB | runtime is faster | "
             "uses less memory |", "| --- | --- | --- | --- | --- |"]
    for k, v in c.items():
        w, m = v["wall_s"], v["peak_rss_mib"]
        lines.append(f"| {k} | {w['median']:.3f} [{w['min']:.3f}-{w['max']:.3f}] | {m['median']:.0f} "
                     f"[{m['min']:.0f}-{m['max']:.0f}] | {ratio(w['median'], rt['wall_s']['median'])} | "
                     f"{ratio(m['median'], rt['peak_rss_mib']['median'])} |")
    lines += ["", "| 2. latency, one 17-token sentence, batch 1 | µs | vs bare session.run |", "| --- | --- | --- |"]
    for k, v in lat.items():
        lines.append(f"| {k} | {v['median']:.0f} [{v['min']:.0f}-{v['max']:.0f}] | "
                     f"{v['median'] / lat['bare session.run']['median']:.2f}x |")
    lines += ["", f"| 3. throughput, EWT dev ({thr['tokens']} tokens) | tokens/s | GFLOP/s | fraction of 1-thread "
              f"sgemm ({thr['sgemm_gflops_1thread']:.1f} GFLOP/s) |", "| --- | --- | --- | --- |"]
    for k, v in thr.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {v['tokens_per_s']:.0f} [{v['tokens_per_s_min']:.0f}-{v['tokens_per_s_max']:.0f}] "
                         f"| {v['gflops']:.2f} | {100 * v['roofline_fraction']:.0f}% |")
    lines += ["", f"FLOPs per token (counted from the config): {thr['flops_per_token'] / 1e6:.2f} M.", "",
              "| 4. streaming, char-shakespeare greedy | µs per character | runtime is faster |", "| --- | --- | --- |"]
    for k, v in st.items():
        lines.append(f"| {k} | {v['median']:.0f} [{v['min']:.0f}-{v['max']:.0f}] | "
                     f"{ratio(v['median'], st['runtime generate']['median'])} |")
    lines += ["", "| 5. int8 vs fp32 (pos-ewt) | fp32 | int8 |", "| --- | --- | --- |",
              f"| size | {q['fp32_bytes'] / 1e6:.2f} MB | {q['int8_bytes'] / 1e6:.2f} MB |",
              f"| latency (tag, 17 tokens) | {q['fp32_latency_us']:.0f} µs | {q['int8_latency_us']:.0f} µs |",
              f"| throughput (tag_batch) | {q['fp32_tokens_per_s']:.0f} tok/s | {q['int8_tokens_per_s']:.0f} tok/s |",
              f"| accuracy (recorded at export) | {q['accuracy']} | |", ""]
    if r.get("export_s"):
        lines += ["| 6. export + verify | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v:.1f} |" for k, v in r["export_s"].items()]
    return "\n".join(lines) + "\n"


def chart(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), dpi=100)
    panels = [
        ("cold start (s)", {k: v["wall_s"]["median"] for k, v in r["cold_start"].items()}),
        ("cold start peak RSS (MiB)", {k: v["peak_rss_mib"]["median"] for k, v in r["cold_start"].items()}),
        ("tag 17 tokens, batch 1 (µs)", {k: v["median"] for k, v in r["latency_us"].items()}),
        ("streaming (µs / char)", {k: v["median"] for k, v in r["streaming_us_per_char"].items()}),
    ]
    for ax, (title, data) in zip(axes, panels):
        colors = ["tab:green" if k.startswith(("runtime", "Tagger", "bare")) else "tab:gray" for k in data]
        ax.barh(list(data), list(data.values()), color=colors)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.tick_params(labelsize=8)
    fig.suptitle("seqedge runtime (green) vs torch (gray), one thread, medians; lower is better", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="about a minute: fewer repeats, smaller inputs")
    p.add_argument("--out", type=Path, default=OUT, help="where results.json, results.md and chart.png go")
    args = p.parse_args(argv)
    quick = args.quick
    for a in (POS, LM):
        if not (a / "manifest.json").exists():
            print(f"error: {a} missing; run `make run` first", file=sys.stderr)
            return 1
    steps = [("cold start", lambda: cold_start(2 if quick else 7)),
             ("latency", lambda: latency(50 if quick else 500)),
             ("throughput", lambda: throughput(1 if quick else 5, 300 if quick else None)),
             ("streaming", lambda: streaming(200 if quick else 2000, 2 if quick else 5))]
    r = {"date": time.strftime("%Y-%m-%d"), "mode": "quick" if quick else "full",
         "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    keys = ["cold_start", "latency_us", "throughput", "streaming_us_per_char"]
    for (label, fn), key in zip(steps, keys):
        t = time.perf_counter()
        print(f"[bench] {label} ...", file=sys.stderr, flush=True)
        r[key] = fn()
        print(f"[bench] {label}: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    r["int8"] = int8_vs_fp32(r["latency_us"], r["throughput"])
    if not quick:
        print("[bench] export ...", file=sys.stderr, flush=True)
        from export.registry import REGISTRY

        r["export_s"] = export_times(list(REGISTRY))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(r, indent=2) + "\n")
    md = markdown(r)
    (args.out / "results.md").write_text(md)
    chart(r, args.out / "chart.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
