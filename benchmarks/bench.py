"""What an edge user pays: seqedge's runtime side by side with eager torch and TorchScript, in one run.

    make bench                            # full run (< 10 min): results.json, results.md, chart.png + README table
    python benchmarks/bench.py --quick    # about a minute: fewer repeats, smaller inputs (the test suite's smoke test)

Every figure: same inputs, one intra-op thread everywhere (onnxruntime's session and torch.set_num_threads(1)),
warm-up first, then the median of repeated runs with min and max. No thresholds are asserted anywhere: the
targets are read from the table (see README).
"""

from __future__ import annotations

import argparse
import functools
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
DEV = ROOT / "export" / "zoo" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu.xz"
SENTENCE = "The new rules , announced on Tuesday , take effect next month for most small firms .".split()  # 17


def stats(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def side_by_side(fns: dict, repeats: int, warmup: int = 3) -> dict:
    """Time several functions in the same rounds: each round runs every function once, in an order rotated
    round to round, so a slow spell of a noisy machine lands on all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names, samples = list(fns), {k: [] for k in fns}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - t)
    return {k: stats(v) for k, v in samples.items()}


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
from export.zoo.models import CharBiLSTMTagger, TaggerConfig
ckpt = torch.load({str(ROOT / 'export' / 'zoo' / 'checkpoints' / 'pos-ewt.pt')!r}, weights_only=True)
net = CharBiLSTMTagger(TaggerConfig(**ckpt["config"]))
net.load_state_dict(ckpt["state_dict"])
net.eval()
import runtime
t = runtime.load({str(POS)!r})  # only to encode the sentence the same way
feed = t.inputs([{SENTENCE!r}])
with torch.no_grad():
    net(**{{k: torch.from_numpy(v) for k, v in feed.items()}})
""",
    "TorchScript": f"""
import torch
torch.set_num_threads(1)
m = torch.jit.load({str(POS / 'model.pt')!r})
import runtime
t = runtime.load({str(POS)!r})
feed = t.inputs([{SENTENCE!r}])
with torch.no_grad():
    m(**{{k: torch.from_numpy(v) for k, v in feed.items()}})
""",
}


# The child's own peak RSS, read at its end. Not the rusage of the child: Linux carries the pre-exec memory of
# the forking (benchmark) process into ru_maxrss, which made a 83 MiB run read as 241 MiB once torch was loaded.
PEAK_RSS = """
import resource, sys
try:
    kib = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
except OSError:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("peak_rss_kib", kib)
"""


def cold_start(repeats: int) -> dict:
    """A fresh process that imports, loads pos-ewt and tags one sentence: wall time and peak RSS.

    The torch paths also import the runtime to encode the sentence identically; that cost is the same small
    addition on both torch paths and is part of what the runtime path pays anyway."""
    names = list(COLD)
    walls, rss = {k: [] for k in names}, {k: [] for k in names}
    for r in range(repeats + 1):  # in rounds, order rotated, as side_by_side
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-W", "ignore", "-c", COLD[name] + PEAK_RSS], cwd=ROOT,
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                raise RuntimeError(f"cold start {name}: exit {proc.returncode}: {proc.stderr[-2000:]}")
            if r:  # the first round warms the OS file cache
                walls[name].append(wall)
                rss[name].append(int(proc.stdout.split("peak_rss_kib")[-1]) / 1024)  # KiB -> MiB
    return {k: {"wall_s": stats(walls[k]), "peak_rss_mib": stats(rss[k])} for k in names}


# ---- 2-5. in-process figures -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def load_backends():
    """pos-ewt through the runtime (fp32 and int8) and its three parity backends, loaded once for all figures."""
    import torch

    import runtime
    from export.zoo.build import subject_for

    torch.set_num_threads(1)
    return runtime.load(POS), runtime.load(POS, variant="int8"), subject_for(POS)


def latency(repeats: int) -> dict:
    """One 17-token sentence at batch 1."""
    tagger, q, bk = load_backends()
    feed = tagger.inputs([SENTENCE])
    names = tagger.output_names
    out = side_by_side({
        "Tagger.tag": lambda: tagger.tag(SENTENCE),
        "bare session.run": lambda: tagger.session.run(names, feed),
        "torch eager": lambda: bk.backends["eager"](feed),
        "TorchScript": lambda: bk.backends["torchscript"](feed),
        "Tagger.tag (int8)": lambda: q.tag(SENTENCE),
    }, repeats)
    return {k: {s: v * 1e6 if s != "n" else v for s, v in d.items()} for k, d in out.items()}  # microseconds


def dev_sentences(limit: int | None) -> list[list[str]]:
    from export.zoo.ewt import read_conllu

    sents = [w for w, _ in read_conllu(DEV)]
    return sents[:limit] if limit else sents


def sgemm_gflops(sizes=(256, 512, 1024), repeats: int = 10) -> dict:
    """numpy's single-precision matmul on one thread (BLAS threads pinned to 1 above): GFLOP/s per square size;
    the best median is this machine's single-core roofline."""
    out = {}
    for n in sizes:
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
        out[n] = 2 * n ** 3 / side_by_side({"sgemm": lambda: a @ b}, repeats)["sgemm"]["median"] / 1e9
    return out


def lstm_flops(inp: int, h: int) -> int:
    """Multiply-adds x 2 of one LSTM direction for one step: the gates, W x + U h (4h rows)."""
    return 2 * 4 * h * (inp + h)


def flops_per_token(cfg: dict, chars_per_token: float) -> float:
    """The tagger's FLOPs per token: char BiLSTM over the token's characters, the word BiLSTM, the output layer."""
    return chars_per_token * 2 * lstm_flops(cfg["char_dim"], cfg["char_hidden"]) + word_flops_per_token(cfg)


def word_flops_per_token(cfg: dict) -> float:
    word, inp = 0.0, cfg["word_dim"] + 2 * cfg["char_hidden"]
    for _ in range(cfg["num_layers"]):
        word += 2 * lstm_flops(inp, cfg["hidden"])
        inp = 2 * cfg["hidden"]
    return word + 2 * (2 * cfg["hidden"]) * cfg["num_tags"]


def throughput(repeats: int, limit: int | None) -> dict:
    """All of EWT dev through tag_batch (tokens/s), and the same batches through eager torch."""
    tagger, q, bk = load_backends()
    sents = dev_sentences(limit)
    tokens = sum(len(s) for s in sents)
    from runtime.tagger import BATCH_SENTENCES, word_chars

    order = sorted(range(len(sents)), key=lambda i: len(sents[i]), reverse=True)  # as tag_batch batches them
    feeds = [tagger.inputs([sents[i] for i in order[s:s + BATCH_SENTENCES]])
             for s in range(0, len(order), BATCH_SENTENCES)]
    eager = bk.backends["eager"]
    res = side_by_side({
        "tag_batch": lambda: tagger.tag_batch(sents),
        "tag_batch (int8)": lambda: q.tag_batch(sents),
        "bare session.run": lambda: [tagger.session.run(["scores"], f) for f in feeds],
        "torch eager": lambda: [eager(f) for f in feeds],
    }, repeats, warmup=1)
    cfg = tagger.manifest.config
    chars = sum(len(word_chars(w, cfg["max_word_chars"])) for s in sents for w in s)
    fpt = flops_per_token(cfg, chars / tokens)
    # What the graph needs to compute: each batch's distinct spellings once (``spell``), no padding.
    distinct = sum(int((f[k] != 0).sum()) for f in feeds for k in f if k.startswith("chars_"))
    needed = (distinct * 2 * lstm_flops(cfg["char_dim"], cfg["char_hidden"]) + tokens * word_flops_per_token(cfg))
    gemm = sgemm_gflops()
    peak = max(gemm.values())
    out = {"tokens": tokens, "sentences": len(sents), "chars": chars, "distinct_spelling_chars": distinct,
           "flops_per_token": fpt, "needed_flops_per_token": needed / tokens, "sgemm_gflops_1thread": peak,
           "sgemm_gflops_by_size": gemm, "word_flops_per_token": word_flops_per_token(cfg)}
    for k, r in res.items():
        tps = tokens / r["median"]
        out[k] = {"tokens_per_s": tps, "tokens_per_s_min": tokens / r["max"], "tokens_per_s_max": tokens / r["min"],
                  "gflops": tps * fpt / 1e9, "roofline_fraction": tps * fpt / 1e9 / peak,
                  "needed_roofline_fraction": tps * needed / tokens / 1e9 / peak}
    return out


def streaming(n_chars: int, repeats: int) -> dict:
    """Microseconds per generated character (greedy, state carried), char-shakespeare."""
    import torch

    import runtime
    from export.zoo.build import subject_for

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

    def bare_loop():  # the floor: session.run per character, greedy pick, nothing else
        x, state = first, {i: lm.zero_state(i, 1) for i, _ in lm.io.state}
        for _ in range(n_chars):
            logits, h, c = lm.session.run(lm.output_names, {"chars": x, **state})
            state, x = {"h_0": h, "c_0": c}, logits[-1:].argmax(-1)

    bk = subject_for(LM)  # eager torch rebuilt from the config, TorchScript from model.pt
    res = side_by_side({
        "runtime generate": lambda: lm.generate("", max_chars=n_chars),
        "bare session.run loop": bare_loop,
        "torch eager": torch_loop(bk.modules["eager"]),
        "TorchScript": torch_loop(bk.modules["torchscript"]),
    }, repeats, warmup=1)
    return {k: {s: v / n_chars * 1e6 if s != "n" else v for s, v in d.items()} for k, d in res.items()}


def int8_vs_fp32(latency_res: dict, throughput_res: dict) -> dict:
    from runtime.artifact import read_manifest

    man = read_manifest(POS)
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


def targets(r: dict) -> list[tuple[str, str, bool]]:
    """Issue 5's targets against this run: (target, measured, met)."""
    c, lat, thr, st = r["cold_start"], r["latency_us"], r["throughput"], r["streaming_us_per_char"]
    def med(d: dict) -> float:
        return d["median"]

    rt_wall, rt_rss = med(c["runtime"]["wall_s"]), med(c["runtime"]["peak_rss_mib"])
    torch_paths = [k for k in c if k != "runtime"]
    wall = min(med(c[k]["wall_s"]) / rt_wall for k in torch_paths)
    rss = min(med(c[k]["peak_rss_mib"]) / rt_rss for k in torch_paths)
    tag, bare, eager = med(lat["Tagger.tag"]), med(lat["bare session.run"]), med(lat["torch eager"])
    tps, frac = thr["tag_batch"]["tokens_per_s"], thr["tag_batch"]["roofline_fraction"]
    stream = med(st["torch eager"]) / med(st["runtime generate"])
    return [
        ("cold start >= 6x faster than the torch paths", f"{wall:.1f}x", wall >= 6),
        ("cold start >= 2.5x less peak memory", f"{rss:.1f}x", rss >= 2.5),
        ("`tag` within 1.3x of a bare session.run", f"{tag / bare:.2f}x", tag / bare <= 1.3),
        ("`tag` >= 2x faster than eager torch", f"{eager / tag:.1f}x", eager / tag >= 2),
        ("`tag_batch` >= 50k tokens/s, one thread", f"{tps / 1000:.1f}k tokens/s", tps >= 50_000),
        ("`tag_batch` >= 50% of the sgemm roofline", f"{100 * frac:.0f}%", frac >= 0.5),
        ("streaming >= 5x faster than eager torch", f"{stream:.1f}x", stream >= 5),
    ]


def markdown(r: dict) -> str:
    c, lat, thr, st, q = r["cold_start"], r["latency_us"], r["throughput"], r["streaming_us_per_char"], r["int8"]
    rt = c["runtime"]
    lines = [f"Measured {r['date']} on {r['machine']} ({r['mode']} mode), one intra-op thread everywhere; "
             "median [min-max] of repeated runs after warm-up.", "",
             "| target | this run | met |", "| --- | --- | --- |"]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets(r)]
    lines += ["", "| 1. cold start (import, load pos-ewt, tag one sentence) | wall s | peak RSS MiB "
              "| runtime is faster | uses less memory |", "| --- | --- | --- | --- | --- |"]
    for k, v in c.items():
        w, m = v["wall_s"], v["peak_rss_mib"]
        lines.append(f"| {k} | {w['median']:.3f} [{w['min']:.3f}-{w['max']:.3f}] | {m['median']:.0f} "
                     f"[{m['min']:.0f}-{m['max']:.0f}] | {ratio(w['median'], rt['wall_s']['median'])} | "
                     f"{ratio(m['median'], rt['peak_rss_mib']['median'])} |")
    lines += ["", "| 2. latency, one 17-token sentence, batch 1 | µs | vs bare session.run |", "| --- | --- | --- |"]
    for k, v in lat.items():
        lines.append(f"| {k} | {v['median']:.0f} [{v['min']:.0f}-{v['max']:.0f}] | "
                     f"{v['median'] / lat['bare session.run']['median']:.2f}x |")
    lines += ["", f"| 3. throughput, EWT dev ({thr['tokens']} tokens) | tokens/s | GFLOP/s | of the roofline "
              f"| of the roofline, needed FLOPs |", "| --- | --- | --- | --- | --- |"]
    for k, v in thr.items():
        if isinstance(v, dict) and "tokens_per_s" in v:
            lines.append(f"| {k} | {v['tokens_per_s']:.0f} [{v['tokens_per_s_min']:.0f}-{v['tokens_per_s_max']:.0f}] "
                         f"| {v['gflops']:.1f} | {100 * v['roofline_fraction']:.0f}% "
                         f"| {100 * v['needed_roofline_fraction']:.0f}% |")
    gemm = ", ".join(f"{n}: {g:.1f}" for n, g in thr["sgemm_gflops_by_size"].items())
    lines += ["", f"Roofline: numpy sgemm on one thread, best of square sizes ({gemm} GFLOP/s) = "
              f"{thr['sgemm_gflops_1thread']:.1f} GFLOP/s. FLOPs per token counted from the config: "
              f"{thr['flops_per_token'] / 1e6:.2f} M (every token's {thr['chars'] / thr['tokens']:.2f} characters "
              "through the char BiLSTM; the word BiLSTM and output alone are "
              f"{thr['word_flops_per_token'] / 1e6:.2f} M); "
              f"needed: {thr['needed_flops_per_token'] / 1e6:.2f} M, each batch's distinct spellings once "
              f"({thr['distinct_spelling_chars']} of {thr['chars']} characters).", "",
              "| 4. streaming, char-shakespeare greedy | µs per character | runtime is faster |", "| --- | --- | --- |"]
    for k, v in st.items():
        lines.append(f"| {k} | {v['median']:.0f} [{v['min']:.0f}-{v['max']:.0f}] | "
                     f"{ratio(v['median'], st['runtime generate']['median'])} |")
    lines += ["", "| 5. int8 vs fp32 (pos-ewt) | fp32 | int8 |", "| --- | --- | --- |",
              f"| size | {q['fp32_bytes'] / 1e6:.2f} MB | {q['int8_bytes'] / 1e6:.2f} MB |",
              f"| latency (tag, 17 tokens) | {q['fp32_latency_us']:.0f} µs | {q['int8_latency_us']:.0f} µs |",
              f"| throughput (tag_batch) | {q['fp32_tokens_per_s']:.0f} tok/s | {q['int8_tokens_per_s']:.0f} tok/s |",
              f"| accuracy (recorded at export) | {q['accuracy']} | |", ""]
    lines += ["| 6. export + verify (train from the committed checkpoint or seed recipe, export, verify) | seconds |",
              "| --- | --- |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in r["export_s"].items()]
    return "\n".join(lines) + "\n"


TORCH_PATHS = ("torch eager", "TorchScript")


def chart(r: dict, path: Path) -> None:
    from export.zoo.plots import png, pyplot

    fig, axes = pyplot().subplots(1, 5, figsize=(19, 3.6), dpi=100)
    panels = [
        ("cold start (s), lower is better", {k: v["wall_s"]["median"] for k, v in r["cold_start"].items()}),
        ("cold start peak RSS (MiB), lower", {k: v["peak_rss_mib"]["median"] for k, v in r["cold_start"].items()}),
        ("tag 17 tokens, batch 1 (µs), lower", {k: v["median"] for k, v in r["latency_us"].items()}),
        ("EWT dev (tokens/s), higher is better",
         {k: v["tokens_per_s"] for k, v in r["throughput"].items() if isinstance(v, dict) and "tokens_per_s" in v}),
        ("streaming (µs / char), lower", {k: v["median"] for k, v in r["streaming_us_per_char"].items()}),
    ]
    for ax, (title, data) in zip(axes, panels):
        colors = ["tab:gray" if k in TORCH_PATHS else "tab:green" for k in data]
        ax.barh(list(data), list(data.values()), color=colors)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.tick_params(labelsize=8)
    fig.suptitle("seqedge runtime (green) vs torch (gray), one thread, medians", fontsize=11)
    path.write_bytes(png(fig))


def machine() -> str:
    import onnxruntime
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return (f"{cpu} ({platform.machine()}, {os.cpu_count()} cores), Python {platform.python_version()}, "
            f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, numpy {np.__version__}")


README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(md: str) -> None:
    """Replace the README's results between the bench markers with this run's table."""
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"error: {README} has no {START} ... {END} section to update")
    head, rest = text.split(START, 1)
    README.write_text(head + START + "\n" + md + rest[rest.index(END):], encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="about a minute: fewer repeats, smaller inputs (smoke test)")
    p.add_argument("--out", type=Path, help="where results.json, results.md and chart.png go (default: benchmarks/, "
                                            "or benchmarks/quick/ with --quick, so a smoke run never replaces results)")
    p.add_argument("--readme", action="store_true", help="also put the results table into README.md")
    args = p.parse_args(argv)
    quick = args.quick
    args.out = args.out or (OUT / "quick" if quick else OUT)
    if args.readme and quick:
        p.error("--readme takes a full run's figures, not --quick ones")
    for a in (POS, LM):
        if not (a / "manifest.json").exists():
            print(f"error: {a} missing; run `make run` first", file=sys.stderr)
            return 1
    from export.zoo.registry import REGISTRY

    steps = [("cold start", "cold_start", lambda: cold_start(2 if quick else 7)),
             ("latency", "latency_us", lambda: latency(50 if quick else 500)),
             ("throughput", "throughput", lambda: throughput(1 if quick else 5, 300 if quick else None)),
             ("streaming", "streaming_us_per_char", lambda: streaming(200 if quick else 2000, 2 if quick else 5)),
             ("export", "export_s", lambda: export_times(["lstm-tutorial"] if quick else list(REGISTRY)))]
    r = {"date": time.strftime("%Y-%m-%d"), "mode": "quick" if quick else "full", "machine": machine()}
    started = time.perf_counter()
    for label, key, fn in steps:
        t = time.perf_counter()
        print(f"[bench] {label} ...", file=sys.stderr, flush=True)
        r[key] = fn()
        print(f"[bench] {label}: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    r["int8"] = int8_vs_fp32(r["latency_us"], r["throughput"])
    r["bench_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(r, indent=2) + "\n")
    md = markdown(r)
    (args.out / "results.md").write_text(md)
    chart(r, args.out / "chart.png")
    if args.readme:
        update_readme(md)
    print(md)
    print(f"[bench] done in {r['bench_s']:.0f}s: {args.out / 'results.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
