"""What an edge user pays: seqedge's runtime side by side with eager torch and TorchScript, in one run.

    make bench                            # full run (< 10 min): results.json, results.md, chart.png + docs table
    python benchmarks/bench.py --quick    # about a minute: fewer repeats, smaller inputs (the test suite's smoke test)

Every figure: same inputs, one intra-op thread everywhere (onnxruntime's session and torch.set_num_threads(1))
except the threads section (2 against 1), warm-up first, then the median of repeated runs with min and max. No
thresholds are asserted anywhere: the targets are read from the table (see docs/benchmarks.md).

The roofline is onnxruntime's own MatMul (MatMulInteger for int8) on one thread, the kernels the runtime runs,
timed at the models' own GEMM shapes (read from the artifacts) and at large squares; numpy's sgemm is reported
beside it, run with the OpenBLAS variables unset, with the kernel OpenBLAS picked. The machine's load is read
before, during and after the run; a run on a busy machine says so on results.md's first line and is refused
for docs/benchmarks.md (unless --force-docs).
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
# The BLAS variables as this process found them, before the defaults below: the report names them.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OPENBLAS_VERBOSE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
ENV_AT_START = {k: os.environ.get(k) for k in BLAS_ENV}
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


@functools.lru_cache(maxsize=None)
def load_lm(variant: str = "fp32", threads: int = 1):
    """char-shakespeare through the runtime."""
    import runtime

    return runtime.load(LM, variant=variant, intra_op_threads=threads)


@functools.lru_cache(maxsize=None)
def load_tagger(threads: int):
    import runtime

    return runtime.load(POS, intra_op_threads=threads)


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
    return us(out)


def us(res: dict, per: float = 1.0) -> dict:
    """side_by_side's seconds as microseconds (per ``per`` items)."""
    return {k: {s: v / per * 1e6 if s != "n" else v for s, v in d.items()} for k, d in res.items()}


@functools.lru_cache(maxsize=None)
def dev_sentences(limit: int | None) -> list[list[str]]:
    from export.zoo.ewt import read_conllu

    sents = [w for w, _ in read_conllu(DEV)]
    return sents[:limit] if limit else sents


@functools.lru_cache(maxsize=None)
def dev_feeds(limit: int | None) -> list[dict]:
    """The graph inputs tag_batch builds for EWT dev: sentences sorted by length, BATCH_SENTENCES per run."""
    from runtime.tagger import BATCH_SENTENCES

    tagger, sents = load_backends()[0], dev_sentences(limit)
    order = sorted(range(len(sents)), key=lambda i: len(sents[i]), reverse=True)
    return [tagger.inputs([sents[i] for i in order[s:s + BATCH_SENTENCES]])
            for s in range(0, len(order), BATCH_SENTENCES)]


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
    """All of EWT dev through tag_batch (tokens/s), and the same batches through eager torch. The fractions of
    the MatMul roofline are added once the roofline is measured (``tag_roofline``)."""
    tagger, q, bk = load_backends()
    sents = dev_sentences(limit)
    tokens = sum(len(s) for s in sents)
    from runtime.tagger import word_chars

    feeds = dev_feeds(limit)
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
    out = {"tokens": tokens, "sentences": len(sents), "chars": chars, "distinct_spelling_chars": distinct,
           "flops_per_token": fpt, "needed_flops_per_token": needed / tokens,
           "word_flops_per_token": word_flops_per_token(cfg)}
    for k, r in res.items():
        tps = tokens / r["median"]
        out[k] = {"tokens_per_s": tps, "tokens_per_s_min": tokens / r["max"], "tokens_per_s_max": tokens / r["min"],
                  "gflops": tps * fpt / 1e9, "needed_gflops": tps * needed / tokens / 1e9}
    return out


def streaming(n_chars: int, repeats: int) -> dict:
    """Microseconds per generated character (greedy, state carried), char-shakespeare, one stream."""
    import torch

    from export.zoo.build import subject_for

    torch.set_num_threads(1)
    lm, q = load_lm("fp32"), load_lm("int8")
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

    def bare_loop(lm=lm):  # the floor: session.run per character, greedy pick, nothing else
        x, state = first, {i: lm.zero_state(i, 1) for i, _ in lm.io.state}
        for _ in range(n_chars):
            logits, h, c = lm.session.run(lm.output_names, {"chars": x, **state})
            state, x = {"h_0": h, "c_0": c}, logits[-1:].argmax(-1)

    bk = subject_for(LM)  # eager torch rebuilt from the config, TorchScript from model.pt
    fns = {
        "runtime generate": lambda: lm.generate("", max_chars=n_chars),
        "bare session.run loop": bare_loop,
        "torch eager": torch_loop(bk.modules["eager"]),
        "TorchScript": torch_loop(bk.modules["torchscript"]),
        "runtime generate (int8)": lambda: q.generate("", max_chars=n_chars),
        "bare session.run loop (int8)": lambda: bare_loop(q),
    }
    return us(side_by_side(fns, repeats, warmup=1), n_chars)


STREAMS = 64


def many_streams(steps: int, repeats: int) -> dict:
    """``step_streams`` over 64 greedy streams (one batched session.run per step): characters/s = 64 x steps / s,
    beside a bare session.run at batch 64 (states stacked by hand, greedy pick) as its floor."""
    out = {}
    for variant in ("fp32", "int8"):
        lm = load_lm(variant)
        streams = [lm.stream() for _ in range(STREAMS)]
        for s in streams:
            s.feed("")
        x = np.zeros((1, STREAMS), dtype=np.int64)
        state = {i: lm.zero_state(i, STREAMS) for i, _ in lm.io.state}

        def bare(x=x, state=state, lm=lm):
            for _ in range(steps):
                logits, h, c = lm.session.run(lm.output_names, {"chars": x, **state})
                state, x = {"h_0": h, "c_0": c}, logits[-1:].argmax(-1)

        res = side_by_side({"step_streams": lambda lm=lm, streams=streams: [lm.step_streams(streams)
                                                                             for _ in range(steps)],
                            "bare session.run, batch 64": bare}, repeats, warmup=1)
        out[variant] = {k: {"chars_per_s": STREAMS * steps / v["median"], "chars_per_s_min": STREAMS * steps / v["max"],
                            "chars_per_s_max": STREAMS * steps / v["min"]} for k, v in res.items()}
    out["streams"], out["steps"] = STREAMS, steps
    return out


def _user_models(folder: Path) -> dict:
    """Two user-style models, exported here as a user would (export_module, ONNX only): a word-level LSTM language
    model with explicit state, and a GRU classifier over padded batches with lengths (pack_padded_sequence)."""
    import warnings

    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    import export
    import runtime

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.rnn, self.decoder = nn.Embedding(1000, 64), nn.LSTM(64, 128, 2), nn.Linear(128, 1000)

        def forward(self, tokens, h_0, c_0):
            out, (h, c) = self.rnn(self.encoder(tokens), (h_0, c_0))
            return self.decoder(out), h, c

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding, self.rnn, self.fc = nn.Embedding(1000, 64, padding_idx=0), nn.GRU(64, 64), nn.Linear(64, 4)

        def forward(self, text, text_lengths):
            _, hidden = self.rnn(pack_padded_sequence(self.embedding(text), text_lengths, enforce_sorted=False))
            return self.fc(hidden[-1])

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = export.export_module(LM().eval(), (torch.randint(0, 1000, (8, 2)), torch.zeros(2, 2, 128),
                                                torch.zeros(2, 2, 128)), folder / "user-lm", ["tokens", "h_0", "c_0"],
                                  {"tokens": {0: "time", 1: "batch"}, "h_0": {1: "batch"}, "c_0": {1: "batch"}},
                                  output_names=["logits", "h_n", "c_n"], formats=[], force=True)
        cls = export.export_module(Classifier().eval(), (torch.randint(1, 1000, (12, 3)), torch.tensor([12, 7, 3])),
                                   folder / "user-classifier", ["text", "text_lengths"],
                                   {"text": {0: "time", 1: "batch"}, "text_lengths": {0: "batch"}},
                                   lengths="text_lengths", output_names=["scores"], formats=[], force=True)
    return {"user LM": runtime.load(lm), "user classifier": runtime.load(cls)}


def _recorded_feeds(m, call) -> list[dict]:
    """The feeds ``call`` hands to session.run (through ``Model._run``): what a bare loop runs for comparison."""
    feeds, real = [], m._run
    m._run = lambda feed: (feeds.append(dict(feed)), real(feed))[1]
    try:
        call()
    finally:
        del m._run
    return feeds


def _floor_run(m, feed: dict) -> tuple[list[dict], dict]:
    """A bare session.run on ``feed`` plus the least any call taking and returning one dict per item (sequence or
    stream, one row each) must add: each item's rows copied into the stacked inputs, and one dict of views per
    item out (made by one iteration over the batch axis in C). The bound for run_batch and run_streams. Returns
    the items' dicts and the run's outputs."""
    stacked = {}
    for spec in m.io.inputs:
        arr = feed[spec.name]
        if "batch" not in spec.shape:
            stacked[spec.name] = arr
            continue
        axis, buf = spec.shape.index("batch"), np.empty_like(arr)
        rows, into = np.moveaxis(arr, axis, 0), np.moveaxis(buf, axis, 0)
        for k in range(rows.shape[0]):
            into[k] = rows[k]
        stacked[spec.name] = buf
    names = m.output_names
    out = m.session.run(names, stacked)
    parts = [list(np.moveaxis(o, m.io.output(n).shape.index("batch"), 0)) for n, o in zip(names, out)]
    return [dict(zip(names, values)) for values in zip(*parts)], dict(zip(names, out))


def serving(repeats: int, steps: int, n_seqs: int) -> dict:
    """``Model.stream().run``, ``run_batch`` and ``run_streams`` beside bare ``session.run`` on the very feeds they
    build (recorded from ``Model._run``), side by side, one thread: the runtime's own overhead."""
    import runtime
    import runtime.stream

    out: dict = {"stream_us_per_call": {}, "run_batch": {}, "run_streams": {}, "steps": steps, "sequences": n_seqs}
    with tempfile.TemporaryDirectory() as tmp:
        user = _user_models(Path(tmp))
        lm, lstm = load_lm("fp32"), runtime.load(ARTIFACTS / "lstm-2layer")
        rng = np.random.default_rng(0)
        chunks = {"char-shakespeare (1 char per call)": (lm, {"chars": np.array([[5]], np.int64)}),
                  "lstm-2layer (16 steps per call)": (lstm, {"input": rng.standard_normal((16, 1, 3), np.float32)}),
                  "user LM (1 token per call)": (user["user LM"], {"tokens": np.array([[7]], np.int64)})}
        for name, (m, chunk) in chunks.items():
            s = m.stream() if not hasattr(m, "symbols") else runtime.stream.Stream(m)

            def streamed(s=s, chunk=chunk):
                for _ in range(steps):
                    s.run(**chunk)

            def bare(m=m, chunk=chunk):
                state = {i: m.zero_state(i, 1) for i, _ in m.io.state}
                for _ in range(steps):
                    res = dict(zip(m.output_names, m.session.run(m.output_names, {**chunk, **state})))
                    state = {i: res[o] for i, o in m.io.state}

            res = us(side_by_side({"stream.run": streamed, "bare session.run": bare}, repeats, warmup=1), steps)
            out["stream_us_per_call"][name] = {**res, "ratio": res["stream.run"]["median"]
                                               / res["bare session.run"]["median"]}
        lengths = rng.integers(1, 41, n_seqs)
        batches = {"lstm-2layer (equal lengths grouped)":
                   (lstm, [{"input": rng.standard_normal((n, 1, 3), np.float32)} for n in lengths]),
                   "user classifier (padded, lengths)":
                   (user["user classifier"], [{"text": rng.integers(1, 1000, n)} for n in lengths])}
        for name, (m, seqs) in batches.items():
            feeds = _recorded_feeds(m, lambda m=m, seqs=seqs: m.run_batch(seqs))
            names = m.output_names
            res = side_by_side({"run_batch": lambda m=m, seqs=seqs: m.run_batch(seqs),
                                "bare session.run": lambda m=m, feeds=feeds: [m.session.run(names, f) for f in feeds],
                                "floor": lambda m=m, feeds=feeds: [_floor_run(m, f) for f in feeds]},
                               repeats, warmup=1)
            out["run_batch"][name] = {k: {"seqs_per_s": n_seqs / v["median"]} for k, v in res.items()}
            out["run_batch"][name]["ratio"] = res["bare session.run"]["median"] / res["run_batch"]["median"]
            out["run_batch"][name]["floor_ratio"] = res["bare session.run"]["median"] / res["floor"]["median"]
            out["run_batch"][name]["session_runs"] = len(feeds)
        for name, m, chunk in (("char-shakespeare", lm, {"chars": np.array([[5]], np.int64)}),
                               ("user LM", user["user LM"], {"tokens": np.array([[7]], np.int64)})):
            streams = [runtime.stream.Stream(m) for _ in range(STREAMS)]
            pairs = [(s, chunk) for s in streams]
            feed = _recorded_feeds(m, lambda m=m, pairs=pairs: m.run_streams(pairs))[0]

            def bare_streams(m=m, feed=feed):
                state = {i: feed[i] for i, _ in m.io.state}
                for _ in range(steps):
                    res = dict(zip(m.output_names, m.session.run(m.output_names, {**feed, **state})))
                    state = {i: res[o] for i, o in m.io.state}

            def floor_streams(m=m, feed=feed):
                state = {i: feed[i] for i, _ in m.io.state}
                for _ in range(steps):
                    res = _floor_run(m, {**feed, **state})[1]
                    state = {i: res[o] for i, o in m.io.state}

            res = side_by_side({"run_streams": lambda m=m, pairs=pairs: [m.run_streams(pairs) for _ in range(steps)],
                                f"bare session.run, batch {STREAMS}": bare_streams, "floor": floor_streams},
                               repeats, warmup=1)
            per = {k: {"steps_per_s": steps / v["median"]} for k, v in res.items()}
            per["ratio"] = res[f"bare session.run, batch {STREAMS}"]["median"] / res["run_streams"]["median"]
            per["floor_ratio"] = res[f"bare session.run, batch {STREAMS}"]["median"] / res["floor"]["median"]
            out["run_streams"][name] = per
    out["streams"] = STREAMS
    return out


def step_profile(runs: int) -> dict:
    """Where one streaming step's time goes (char-shakespeare, batch 1): onnxruntime's own profiler, per operator
    type, microseconds per step (the sum over that type's nodes; median over ``runs`` steps), and its whole run.
    The profiler adds its own cost between nodes, so its run is slower than an unprofiled one."""
    import onnxruntime as ort

    from runtime.model import session_options

    out = {}
    for variant in ("fp32", "int8"):
        lm = load_lm(variant)
        with tempfile.TemporaryDirectory() as tmp:
            opts = session_options()
            opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tmp) / "step")
            sess = ort.InferenceSession(str(lm.onnx_path), opts, providers=["CPUExecutionProvider"])
            feed = {"chars": np.array([[lm.bos_id]], dtype=np.int64), **{i: lm.zero_state(i, 1) for i, _ in lm.io.state}}
            for _ in range(runs):
                sess.run(None, feed)
            events = json.loads(Path(sess.end_profiling()).read_text())
        # model_run is logged when a run ends, after its nodes: node times belong to the next model_run event
        runs_ops: list[dict] = [{}]
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                op = e["args"]["op_name"]
                runs_ops[-1][op] = runs_ops[-1].get(op, 0) + e["dur"]
            elif e.get("name") == "model_run":
                runs_ops[-1]["model_run"] = e["dur"]
                runs_ops.append({})
        done = [d for d in runs_ops if "model_run" in d][runs // 10:]  # the first tenth warms up
        ops = sorted({k for d in done for k in d})
        out[variant] = {k: statistics.median(d.get(k, 0) for d in done) for k in ops}
    return out


def ort_format(repeats: int) -> dict:
    """``runtime.load`` of each model file, .onnx against its ORT-format .ort (what a minimal onnxruntime build
    loads): milliseconds (SHA-256 check, reading, session creation), median of ``repeats``, and the file sizes."""
    import runtime
    from runtime.artifact import model_file, read_manifest

    out = {}
    for folder in (POS, LM):
        files = read_manifest(folder).files
        for variant in ("fp32", "int8"):
            if model_file(variant, "ort") not in files:
                continue
            fns = {fmt: (lambda fmt=fmt: runtime.load(folder, variant=variant, format=fmt)) for fmt in ("onnx", "ort")}
            res = side_by_side(fns, repeats, warmup=2)
            out[f"{folder.name} {variant}"] = {
                fmt: {"load_ms": {k: v * 1e3 if k != "n" else v for k, v in res[fmt].items()},
                      "bytes": (folder / model_file(variant, fmt)).stat().st_size} for fmt in ("onnx", "ort")}
    return out


def threads(repeats: int, limit: int | None, n_chars: int) -> dict:
    """intra_op_threads=2 against 1, side by side: tag_batch on EWT dev (tokens/s), tag on 17 tokens (µs) and
    char-shakespeare generate (µs per character)."""
    sents = dev_sentences(limit)
    tokens = sum(len(s) for s in sents)
    t1, t2 = load_tagger(1), load_tagger(2)
    l1, l2 = load_lm("fp32", 1), load_lm("fp32", 2)
    out = {}
    r = side_by_side({1: lambda: t1.tag_batch(sents), 2: lambda: t2.tag_batch(sents)}, repeats, warmup=1)
    out["tag_batch, EWT dev (tokens/s, higher is better)"] = {str(k): tokens / v["median"] for k, v in r.items()}
    r = side_by_side({1: lambda: t1.tag(SENTENCE), 2: lambda: t2.tag(SENTENCE)}, repeats * 20)
    out["tag, 17 tokens (µs, lower is better)"] = {str(k): v["median"] * 1e6 for k, v in r.items()}
    r = side_by_side({1: lambda: l1.generate("", max_chars=n_chars), 2: lambda: l2.generate("", max_chars=n_chars)},
                     repeats, warmup=1)
    out["generate (µs per char, lower is better)"] = {str(k): v["median"] / n_chars * 1e6 for k, v in r.items()}
    for k, v in out.items():  # > 1: the second thread pays
        v["speedup"] = v["2"] / v["1"] if "higher" in k else v["1"] / v["2"]
    return out


# ---- the roofline: onnxruntime's MatMul at the models' own shapes --------------------------------------------

def gemm_session(shapes: list[tuple[int, int, int]], int8: bool):
    """A graph of one MatMul (MatMulInteger, uint8 x int8 -> int32, for int8) per (m, k, n) in ``shapes``, each
    node with its own constant weights (prepacked by onnxruntime, as the LSTM's are), inputs shared per (m, k),
    outputs bound once to preallocated arrays: a run is the GEMMs and onnxruntime's per-node dispatch, nothing
    else. One intra-op thread, the runtime's own session options."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from runtime.model import session_options

    rng = np.random.default_rng(0)
    inputs, feeds, inits, nodes, outputs = {}, {}, [], [], []
    for i, (m, k, n) in enumerate(shapes):
        a = f"A_{m}x{k}"
        if a not in inputs:
            inputs[a] = helper.make_tensor_value_info(a, TensorProto.UINT8 if int8 else TensorProto.FLOAT, [m, k])
            feeds[a] = (rng.integers(0, 256, (m, k), dtype=np.uint8) if int8
                        else rng.standard_normal((m, k), dtype=np.float32))
        w = rng.integers(-127, 128, (k, n), dtype=np.int8) if int8 else rng.standard_normal((k, n), dtype=np.float32)
        inits.append(numpy_helper.from_array(w, f"B{i}"))
        if int8:
            nodes.append(helper.make_node("MatMulInteger", [a, f"B{i}", "a_zero_point"], [f"Y{i}"]))
        else:
            nodes.append(helper.make_node("MatMul", [a, f"B{i}"], [f"Y{i}"]))
        outputs.append(helper.make_tensor_value_info(f"Y{i}", TensorProto.INT32 if int8 else TensorProto.FLOAT,
                                                     [m, n]))
    if int8:
        inits.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zero_point"))
    graph = helper.make_graph(nodes, "gemms", list(inputs.values()), outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])
    binding = sess.io_binding()
    for name, arr in feeds.items():
        binding.bind_cpu_input(name, arr)
    keep = []
    for i, (m, k, n) in enumerate(shapes):
        keep.append(ort.OrtValue.ortvalue_from_numpy(np.empty((m, n), np.int32 if int8 else np.float32)))
        binding.bind_ortvalue_output(f"Y{i}", keep[-1])
    return sess, binding, (feeds, keep)  # the arrays the binding points at stay alive with it


def time_gemms(shapes: list[tuple[int, int, int]], int8: bool, repeats: int, budget_s: float) -> float:
    """Best seconds of one run of ``gemm_session(shapes)``: a ceiling, so the best, not the median; at least
    3 runs, fewer than ``repeats`` when they would take more than ``budget_s``."""
    sess, binding, _keep = gemm_session(shapes, int8)
    t = time.perf_counter()
    sess.run_with_iobinding(binding)
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(max(3, min(repeats, int(budget_s / max(first, 1e-6))))):
        t = time.perf_counter()
        sess.run_with_iobinding(binding)
        best = min(best, time.perf_counter() - t)
    return best


def gemm_rate(m: int, k: int, n: int, int8: bool, repeats: int, budget_s: float) -> float:
    """GFLOP/s (GOP/s for int8) of one (m x k) @ (k x n) on one thread. Small GEMMs are repeated as several
    nodes in one run (up to 2e7 FLOPs a run, weights kept to about 8 MB: in L3, as a model's are) so that the
    per-run cost of session.run does not count as GEMM time."""
    flops, wbytes = 2 * m * k * n, k * n * (1 if int8 else 4)
    copies = int(max(1, min(16, -(-2e7 // flops), 8e6 // wbytes)))
    return copies * flops / time_gemms([(m, k, n)] * copies, int8, repeats, budget_s) / 1e9


def initializers(model) -> dict:
    """Shapes of the graph's constant tensors by name: initializers, Constant nodes' values, and Identity
    nodes' outputs of either (the exporter shares weights through those)."""
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    dims[node.output[0]] = list(a.t.dims)
        elif node.op_type == "Identity" and node.input[0] in dims:
            dims[node.output[0]] = dims[node.input[0]]
    return dims


def tagger_gemms(limit: int | None) -> list[dict]:
    """The GEMMs pos-ewt's graph runs on EWT dev, read from its LSTM and MatMul weights (W (D, 4H, in),
    R (D, 4H, H)) and the dev batches tag_batch builds: per LSTM group the input projection, one GEMM over every
    step's rows (T x B words, or C x N characters of a spelling bucket), and the recurrent step (B or N rows) @
    (H x 4H) run T (C) times; the output layer. ``flops`` is what the graph computes (padding included),
    ``needed`` what the tokens need (each batch's distinct spellings once, no padding); ``m`` is the
    FLOP-weighted median row count, the shape timed."""
    import onnx

    tagger = load_backends()[0]
    cfg = tagger.manifest.config
    model = onnx.load(str(POS / "model.onnx"))
    dims = initializers(model)
    groups: dict[tuple[int, int], int] = {}  # (input size, H) -> directions over all nodes
    out_kn = None
    for node in model.graph.node:
        if node.op_type == "LSTM":
            (d, _, inp), h = dims[node.input[1]], dims[node.input[2]][2]
            groups[(inp, h)] = groups.get((inp, h), 0) + d
        elif node.op_type == "MatMul" and node.input[1] in dims:
            out_kn = tuple(dims[node.input[1]])
    n_buckets = len(cfg.get("char_buckets", [])) + 1
    kinds: dict[str, dict] = {}

    def add(name, k, n, m, flops, needed):
        e = kinds.setdefault(name, {"kind": name, "k": k, "n": n, "ms": [], "flops": 0.0, "needed": 0.0})
        e["ms"].append((m, flops))
        e["flops"] += flops
        e["needed"] += needed

    for f in dev_feeds(limit):
        t, b = f["words"].shape
        tokens = int(f["lengths"].sum()) if "lengths" in f else t * b
        for (inp, h), dirs in groups.items():
            if inp == cfg.get("char_dim"):
                per = dirs // n_buckets  # directions per spelling bucket
                for key in sorted(k for k in f if k.startswith("chars_")):
                    rows, c = f[key].shape
                    nz = int((f[key] != 0).sum())
                    add(f"char LSTM input ({inp}->{4 * h})", inp, 4 * h, rows * c, per * 2 * rows * c * inp * 4 * h,
                        per * 2 * nz * inp * 4 * h)
                    add(f"char LSTM recurrent ({h}->{4 * h})", h, 4 * h, rows, per * c * 2 * rows * h * 4 * h,
                        per * 2 * nz * h * 4 * h)
            else:
                add(f"word LSTM input ({inp}->{4 * h})", inp, 4 * h, t * b, dirs * 2 * t * b * inp * 4 * h,
                    dirs * 2 * tokens * inp * 4 * h)
                add(f"word LSTM recurrent ({h}->{4 * h})", h, 4 * h, b, dirs * t * 2 * b * h * 4 * h,
                    dirs * 2 * tokens * h * 4 * h)
        if out_kn:
            k, n = out_kn
            add(f"output layer ({k}->{n})", k, n, t * b, 2 * t * b * k * n, 2 * tokens * k * n)
    for e in kinds.values():  # the FLOP-weighted median row count
        ms, half, acc = sorted(e.pop("ms")), e["flops"] / 2, 0.0
        for m, fl in ms:
            acc += fl
            if acc >= half:
                e["m"] = m
                break
    return list(kinds.values())


def charlm_gemms(batch: int) -> list[tuple[int, int, int]]:
    """One step of char-shakespeare at ``batch`` streams: per LSTM layer (batch x in) @ (in x 4H) and
    (batch x H) @ (H x 4H), then the output layer, read from model.onnx."""
    import onnx

    model = onnx.load(str(LM / "model.onnx"))
    dims = initializers(model)
    shapes = []
    for node in model.graph.node:
        if node.op_type == "LSTM":
            (d, four_h, inp), h = dims[node.input[1]], dims[node.input[2]][2]
            shapes += [(batch, inp, four_h), (batch, h, four_h)] * d
        elif node.op_type == "MatMul" and node.input[1] in dims:
            shapes.append((batch, *dims[node.input[1]]))
    return shapes


def weight_bytes(path: Path) -> dict:
    """Bytes of weights one step reads: every initializer, but of an embedding table (a Gather's data) only
    the row it looks up."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    tables = {n.input[0] for n in model.graph.node if n.op_type == "Gather"}
    total = 0
    for i in model.graph.initializer:
        size = int(np.prod(i.dims, dtype=np.int64)) * np.dtype(helper.tensor_dtype_to_np_dtype(i.data_type)).itemsize
        total += size // i.dims[0] if i.name in tables and i.dims else size
    return {"bytes_per_step": total, "file_bytes": path.stat().st_size}


def matmul_roofline(quick: bool, limit: int | None) -> dict:
    """onnxruntime's MatMul (and MatMulInteger) on one thread: GFLOP/s at large squares and at the models' own
    GEMM shapes; char-shakespeare's whole step (its GEMMs alone, one run) at batch 1 and 64."""
    repeats, budget = (5, 0.3) if quick else (15, 1.5)
    squares = (256, 512) if quick else (512, 1024, 2048)
    out: dict = {"squares": {}, "pos-ewt": [], "char-shakespeare": {}}
    for n in squares:
        out["squares"][str(n)] = {"fp32": gemm_rate(n, n, n, False, repeats, budget),
                                  "int8": gemm_rate(n, n, n, True, repeats, budget)}
    out["square_best"] = {v: max(d[v] for d in out["squares"].values()) for v in ("fp32", "int8")}
    for e in tagger_gemms(limit):
        e["gflops"] = {v: gemm_rate(e["m"], e["k"], e["n"], v == "int8", repeats, budget) for v in ("fp32", "int8")}
        out["pos-ewt"].append(e)
    step = charlm_gemms(1)
    out["char-shakespeare"]["shapes"] = {
        f"{m}x{k}x{n}": {v: gemm_rate(m, k, n, v == "int8", repeats, budget) for v in ("fp32", "int8")}
        for m, k, n in dict.fromkeys(step)}
    for batch in (1, STREAMS):
        shapes = charlm_gemms(batch)
        out["char-shakespeare"][f"step_us_batch_{batch}"] = {
            v: time_gemms(shapes, v == "int8", repeats * 20, budget) * 1e6 for v in ("fp32", "int8")}
    out["char-shakespeare"]["step_flops_batch_1"] = sum(2 * m * k * n for m, k, n in step)
    out["char-shakespeare"]["step_gemm_weight_bytes"] = {
        "fp32": sum(4 * k * n for _, k, n in step), "int8": sum(k * n for _, k, n in step)}
    return out


def tag_roofline(r: dict) -> dict:
    """tag_batch's fraction of the MatMul roofline: the seconds the GEMMs of one EWT dev pass take at MatMul's
    measured rate for each of the model's shapes (needed FLOPs; graph FLOPs, padding included), against the
    measured seconds; and the same FLOPs at the large-square best."""
    thr, roof = r["throughput"], r["roofline"]
    out = {}
    for row, variant in (("tag_batch", "fp32"), ("bare session.run", "fp32"), ("torch eager", "fp32"),
                         ("tag_batch (int8)", "int8")):
        if row not in thr:
            continue
        seconds = thr["tokens"] / thr[row]["tokens_per_s"]
        kinds = roof["pos-ewt"]
        needed_s = sum(e["needed"] / (e["gflops"][variant] * 1e9) for e in kinds)
        graph_s = sum(e["flops"] / (e["gflops"][variant] * 1e9) for e in kinds)
        needed = sum(e["needed"] for e in kinds)
        out[row] = {"variant": variant,
                    "of_model_shapes": needed_s / seconds,
                    "of_model_shapes_graph_flops": graph_s / seconds,
                    "of_square_best": needed / (roof["square_best"][variant] * 1e9) / seconds,
                    "roofline_tokens_per_s": thr["tokens"] / needed_s,
                    "model_shapes_gflops": needed / needed_s / 1e9}
    return out


def numpy_sgemm(sizes: tuple[int, ...], repeats: int) -> dict:
    """numpy's sgemm on one thread in a fresh process with the OpenBLAS variables unset (and, where this
    process found OPENBLAS_CORETYPE set, once more with it), with the kernel OpenBLAS picked."""
    runs = {}
    cores = {"OPENBLAS_* unset": None}
    if ENV_AT_START["OPENBLAS_CORETYPE"]:
        cores[f"OPENBLAS_CORETYPE={ENV_AT_START['OPENBLAS_CORETYPE']}"] = ENV_AT_START["OPENBLAS_CORETYPE"]
    for label, core in cores.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        if core:
            env["OPENBLAS_CORETYPE"] = core
        proc = subprocess.run([sys.executable, "-c", NUMPY_SGEMM, json.dumps(list(sizes)), str(repeats)], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"numpy sgemm ({label}): exit {proc.returncode}: {proc.stderr[-2000:]}")
        runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return runs


NUMPY_SGEMM = r"""
import ctypes, glob, json, os, sys, time
import numpy as np
sizes, repeats = json.loads(sys.argv[1]), int(sys.argv[2])
here = os.path.dirname(np.__file__)
core = None
for lib in glob.glob(os.path.join(here, os.pardir, "numpy.libs", "*openblas*")) + glob.glob(os.path.join(here, ".libs", "*openblas*")):
    dll = ctypes.CDLL(lib)
    for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_", "openblas_get_corename"):
        fn = getattr(dll, name, None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            core = fn().decode()
            break
    if core:
        break
try:
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    config = "%s %s: %s" % (blas.get("name"), blas.get("version"), blas.get("openblas configuration"))
except Exception as e:
    config = "unknown (%s)" % e
gflops = {}
for n in sizes:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    gflops[str(n)] = 2 * n ** 3 / best / 1e9
print(json.dumps({"kernel": core or "unknown (no openblas_get_corename found)", "config": config,
                  "gflops": gflops, "best": max(gflops.values())}))
"""


def memory_bandwidth(quick: bool) -> dict:
    """Read bandwidth on one thread, best of numpy's sum and sdot (a @ a) over an array: a large one (DRAM) and
    ones the size of char-shakespeare's per-step weights (fp32, int8: where they live, in L2 or L3); and copy
    bandwidth (bytes copied/s) at the large size."""
    big = (64 if quick else 256) << 20
    sizes = {"large": big, "char-shakespeare fp32 weights": weight_bytes(LM / "model.onnx")["bytes_per_step"]}
    if (LM / "model.int8.onnx").exists():
        sizes["char-shakespeare int8 weights"] = weight_bytes(LM / "model.int8.onnx")["bytes_per_step"]
    repeats = 5 if quick else 15
    out = {}
    for label, size in sizes.items():
        a = np.ones(size // 4, dtype=np.float32)
        best = {}
        for kernel, fn in (("sum", a.sum), ("sdot", lambda: a @ a)):
            best[kernel] = best_time(fn, repeats + 1)
        kernel = min(best, key=best.get)
        out[label] = {"bytes": a.nbytes, "read_gb_s": a.nbytes / best[kernel] / 1e9, "kernel": kernel}
        if label == "large":
            b = np.empty_like(a)
            out[label]["copy_gb_s"] = a.nbytes / best_time(lambda: np.copyto(b, a), repeats + 1) / 1e9
    return out


def best_time(fn, n: int) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def weight_traffic(r: dict) -> dict:
    """char-shakespeare streaming: bytes of weights read per character / seconds per character, against two
    measured bandwidths: numpy's read at that many bytes, and onnxruntime's GEMMs of one step alone (section 8:
    their weight bytes / their time); the better of the two is the bound."""
    st, bw, step = r["streaming_us_per_char"], r["memory_bandwidth"], r["roofline"]["char-shakespeare"]
    out = {}
    for variant, row, path in (("fp32", "runtime generate", LM / "model.onnx"),
                               ("int8", "runtime generate (int8)", LM / "model.int8.onnx")):
        wb = weight_bytes(path)
        sec = st[row]["median"] / 1e6
        ref = bw.get(f"char-shakespeare {variant} weights", bw["large"])["read_gb_s"]
        gemm_us = step["step_us_batch_1"][variant]
        gemm_gb_s = step["step_gemm_weight_bytes"][variant] / gemm_us / 1e3
        best = max(ref, gemm_gb_s)
        out[variant] = {**wb, "us_per_char": st[row]["median"], "gb_s": wb["bytes_per_step"] / sec / 1e9,
                        "numpy_read_gb_s": ref, "gemm_step_us": gemm_us, "gemm_step_gb_s": gemm_gb_s,
                        "bandwidth_gb_s": best, "of_bandwidth": wb["bytes_per_step"] / sec / 1e9 / best,
                        "bandwidth_bound_us": wb["bytes_per_step"] / (best * 1e9) * 1e6}
    return out


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
        # pos-ewt's int8 dev accuracy check (not export's int8 RMS check, which also starts with "int8")
        "accuracy": next((v for k, v in checks.items() if k.startswith("int8") and "dev" in k), None),
    }


# The stage each of export_module's progress lines starts (its text after "NAME: "), for the export table.
STAGES = (("TorchScript", "torchscript"), ("ONNX via", "onnx"), ("int8", "int8"), ("ORT format", "ort"),
          ("torch.export of the scan form (", "pte"), ("torch.export of the module", "pte"),
          ("torch.export of the scan form", "pt2"),
          ("model.pt2", "pt2"), ("model.pte", "pte"), ("verifying", "verify"), ("the same model.onnx", "runtimes"))


def export_times(names: list[str]) -> dict:
    """Seconds of each registered model's export into a temporary folder, in this process (imports done): in all,
    and per stage, from the progress line that starts a stage to the next one. "load" is the checkpoint (or seed
    recipe) and the signature; "pt2" is torch.export of the scan form with every symbol dynamic (unless the ONNX
    Scan path made it first, then it counts as "onnx") plus saving and probing model.pt2; "pte" is torch.export
    with the batch fixed, ExecuTorch's lowering and the checks in its runtime; "verify" is the whole-artifact
    verification (model.pt2 is one of its backends)."""
    from export.zoo.build import export
    from export.zoo.registry import REGISTRY

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            marks: list[tuple[float, str]] = []
            start = time.perf_counter()
            export(REGISTRY[name], Path(tmp), log=lambda m: marks.append((time.perf_counter(), m)))
            end = time.perf_counter()
            stages = {"load": (marks[0][0] if marks else end) - start}
            for (t, message), (t_next, _) in zip(marks, [*marks[1:], (end, "")]):
                text = message.split(": ", 1)[-1]
                stage = next((k for prefix, k in STAGES if text.startswith(prefix)), "load")
                stages[stage] = stages.get(stage, 0.0) + t_next - t
            out[name] = {"total": end - start, "stages": stages}
    return out


# ---- ExecuTorch (.pte) and torch.export (.pt2) beside onnxruntime ----------------------------------------------

def edge_formats(n_chars: int, repeats: int, limit: int | None) -> dict:
    """char-shakespeare greedy generation, one stream, batch 1, µs per character, same rounds: the runtime, a bare
    onnxruntime loop over model.onnx, ExecuTorch's runtime over model.pte (XNNPACK; the loop calls the method
    with torch tensors, nothing else), and model.pt2 in torch (torch.export.load). Each loop's characters are
    compared with the onnxruntime loop's. pos-ewt: EWT dev through model.pte against model.onnx where its .pte
    exists; otherwise the reason its manifest records."""
    import torch

    from export.program import EXECUTORCH_MISSING, executorch_version, load_pt2
    from runtime.artifact import PTE_FILE, PT2_FILE, read_manifest

    torch.set_num_threads(1)
    lm = load_lm("fp32")
    cfg = lm.manifest.config
    out: dict = {"executorch": executorch_version(), "lowering": lm.manifest.export.get("pte", {}).get("lowering")}
    first = np.array([[lm.bos_id]], dtype=np.int64)
    zeros = np.zeros((cfg["num_layers"], 1, cfg["hidden_size"]), dtype=np.float32)
    made: dict[str, list[int]] = {}  # each loop's characters, from its last round

    def greedy(label, step, x0, state0):
        def go():
            x, h, c, ids = x0, state0, state0, []
            for _ in range(n_chars):
                logits, h, c = step(x, h, c)
                x = logits[-1:].argmax(-1)  # numpy or torch alike
                ids.append(int(x[0, 0]))
            made[label] = ids
        return go

    fns = {"runtime generate": lambda: lm.generate("", max_chars=n_chars),
           "onnxruntime session.run loop (.onnx)": greedy(
               "onnxruntime", lambda x, h, c: lm.session.run(lm.output_names, {"chars": x, "h_0": h, "c_0": c}),
               first, zeros)}
    t_first, t_zeros = torch.from_numpy(first), torch.from_numpy(zeros)
    if (LM / PT2_FILE).exists():
        pt2 = load_pt2(LM / PT2_FILE)

        def pt2_step(x, h, c):
            with torch.no_grad():
                return pt2(x, h, c)
        fns["torch.export model.pt2 loop"] = greedy("pt2", pt2_step, t_first, t_zeros)
    if executorch_version() is None:
        out["unavailable"] = EXECUTORCH_MISSING
    elif (LM / PTE_FILE).exists():
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(str(LM / PTE_FILE))
        for name in sorted(program.method_names):  # forward (time dynamic, a scan) and step (one step, no loop)
            method = program.load_method(name)
            fns[f"ExecuTorch model.pte {name} loop"] = greedy(
                f"pte {name}", lambda x, h, c, method=method: method.execute([x, h, c]), t_first, t_zeros)
    out["us_per_char"] = us(side_by_side(fns, repeats, warmup=1), n_chars)
    out["same_characters_as_onnxruntime"] = {k: v == made["onnxruntime"] for k, v in made.items() if k != "onnxruntime"}
    pos = read_manifest(POS)
    if (POS / PTE_FILE).exists():
        out["pos_ewt"] = _pos_pte_throughput(repeats, limit)
    else:
        out["pos_ewt"] = {"unavailable": pos.export.get("not_written", {}).get(PTE_FILE, "no model.pte")}
    return out


def _pos_pte_throughput(repeats: int, limit: int | None) -> dict:
    """EWT dev one sentence at a time (the .pte's batch is fixed at 1) through model.pte and model.onnx."""
    import torch
    from executorch.runtime import Runtime

    from runtime.artifact import PTE_FILE

    tagger = load_tagger(1)
    feeds = [tagger.inputs([s]) for s in dev_sentences(limit)]
    names = [t.name for t in tagger.io.inputs]
    method = Runtime.get().load_program(str(POS / PTE_FILE)).load_method("forward")
    tensors = [[torch.from_numpy(np.ascontiguousarray(f[n])) for n in names] for f in feeds]
    res = side_by_side({"onnxruntime session.run (.onnx)": lambda: [tagger.session.run(None, f) for f in feeds],
                        "ExecuTorch (.pte)": lambda: [method.execute(t) for t in tensors]}, repeats, warmup=1)
    tokens = sum(len(s) for s in dev_sentences(limit))
    return {k: {"tokens_per_s": tokens / v["median"]} for k, v in res.items()}


# ---- the machine: CPU, load ------------------------------------------------------------------------------------

CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile")
# A busy machine. The bench runs one thread (two in the threads section) on what is meant to be a quiet machine:
# before it starts, the 1-minute load average should be near 0 (limit 0.5: half a core busy on average over the
# last minute), and other processes should use under a quarter of a core, before, during and after the run
# (during it, they share the caches, memory and, on 2 cores, the second core the threads section uses).
# CPU time stolen by the hypervisor counts as other processes'.
LOAD_LIMIT, OTHERS_LIMIT = 0.5, 0.25


def _size(text: str) -> int:
    text = text.strip()
    return int(text.rstrip("KMGkmg")) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)


def cpu_info() -> dict:
    """Model name, cores, the vector extensions of CPU_FLAGS (from /proc/cpuinfo), cache sizes (from sysfs), and
    the BLAS variables as found."""
    info = {"model": platform.processor() or platform.machine(), "cores": os.cpu_count(), "flags": {},
            "caches": {}, "env": ENV_AT_START}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    found = {}
    for line in lines:
        key, _, value = line.partition(":")
        found.setdefault(key.strip(), value.strip())
    info["model"] = found.get("model name", info["model"])
    flags = set(found.get("flags", "").split())
    info["flags"] = {f: f in flags for f in CPU_FLAGS}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            size = _size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        info["caches"][f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")] = size
    return info


def cpu_snapshot() -> dict:
    """1-minute load average; the machine's busy CPU seconds (user, nice, system, irq, softirq: guest time is in
    user), stolen seconds, and this process's own CPU seconds with its waited-for children."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return {"t": time.monotonic(), "load1": float(Path("/proc/loadavg").read_text().split()[0]),
            "busy_s": sum(fields[i] for i in (0, 1, 2, 5, 6)) / tick,
            "steal_s": (fields[7] if len(fields) > 7 else 0) / tick,
            "own_s": own.user + own.system + own.children_user + own.children_system}


def cpu_use(a: dict, b: dict) -> dict:
    """Between two snapshots: cores used by other processes (stolen time included) and by this one."""
    wall = b["t"] - a["t"]
    own = b["own_s"] - a["own_s"]
    others = max(0.0, b["busy_s"] - a["busy_s"] - own) + max(0.0, b["steal_s"] - a["steal_s"])
    return {"seconds": wall, "load1": b["load1"], "others_cores": others / wall, "own_cores": own / wall}


def idle_window(seconds: float) -> dict:
    """The machine while this process sleeps: what other processes use."""
    a = cpu_snapshot()
    time.sleep(seconds)
    return {"load1_at_start": a["load1"], **cpu_use(a, cpu_snapshot())}


def busy_reasons(load: dict) -> list[str]:
    reasons = []
    if load["before"]["load1_at_start"] > LOAD_LIMIT:
        reasons.append(f"1-min load average {load['before']['load1_at_start']:.2f} before the run "
                       f"(limit {LOAD_LIMIT})")
    for when in ("before", "during", "after"):
        if load[when]["others_cores"] > OTHERS_LIMIT:
            reasons.append(f"other processes used {load[when]['others_cores']:.2f} cores {when} the run "
                           f"(limit {OTHERS_LIMIT})")
    return reasons


# ---- report --------------------------------------------------------------------------------------------------

def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x"


def slowest(kinds: list[dict], variant: str) -> tuple[dict, float]:
    """The model's GEMM that takes the largest share of the roofline time, and that share."""
    times = [e["needed"] / e["gflops"][variant] for e in kinds]
    i = max(range(len(kinds)), key=times.__getitem__)
    return kinds[i], times[i] / sum(times)


def shape(e: dict) -> str:
    return f"({e['m']} x {e['k']}) @ ({e['k']} x {e['n']})"


def targets(r: dict) -> list[tuple[str, str, bool]]:
    """Issue 15's targets against this run: (target, measured, met)."""
    c, lat, thr, st = r["cold_start"], r["latency_us"], r["throughput"], r["streaming_us_per_char"]
    roof, frac, ms, wt = r["roofline"], r["tag_roofline"], r["many_streams"], r["weight_traffic"]

    def med(d: dict) -> float:
        return d["median"]

    rows = []
    rt_wall, rt_rss = med(c["runtime"]["wall_s"]), med(c["runtime"]["peak_rss_mib"])
    torch_paths = [k for k in c if k != "runtime"]
    wall = min(med(c[k]["wall_s"]) / rt_wall for k in torch_paths)
    rss = min(med(c[k]["peak_rss_mib"]) / rt_rss for k in torch_paths)
    rows += [("cold start >= 6x faster than the torch paths", f"{wall:.1f}x", wall >= 6),
             ("cold start >= 2.5x less peak memory", f"{rss:.1f}x", rss >= 2.5)]
    tag, bare, eager = med(lat["Tagger.tag"]), med(lat["bare session.run"]), med(lat["torch eager"])
    rows += [("`tag` within 1.3x of a bare session.run", f"{tag / bare:.2f}x", tag / bare <= 1.3),
             ("`tag` >= 2x faster than eager torch", f"{eager / tag:.1f}x", eager / tag >= 2)]
    # tag_batch fp32 against the MatMul roofline at its own shapes, needed FLOPs
    f = frac["tag_batch"]
    text = (f"{100 * f['of_model_shapes']:.0f}% of MatMul at the model's own shapes "
            f"({thr['tag_batch']['tokens_per_s'] / 1000:.1f}k of {f['roofline_tokens_per_s'] / 1000:.1f}k tokens/s); "
            f"{100 * f['of_square_best']:.0f}% of the large-square best ({roof['square_best']['fp32']:.0f} GFLOP/s)")
    ok = f["of_model_shapes"] >= 0.75
    if not ok:
        e, share = slowest(roof["pos-ewt"], "fp32")
        text += (f". Bound: the model's GEMMs run at {f['model_shapes_gflops']:.0f} GFLOP/s together, "
                 f"{100 * f['model_shapes_gflops'] / roof['square_best']['fp32']:.0f}% of the square best; the "
                 f"slowest, {e['kind']} {shape(e)}, at {e['gflops']['fp32']:.0f} GFLOP/s takes "
                 f"{100 * share:.0f}% of the GEMM time; the graph computes "
                 f"{f['of_model_shapes_graph_flops'] / f['of_model_shapes']:.2f}x the needed FLOPs (padding), "
                 f"{100 * f['of_model_shapes_graph_flops']:.0f}% counted that way; a bare session.run (the graph "
                 f"alone, no Python around it) is at {100 * frac['bare session.run']['of_model_shapes']:.0f}%: the "
                 f"rest of the time is the graph's work outside the GEMMs")
    rows.append(("`tag_batch` fp32 >= 75% of the MatMul roofline at the FLOPs it needs", text, ok))
    # int8 vs fp32
    q = thr["tag_batch (int8)"]["tokens_per_s"] / thr["tag_batch"]["tokens_per_s"]
    text = f"{q:.2f}x ({thr['tag_batch (int8)']['tokens_per_s'] / 1000:.1f}k tokens/s)"
    if q < 1.8:
        gemm_q = frac["tag_batch (int8)"]["roofline_tokens_per_s"] / f["roofline_tokens_per_s"]
        text += (f". Bound: MatMulInteger at the model's shapes is {gemm_q:.2f}x MatMul "
                 f"({frac['tag_batch (int8)']['model_shapes_gflops']:.0f} against "
                 f"{f['model_shapes_gflops']:.0f} GOP/s); int8 tag_batch is at "
                 f"{100 * frac['tag_batch (int8)']['of_model_shapes']:.0f}% of its own roofline")
    rows.append(("`tag_batch` int8 >= 1.8x fp32 tokens/s", text, q >= 1.8))
    # streaming, one stream, int8
    step = roof["char-shakespeare"]["step_us_batch_1"]
    fp = f"fp32 {med(st['runtime generate']):.0f} µs/char"
    v = med(st["runtime generate (int8)"])
    text = f"{v:.0f} µs/char ({fp})"
    if v > 60:
        w = wt["int8"]
        lstm = sum(t for k, t in r["step_profile"]["int8"].items() if k.endswith("LSTM"))
        text += (f". Bound: onnxruntime's own int8 LSTM kernel (DynamicQuantizeLSTM: it quantizes each step's input "
                 f"and state, then runs its integer GEMMs) takes {lstm:.0f} µs of a step by its profiler (table 4d); "
                 f"the step's GEMMs alone (MatMulInteger on pre-quantized inputs, one run) take {step['int8']:.0f} "
                 f"µs; {w['bytes_per_step'] / 1e6:.2f} MB of weights at the best measured {w['bandwidth_gb_s']:.0f} "
                 f"GB/s take {w['bandwidth_bound_us']:.0f} µs; the runtime reads them at {w['gb_s']:.1f} GB/s "
                 f"({100 * w['of_bandwidth']:.0f}%); a bare session.run per character takes "
                 f"{med(st['bare session.run loop (int8)']):.0f} µs: the graph's work around its GEMMs and "
                 f"onnxruntime's per-run cost")
    rows.append(("streaming int8 <= 60 µs/char, one thread", text, v <= 60))
    # many streams int8
    v = ms["int8"]["step_streams"]["chars_per_s"]
    text = f"{v / 1000:.1f}k chars/s (fp32 {ms['fp32']['step_streams']['chars_per_s'] / 1000:.1f}k)"
    if v < 60_000:
        b = ms["int8"][f"bare session.run, batch {STREAMS}"]["chars_per_s"]
        g = STREAMS / (roof["char-shakespeare"][f"step_us_batch_{STREAMS}"]["int8"] / 1e6)
        text += (f". Bound: a bare session.run at batch {STREAMS} gives {b / 1000:.1f}k chars/s; the step's "
                 f"GEMMs alone (MatMulInteger at batch {STREAMS}, one run) {g / 1000:.0f}k")
    rows.append((f"`step_streams` over {STREAMS} streams, int8 >= 60k chars/s", text, v >= 60_000))
    return rows


def load_line(r: dict) -> str:
    """results.md's first line: whether the machine was quiet enough for the figures to stand (section 10)."""
    load, reasons = r["load"], r["load"]["busy"]
    if reasons:
        return f"**BUSY MACHINE: figures not representative**: {'; '.join(reasons)} (section 10)."
    return (f"Quiet machine: 1-min load average {load['before']['load1_at_start']:.2f} before the run (limit "
            f"{LOAD_LIMIT}); other processes used {load['before']['others_cores']:.2f} / "
            f"{load['during']['others_cores']:.2f} / {load['after']['others_cores']:.2f} cores before / during / "
            f"after it (limit {OTHERS_LIMIT}).")


def docs_refusal(load: dict, force: bool) -> str | None:
    """The one-line error for --docs after a run on a busy machine (None: go ahead)."""
    if load["busy"] and not force:
        return (f"error: busy machine ({'; '.join(load['busy'])}): docs/benchmarks.md not updated; rerun on a quiet "
                "machine, or pass --force-docs")
    return None


def markdown(r: dict) -> str:
    c, lat, thr, st, q = r["cold_start"], r["latency_us"], r["throughput"], r["streaming_us_per_char"], r["int8"]
    roof, frac, cpu = r["roofline"], r["tag_roofline"], r["cpu"]
    rt = c["runtime"]
    lines = [load_line(r), "",
             f"Measured {r['date']} on {r['machine']} ({r['mode']} mode), one intra-op thread everywhere but "
             "section 7; median [min-max] of repeated runs after warm-up.", "",
             "| target | this run | met |", "| --- | --- | --- |"]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |"
              for t, m, ok in targets(r)]
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
    lines += ["", f"| 3. throughput, EWT dev ({thr['tokens']} tokens) | tokens/s | GFLOP/s needed | of the MatMul "
              "roofline at the model's shapes | of the large-square MatMul |", "| --- | --- | --- | --- | --- |"]
    for k, v in thr.items():
        if isinstance(v, dict) and "tokens_per_s" in v:
            f = frac[k]
            lines.append(f"| {k} | {v['tokens_per_s']:.0f} [{v['tokens_per_s_min']:.0f}-{v['tokens_per_s_max']:.0f}] "
                         f"| {v['needed_gflops']:.1f} | {100 * f['of_model_shapes']:.0f}% ({f['variant']}) "
                         f"| {100 * f['of_square_best']:.0f}% |")
    lines += ["", f"FLOPs per token counted from the config: {thr['flops_per_token'] / 1e6:.2f} M (every token's "
              f"{thr['chars'] / thr['tokens']:.2f} characters through the char BiLSTM; the word BiLSTM and output "
              f"alone are {thr['word_flops_per_token'] / 1e6:.2f} M); needed: "
              f"{thr['needed_flops_per_token'] / 1e6:.2f} M, each batch's distinct spellings once "
              f"({thr['distinct_spelling_chars']} of {thr['chars']} characters). The roofline (section 8): the "
              "seconds the needed FLOPs take at onnxruntime's MatMul (MatMulInteger for int8) measured at each of "
              "the model's GEMM shapes, one thread; at graph FLOPs (padding included) tag_batch is at "
              f"{100 * frac['tag_batch']['of_model_shapes_graph_flops']:.0f}%.", "",
              "| 4. streaming, char-shakespeare greedy, one stream | µs per character | runtime is faster |",
              "| --- | --- | --- |"]
    for k, v in st.items():
        lines.append(f"| {k} | {v['median']:.0f} [{v['min']:.0f}-{v['max']:.0f}] | "
                     f"{ratio(v['median'], st['runtime generate']['median'])} |")
    ms, wt = r["many_streams"], r["weight_traffic"]
    lines += ["", f"| 4b. {STREAMS} streams, {ms['steps']} steps | fp32 chars/s | int8 chars/s |", "| --- | --- | --- |"]
    for k in ms["fp32"]:
        lines.append(f"| {k} | {ms['fp32'][k]['chars_per_s']:.0f} | {ms['int8'][k]['chars_per_s']:.0f} |")
    lines += ["", "| 4c. weight traffic, one stream | weights read per char | µs/char | GB/s | numpy read at that "
              "size | the step's GEMMs alone (onnxruntime, one run) | of the better bandwidth |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for v, w in wt.items():
        lines.append(f"| {v} | {w['bytes_per_step'] / 1e6:.2f} MB | {w['us_per_char']:.0f} | {w['gb_s']:.1f} | "
                     f"{w['numpy_read_gb_s']:.1f} GB/s | {w['gemm_step_us']:.0f} µs, {w['gemm_step_gb_s']:.1f} "
                     f"GB/s | {100 * w['of_bandwidth']:.0f}% |")
    prof = {v: d for v, d in r["step_profile"].items() if d}
    ops = sorted({k for d in prof.values() for k in d if k != "model_run"},
                 key=lambda k: -max(d.get(k, 0) for d in prof.values()))
    lines += ["", "| 4d. one step, batch 1, by onnxruntime's profiler (µs per step) | "
              + " | ".join(prof) + " |", "| --- |" + " --- |" * len(prof)]
    lines += [f"| {k} | " + " | ".join(f"{d[k]:.0f}" if k in d else "" for d in prof.values()) + " |" for k in ops]
    lines.append("| the whole profiled run (the profiler adds its own cost) | "
                 + " | ".join(f"{d['model_run']:.0f}" for d in prof.values()) + " |")
    lines += ["", "| 4e. `runtime.load`, .onnx vs ORT format (.ort) | .onnx ms | .ort ms | .ort is faster | "
              ".onnx MB | .ort MB |", "| --- | --- | --- | --- | --- | --- |"]
    for k, v in r["ort_format"].items():
        a, b = v["onnx"]["load_ms"], v["ort"]["load_ms"]
        lines.append(f"| {k} | {a['median']:.1f} [{a['min']:.1f}-{a['max']:.1f}] | {b['median']:.1f} "
                     f"[{b['min']:.1f}-{b['max']:.1f}] | {a['median'] / b['median']:.2f}x | "
                     f"{v['onnx']['bytes'] / 1e6:.2f} | {v['ort']['bytes'] / 1e6:.2f} |")
    sv = r["serving"]
    lines += ["", f"| 4f. serving any model (one thread, side by side) | runtime | bare session.run, the same feeds "
              f"| runtime / bare (targets: stream <= 1.15x time; run_batch, run_streams >= 0.9x throughput) "
              f"| floor / bare: a bare run plus one copy in and one dict of views out per item |",
              "| --- | --- | --- | --- | --- |"]
    for k, v in sv["stream_us_per_call"].items():
        lines.append(f"| stream.run, {k} | {v['stream.run']['median']:.1f} µs | "
                     f"{v['bare session.run']['median']:.1f} µs | {v['ratio']:.2f}x time | |")
    for k, v in sv["run_batch"].items():
        lines.append(f"| run_batch, {sv['sequences']} sequences of 1-40 steps, {k} ({v['session_runs']} runs) | "
                     f"{v['run_batch']['seqs_per_s']:.0f} seq/s | {v['bare session.run']['seqs_per_s']:.0f} seq/s | "
                     f"{v['ratio']:.2f}x throughput | {v['floor_ratio']:.2f}x |")
    for k, v in sv["run_streams"].items():
        bare = next(x for x in v if x.startswith("bare"))
        lines.append(f"| run_streams, {sv['streams']} streams of 1 step, {k} | {v['run_streams']['steps_per_s']:.0f} "
                     f"steps/s | {v[bare]['steps_per_s']:.0f} steps/s | {v['ratio']:.2f}x throughput | "
                     f"{v['floor_ratio']:.2f}x |")
    lines += ["", "| 5. int8 vs fp32 (pos-ewt) | fp32 | int8 |", "| --- | --- | --- |",
              f"| size | {q['fp32_bytes'] / 1e6:.2f} MB | {q['int8_bytes'] / 1e6:.2f} MB |",
              f"| latency (tag, 17 tokens) | {q['fp32_latency_us']:.0f} µs | {q['int8_latency_us']:.0f} µs |",
              f"| throughput (tag_batch) | {q['fp32_tokens_per_s']:.0f} tok/s | {q['int8_tokens_per_s']:.0f} tok/s |",
              f"| accuracy (recorded at export) | {q['accuracy']} | |", ""]
    cols = [k for _, k in STAGES if any(k in v["stages"] for v in r["export_s"].values())]
    cols = ["load", *dict.fromkeys(cols)]
    lines += ["| 6. export + verify, seconds (in one process; the checkpoint or seed recipe loaded, not trained) | all | "
              + " | ".join(cols) + " |", "| --- | --- |" + " --- |" * len(cols)]
    lines += [f"| {k} | {v['total']:.1f} | " + " | ".join(f"{v['stages'][c]:.1f}" if c in v["stages"] else ""
                                                         for c in cols) + " |" for k, v in r["export_s"].items()]
    total = sum(v["total"] for v in r["export_s"].values())
    edge = sum(v["stages"].get(c, 0.0) for v in r["export_s"].values() for c in ("pt2", "pte"))
    lines += ["", f"All {len(r['export_s'])} exports: {total:.0f} s, of which model.pt2 and model.pte add {edge:.0f} s "
              f"({100 * edge / total:.0f}%). A stage runs from its progress line to the next one.", ""]
    ef = r["edge_formats"]
    lines += [f"| 6b. char-shakespeare greedy, one stream, batch 1, by format (ExecuTorch {ef['executorch']}, "
              f"{ef['lowering']}) | µs per character | x the runtime's time | same characters as onnxruntime |",
              "| --- | --- | --- | --- |"]
    for k, v in ef["us_per_char"].items():
        label = k.replace("ExecuTorch model.", "").replace("torch.export model.", "").replace(" loop", "")
        agree = ef["same_characters_as_onnxruntime"].get(label, "")
        lines.append(f"| {k} | {v['median']:.0f} [{v['min']:.0f}-{v['max']:.0f}] | "
                     f"{ratio(v['median'], ef['us_per_char']['runtime generate']['median'])} | {agree} |")
    if "unavailable" in ef:
        lines.append(f"| ExecuTorch | {ef['unavailable']} | | |")
    pos = ef["pos_ewt"]
    if "unavailable" in pos:
        lines += ["", f"pos-ewt has no model.pte, so no .pte throughput: {pos['unavailable']}"]
    else:
        lines += ["", "| 6c. pos-ewt, EWT dev one sentence at a time | tokens/s |", "| --- | --- |"]
        lines += [f"| {k} | {v['tokens_per_s']:.0f} |" for k, v in pos.items()]
    lines.append("")
    th = r["threads"]
    lines += ["", "| 7. threads (intra_op_threads, on {} cores) | 1 | 2 | the second thread |".format(cpu["cores"]),
              "| --- | --- | --- | --- |"]
    for k, v in th.items():
        lines.append(f"| {k} | {v['1']:.0f} | {v['2']:.0f} | "
                     f"{'pays, ' if v['speedup'] > 1.1 else 'does not pay, '}{v['speedup']:.2f}x |")
    lines += ["", "| 8. roofline: onnxruntime MatMul, one thread | rows m | GFLOP/s fp32 | GOP/s int8 (MatMulInteger) "
              "| share of fp32 GEMM time |", "| --- | --- | --- | --- | --- |"]
    for n, d in roof["squares"].items():
        lines.append(f"| square {n} | {n} | {d['fp32']:.1f} | {d['int8']:.1f} | |")
    kinds = roof["pos-ewt"]
    total = sum(e["needed"] / e["gflops"]["fp32"] for e in kinds)
    for e in kinds:
        lines.append(f"| pos-ewt {e['kind']}, {shape(e)} | {e['m']} | {e['gflops']['fp32']:.1f} | "
                     f"{e['gflops']['int8']:.1f} | {100 * e['needed'] / e['gflops']['fp32'] / total:.0f}% |")
    f = frac["tag_batch"]
    lines.append(f"| pos-ewt, all its GEMMs (FLOP-weighted harmonic mean) | | {f['model_shapes_gflops']:.1f} | "
                 f"{frac['tag_batch (int8)']['model_shapes_gflops']:.1f} | 100% |")
    cs = roof["char-shakespeare"]
    for s, d in cs["shapes"].items():
        m, k, n = s.split("x")
        lines.append(f"| char-shakespeare step, batch 1, ({m} x {k}) @ ({k} x {n}) | 1 | "
                     f"{d['fp32']:.1f} | {d['int8']:.1f} | |")
    for b in (1, STREAMS):
        d = cs[f"step_us_batch_{b}"]
        lines.append(f"| char-shakespeare, the GEMMs of one step at batch {b}, one run (µs) | {b} | {d['fp32']:.0f} µs "
                     f"| {d['int8']:.0f} µs | |")
    gemm_w = cs["step_gemm_weight_bytes"]
    lines += ["", f"Roofline GEMMs: one graph per shape, the shape repeated as nodes with their own prepacked weights "
              f"until a run is about 2e7 FLOPs (weights at most about 8 MB, in L3 as the models' are), outputs bound "
              f"once; best of the runs. The char-shakespeare step reads {gemm_w['fp32'] / 1e6:.2f} MB of GEMM "
              f"weights (fp32; {gemm_w['int8'] / 1e6:.2f} MB int8).", ""]
    ns = r["numpy_sgemm"]
    for label, d in ns.items():
        gf = ", ".join(f"{n}: {g:.1f}" for n, g in d["gflops"].items())
        lines.append(f"numpy sgemm, one thread, {label}: OpenBLAS kernel {d['kernel']} ({d['config']}); "
                     f"GFLOP/s {gf}.")
    bw = r["memory_bandwidth"]
    lines += ["", "| 9. memory bandwidth, one thread | bytes | read GB/s | kernel |", "| --- | --- | --- | --- |"]
    for k, v in bw.items():
        extra = f" (copy {v['copy_gb_s']:.1f} GB/s)" if "copy_gb_s" in v else ""
        lines.append(f"| {k} | {v['bytes'] / 1e6:.1f} MB | {v['read_gb_s']:.1f}{extra} | numpy {v['kernel']} |")
    flags = " ".join(f if on else f"~~{f}~~" for f, on in cpu["flags"].items())
    caches = ", ".join(f"{k} {v >> 10} KiB" for k, v in cpu["caches"].items())
    env = ", ".join(f"{k}={v}" for k, v in cpu["env"].items() if v is not None) or "none set"
    load = r["load"]
    lines += ["", f"10. Machine: {cpu['model']}, {cpu['cores']} cores; vector extensions (struck: absent): {flags}; "
              f"caches {caches}; BLAS variables at start: {env}. Load: 1-min average "
              f"{load['before']['load1_at_start']:.2f} at the start, {load['after']['load1_at_start']:.2f} at the "
              f"end; other processes {load['before']['others_cores']:.2f} cores in the {load['before']['seconds']:.0f} s "
              f"before, {load['during']['others_cores']:.2f} during the {load['during']['seconds']:.0f} s run "
              f"(this one {load['during']['own_cores']:.2f}), {load['after']['others_cores']:.2f} after."]
    return "\n".join(lines) + "\n"


TORCH_PATHS = ("torch eager", "TorchScript")


def chart(r: dict, path: Path) -> None:
    from export.zoo.plots import png, pyplot

    fig, axes = pyplot().subplots(2, 4, figsize=(20, 7.6), dpi=100)
    ms = r["many_streams"]
    streams = {f"{k} ({v})": d[k]["chars_per_s"] for v in ("fp32", "int8") if (d := ms.get(v)) for k in d}
    roof = r["roofline"]
    gemms = {f"square {n}": d["fp32"] for n, d in roof["squares"].items()}
    gemms.update({f"{e['kind'].replace('(', '').replace(')', '')}, m={e['m']}": e["gflops"]["fp32"]
                  for e in roof["pos-ewt"]})
    panels = [
        ("cold start (s), lower is better", {k: v["wall_s"]["median"] for k, v in r["cold_start"].items()}),
        ("cold start peak RSS (MiB), lower", {k: v["peak_rss_mib"]["median"] for k, v in r["cold_start"].items()}),
        ("tag 17 tokens, batch 1 (µs), lower", {k: v["median"] for k, v in r["latency_us"].items()}),
        ("EWT dev (tokens/s), higher is better",
         {k: v["tokens_per_s"] for k, v in r["throughput"].items() if isinstance(v, dict) and "tokens_per_s" in v}),
        ("streaming (µs / char), lower", {k: v["median"] for k, v in r["streaming_us_per_char"].items()}),
        (f"{STREAMS} streams (chars/s), higher", streams),
        ("2 threads vs 1 (speedup), higher", {k.split(" (")[0]: v["speedup"] for k, v in r["threads"].items()}),
        ("onnxruntime MatMul fp32 (GFLOP/s), 1 thread", gemms),
    ]
    for ax, (title, data) in zip(axes.flat, panels):
        colors = ["tab:gray" if k in TORCH_PATHS else "tab:green" for k in data]
        ax.barh(list(data), list(data.values()), color=colors)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.tick_params(labelsize=8)
    axes.flat[6].axvline(1.0, color="k", lw=0.8)
    busy = " (BUSY MACHINE: not representative)" if r["load"]["busy"] else ""
    fig.suptitle(f"seqedge runtime (green) vs torch (gray), one thread but the threads panel, medians{busy}",
                 fontsize=11)
    fig.tight_layout()
    path.write_bytes(png(fig))


def machine() -> str:
    import onnxruntime
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return (f"{cpu} ({platform.machine()}, {os.cpu_count()} cores), Python {platform.python_version()}, "
            f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, numpy {np.__version__}")


DOCS = ROOT / "docs" / "benchmarks.md"  # the results table lives here (the README links to it)
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_docs(md: str) -> None:
    """Replace docs/benchmarks.md's results between the bench markers with this run's table."""
    text = DOCS.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"error: {DOCS} has no {START} ... {END} section to update")
    head, rest = text.split(START, 1)
    DOCS.write_text(head + START + "\n" + md + rest[rest.index(END):], encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="about a minute: fewer repeats, smaller inputs (smoke test)")
    p.add_argument("--out", type=Path, help="where results.json, results.md and chart.png go (default: benchmarks/, "
                                            "or benchmarks/quick/ with --quick, so a smoke run never replaces results)")
    p.add_argument("--docs", action="store_true",
                   help="also put the results table into docs/benchmarks.md (refused when the machine was busy)")
    p.add_argument("--force-docs", action="store_true",
                   help="with --docs: update docs/benchmarks.md even from a run on a busy machine (its table says so)")
    args = p.parse_args(argv)
    quick = args.quick
    args.out = args.out or (OUT / "quick" if quick else OUT)
    if args.docs and quick:
        p.error("--docs takes a full run's figures, not --quick ones")
    if args.force_docs and not args.docs:
        p.error("--force-docs goes with --docs")
    for a in (POS, LM):
        if not (a / "manifest.json").exists():
            print(f"error: {a} missing; run `make run` first", file=sys.stderr)
            return 1
    from export.zoo.registry import REGISTRY

    limit = 300 if quick else None
    n_chars = 200 if quick else 2000
    steps = [("cold start", "cold_start", lambda: cold_start(2 if quick else 7)),
             ("latency", "latency_us", lambda: latency(50 if quick else 500)),
             ("throughput", "throughput", lambda: throughput(1 if quick else 5, limit)),
             ("streaming", "streaming_us_per_char", lambda: streaming(n_chars, 2 if quick else 5)),
             ("many streams", "many_streams", lambda: many_streams(20 if quick else 200, 2 if quick else 5)),
             ("serving any model", "serving", lambda: serving(2 if quick else 5, 50 if quick else 1000,
                                                             500 if quick else 10000)),
             ("step profile", "step_profile", lambda: step_profile(100 if quick else 1000)),
             ("ORT format", "ort_format", lambda: ort_format(3 if quick else 15)),
             ("threads", "threads", lambda: threads(2 if quick else 5, limit, n_chars)),
             ("MatMul roofline", "roofline", lambda: matmul_roofline(quick, limit)),
             ("numpy sgemm", "numpy_sgemm", lambda: numpy_sgemm((256, 512) if quick else (512, 1024, 2048),
                                                                 3 if quick else 5)),
             ("memory bandwidth", "memory_bandwidth", lambda: memory_bandwidth(quick)),
             ("ExecuTorch and torch.export", "edge_formats", lambda: edge_formats(n_chars, 2 if quick else 5, limit)),
             ("export", "export_s", lambda: export_times(["lstm-tutorial"] if quick else list(REGISTRY)))]
    r = {"date": time.strftime("%Y-%m-%d"), "mode": "quick" if quick else "full", "machine": machine(),
         "cpu": cpu_info()}
    print("[bench] machine load ...", file=sys.stderr, flush=True)
    window = 1.0 if quick else 3.0
    load = {"before": idle_window(window)}
    started, snap = time.perf_counter(), cpu_snapshot()
    for label, key, fn in steps:
        t = time.perf_counter()
        print(f"[bench] {label} ...", file=sys.stderr, flush=True)
        r[key] = fn()
        print(f"[bench] {label}: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    load["during"] = cpu_use(snap, cpu_snapshot())
    load["after"] = idle_window(window)
    load["limits"] = {"load1_before": LOAD_LIMIT, "others_cores": OTHERS_LIMIT}
    load["busy"] = busy_reasons(load)
    r["load"] = load
    r["int8"] = int8_vs_fp32(r["latency_us"], r["throughput"])
    r["tag_roofline"] = tag_roofline(r)
    r["weight_traffic"] = weight_traffic(r)
    r["bench_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(r, indent=2) + "\n")
    md = markdown(r)
    (args.out / "results.md").write_text(md)
    chart(r, args.out / "chart.png")
    print(md)
    print(f"[bench] done in {r['bench_s']:.0f}s: {args.out / 'results.md'}", file=sys.stderr)
    if args.docs:
        refusal = docs_refusal(load, args.force_docs)
        if refusal:
            print(refusal, file=sys.stderr)
            return 1
        update_docs(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
