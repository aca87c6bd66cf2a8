"""One loaded model used from 8 threads at once gives exactly what it gives used serially: Tagger.tag and
tag_batch, Model.run, CharLM.generate and loss, and streams (one per thread: streams are per-thread state)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import runtime

from .conftest import ARTIFACTS

THREADS = 8


def in_threads(fn, jobs):
    """Run fn(job) for every job on 8 threads, all started together; results in job order."""
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(fn, jobs))


@pytest.fixture(scope="module")
def sentences():
    words = "The dog barked at 3 cats near the old bridge in Zürich yesterday , 🙂 !".split()
    rng = np.random.default_rng(0)
    return [[words[i] for i in rng.integers(0, len(words), rng.integers(0, 30))] for _ in range(64)]


@pytest.mark.parametrize("name", ["pos-ewt", "pos-tutorial"])
def test_tagger_from_8_threads_equals_serial(name, sentences):
    tagger = runtime.load(ARTIFACTS / name)
    serial_tag = [tagger.tag(s) for s in sentences]
    groups = [sentences[i::THREADS] for i in range(THREADS)] * 2
    serial_batch = [tagger.tag_batch(g) for g in groups]
    serial_scores = [tagger.scores_batch(g) for g in groups]
    assert in_threads(tagger.tag, sentences) == serial_tag
    assert in_threads(tagger.tag_batch, groups) == serial_batch
    for got, want in zip(in_threads(tagger.scores_batch, groups), serial_scores):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["lstm-2layer", "lstm-2layer-batch-first"])
def test_run_from_8_threads_equals_serial(name):
    model = runtime.load(ARTIFACTS / name)
    rng = np.random.default_rng(1)
    seq = model.io.data_inputs[0].name
    feeds = []
    for _ in range(32):
        t, b = int(rng.integers(1, 20)), int(rng.integers(1, 5))
        x = model.time_major(seq, rng.standard_normal((t, b, 3), dtype=np.float32))
        h = rng.standard_normal((2, b, 5), dtype=np.float32)
        feeds.append({seq: x, "h_0": h} if rng.random() < 0.5 else {seq: x})
    serial = [model.run(**f) for f in feeds]
    for got, want in zip(in_threads(lambda f: model.run(**f), feeds), serial):
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_char_lm_generate_loss_and_per_thread_streams_from_8_threads_equal_serial():
    lm = runtime.load(ARTIFACTS / "char-shakespeare")
    jobs = [(prompt, seed) for prompt in ("ROMEO:", "JULIET:\n", "") for seed in range(6)]

    def generate(job):
        prompt, seed = job
        return lm.generate(prompt, max_chars=40, temperature=0.8, top_k=10, seed=seed)

    def streamed(job):  # each thread owns its stream
        prompt, seed = job
        s = lm.stream(temperature=0.8, top_k=10, seed=seed)
        s.feed(prompt)
        return "".join(s.step() for _ in range(40))

    def loss(job):
        return lm.loss("First Citizen:\nBefore we proceed any further, hear me speak." * (1 + job[1]))

    for fn in (generate, streamed, loss):
        assert in_threads(fn, jobs) == [fn(j) for j in jobs], fn.__name__
    assert [generate(j) for j in jobs] == [streamed(j) for j in jobs]
