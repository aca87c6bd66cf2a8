"""Unchecked input through the public API: each call either works correctly or raises ValueError/TypeError saying
what was expected and what came; never a crash, an onnxruntime error, or silent garbage. Property-based
(hypothesis) over words, sentences, arrays, dtypes, ranks and prompts."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import runtime

from .conftest import ARTIFACTS, loaded

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any Unicode text, control characters and lone surrogates included, and the cases people forget.
words = st.one_of(st.text(max_size=30), st.sampled_from(
    ["", " ", "\x00", "\n", "\t\r", "\u202eabc", "שלום", "مرحبا", "e\u0301\u0308", "👍🏽", "👨‍👩‍👧", "٣٤",
     "\ud800", "a" * 500, "Ⅻ", "ﬁ", "İ"]))
sentences = st.lists(words, max_size=25)


ewt, toy, lstm, lm = (loaded(n) for n in ("pos-ewt", "pos-tutorial", "lstm-2layer", "char-hello"))


# ---- taggers ------------------------------------------------------------------------------------------------

@FEW
@given(batch=st.lists(sentences, max_size=6))
def test_any_unicode_words_get_one_known_tag_each_alone_or_batched(ewt, toy, batch):
    for tagger in (ewt, toy):
        tagged = tagger.tag_batch(batch)
        assert [len(t) for t in tagged] == [len(s) for s in batch]
        assert all(t in tagger.tags for s in tagged for t in s)
        assert tagged == [tagger.tag(s) for s in batch]


@FEW
@given(sentence=st.lists(st.one_of(words, st.integers(), st.none(), st.binary(max_size=3), st.floats(),
                                   st.lists(st.text(max_size=2), max_size=2)), min_size=1, max_size=8)
       .filter(lambda s: not all(isinstance(w, str) for w in s)))
def test_non_str_words_are_refused_naming_the_word(toy, sentence):
    i = next(i for i, w in enumerate(sentence) if not isinstance(w, str))
    with pytest.raises(TypeError) as e:
        toy.tag_batch([["fine"], sentence])
    assert f"sentence 1: word {i}: expected str, got {type(sentence[i]).__name__}" in str(e.value)


@pytest.mark.parametrize("bad, message", [
    (None, "expected a list of str, got NoneType"),
    ("The dog", "expected a list of str, got str (split it into words first)"),
    (b"The dog", "expected a list of str, got bytes"),
    (42, "expected a list of str, got int"),
    ({"a": 1}, "expected a list of str, got dict"),
])
def test_a_sentence_that_is_not_a_list_of_str_is_refused(toy, bad, message):
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        toy.tag(bad)
    with pytest.raises(TypeError, match="sentence 1: " + message.replace("(", r"\(").replace(")", r"\)")):
        toy.tag_batch([["ok"], bad])
    with pytest.raises(TypeError, match="sentences: expected a list of lists of str"):
        toy.tag_batch(bad if bad is not None and not isinstance(bad, dict) else None)


def test_empty_sentence_and_empty_batch(ewt):
    assert ewt.tag([]) == [] and ewt.tag_batch([]) == [] and ewt.tag_batch([[], []]) == [[], []]
    assert ewt.tag_batch([[], ["Hello"], []])[1] == ewt.tag(["Hello"])


def test_a_100000_word_sentence_is_refused_at_once_or_tagged_when_allowed(ewt, toy):
    sentence = ["word"] * 100_000
    started = time.perf_counter()
    with pytest.raises(ValueError) as e:
        ewt.tag(sentence)
    assert time.perf_counter() - started < 1.0, "refused only after doing the work"
    assert "sentence 0: expected at most 8192 words" in str(e.value) and "got 100000" in str(e.value)
    assert "max_words_per_run" in str(e.value)
    big = runtime.load(ARTIFACTS / "pos-tutorial")  # a word-only tagger: 100,000 words is cheap (~0.1 s)
    big.max_words_per_run = 100_000
    tags = big.tag(sentence)
    assert len(tags) == 100_000 and tags[:3] == toy.tag(["word"] * 3)


def test_long_sentences_are_split_across_runs_without_changing_results():
    tagger = runtime.load(ARTIFACTS / "pos-ewt")
    tagger.max_words_per_run = 40  # forces chunks of 1-2 sentences below
    batch = [["The", "dog", "barked"] * 13, ["Hello"] * 20, ["a", "cat"] * 10, ["Go", "!"]]
    alone = [tagger.tag(s) for s in batch]
    calls = []  # words per onnxruntime call
    run = tagger.session.run
    tagger.session.run = lambda names, feed, *rest: calls.append(feed["words"].size) or run(names, feed, *rest)
    assert tagger.tag_batch(batch) == alone
    assert max(calls) <= 40 and len(calls) == 3, calls


# ---- run(**arrays) -------------------------------------------------------------------------------------------

@FEW
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=5)
                    .map(lambda s: (s[0], s[1], 3)),
                    elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_run_accepts_finite_float32_and_refuses_nan_or_inf(lstm, x):
    if np.isfinite(x).all():
        out = lstm.run(input=x)
        assert out["output"].shape == (x.shape[0], x.shape[1], 5) and np.isfinite(out["output"]).all()
    else:
        with pytest.raises(ValueError) as e:
            lstm.run(input=x)
        assert "input 'input': expected finite values, got" in str(e.value) and "NaN/Inf" in str(e.value)


@FEW
@given(dtype=st.sampled_from([np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64]),
       shape=st.tuples(st.integers(1, 4), st.integers(1, 3)))
def test_run_refuses_other_dtypes_naming_expected_and_got(lstm, dtype, shape):
    x = np.zeros(shape + (3,), dtype)
    with pytest.raises(TypeError) as e:
        lstm.run(input=x)
    assert f"expected dtype float32, got {np.dtype(dtype)}" in str(e.value)


@FEW
@given(shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=1, max_side=3).filter(lambda s: len(s) != 3))
def test_run_refuses_other_ranks_naming_expected_and_got(lstm, shape):
    with pytest.raises(ValueError) as e:
        lstm.run(input=np.zeros(shape, np.float32))
    assert f"expected rank 3 with shape (time, batch, 3), got rank {len(shape)}" in str(e.value)


@FEW
@given(b=st.integers(1, 4), b_state=st.integers(1, 4), which=st.sampled_from(["h_0", "c_0"]))
def test_state_whose_batch_differs_from_the_input_is_refused(lstm, b, b_state, which):
    x = np.zeros((2, b, 3), np.float32)
    state = np.zeros((2, b_state, 5), np.float32)
    if b == b_state:
        assert lstm.run(input=x, **{which: state})["output"].shape == (2, b, 5)
    else:
        with pytest.raises(ValueError) as e:
            lstm.run(input=x, **{which: state})
        assert "axis 'batch' disagrees" in str(e.value) and str(b) in str(e.value) and str(b_state) in str(e.value)


@FEW
@given(ids=hnp.arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 3)), elements=st.integers(-20, 30)))
def test_word_ids_outside_the_vocabulary_are_refused_not_wrapped(toy, ids):
    if ids.min() >= 0 and ids.max() < len(toy.words):
        assert toy.run(words=ids)["scores"].shape == ids.shape + (len(toy.tags),)
    else:
        with pytest.raises(ValueError) as e:
            toy.run(words=ids)
        assert f"input 'words': expected ids in [0, {len(toy.words)})" in str(e.value)
        assert f"got values from {ids.min()} to {ids.max()}" in str(e.value)


def test_ragged_or_object_arrays_are_refused(lstm):
    with pytest.raises(TypeError, match="expected dtype float32, got object"):
        lstm.run(input=np.array([None, 1.0], dtype=object))
    with pytest.raises(TypeError, match="expected dtype float32, got <U"):
        lstm.run(input="abc")


# ---- char language models ------------------------------------------------------------------------------------

@FEW
@given(prompt=st.text(max_size=40), n=st.integers(0, 12), seed=st.integers(0, 2**32 - 1),
       temperature=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_any_prompt_generates_known_symbols_deterministically(lm, prompt, n, seed, temperature):
    text = lm.generate(prompt, max_chars=n, temperature=temperature, top_k=5, seed=seed)
    assert len(text) <= n and set(text) <= set(lm.symbols)
    assert text == lm.generate(prompt, max_chars=n, temperature=temperature, top_k=5, seed=seed)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"prompt": None}, TypeError, "expected text as str, got NoneType"),
    ({"prompt": b"abc"}, TypeError, "expected text as str, got bytes"),
    ({"max_chars": 2.5}, ValueError, "max_chars: expected an int >= 0, got 2.5"),
    ({"temperature": float("inf")}, ValueError, "temperature: expected a finite number >= 0, got inf"),
    ({"top_k": 0}, ValueError, "top_k: expected None or an int >= 1, got 0"),
])
def test_generate_refuses_bad_arguments_naming_them(lm, kwargs, error, message):
    with pytest.raises(error) as e:
        lm.generate(**{"prompt": "h", **kwargs})
    assert message in str(e.value)


def test_a_saved_stream_state_assigned_back_continues_the_same_text(lm):
    s = lm.stream()
    s.feed("hello")
    saved, logits = dict(s.state), s.logits
    first = "".join(s.step() for _ in range(6))
    s.state, s.logits = saved, logits
    assert "".join(s.step() for _ in range(6)) == first


@pytest.mark.parametrize("state, error, message", [
    (None, TypeError, "stream state: expected a mapping with keys ['c_0', 'h_0'], got NoneType"),
    ({"h_0": 0}, TypeError, "stream state: expected a mapping with keys ['c_0', 'h_0'], got ['h_0']"),
    ({"h_0": np.zeros((3, 2, 35), np.float32), "c_0": np.zeros((3, 1, 35), np.float32)}, ValueError,
     "stream state 'h_0': expected shape (3, 1, 35) (one stream), got (3, 2, 35)"),
    ({"h_0": np.zeros((3, 1, 35)), "c_0": np.zeros((3, 1, 35), np.float32)}, TypeError,
     "input 'h_0': expected dtype float32, got float64"),
    ({"h_0": np.full((3, 1, 35), np.nan, np.float32), "c_0": np.zeros((3, 1, 35), np.float32)}, ValueError,
     "input 'h_0': expected finite values, got nan"),
])
def test_a_wrong_stream_state_is_refused_when_assigned(lm, state, error, message):
    s = lm.stream()
    with pytest.raises(error) as e:
        s.state = state
    assert message in str(e.value)
    assert s.step() in lm.symbols  # the stream kept its own state


@pytest.mark.parametrize("logits, message", [
    (np.zeros(36, np.float32), "stream logits: expected floats of shape (35,), got float32 (36,)"),
    (np.zeros(35, np.int64), "stream logits: expected floats of shape (35,), got int64 (35,)"),
    (None, "stream logits: expected floats of shape (35,), got object ()"),
    (np.full(35, np.inf, np.float32), "stream logits: expected finite values, got NaN/Inf"),
])
def test_wrong_stream_logits_are_refused_when_assigned(lm, logits, message):
    s = lm.stream()
    s.feed("hel")
    with pytest.raises(ValueError) as e:
        s.logits = logits
    assert message in str(e.value)
    assert s.step() in lm.symbols


def test_an_onnxruntime_failure_is_one_runtime_error_naming_the_model_and_the_inputs(lstm):
    # The safety net under every check: the runtime's own unchecked fast path (``_run``) fed a state of the
    # wrong batch, which the public calls refuse before onnxruntime sees it.
    feed = {"input": np.zeros((2, 1, 3), np.float32), "h_0": np.zeros((2, 4, 5), np.float32),
            "c_0": np.zeros((2, 4, 5), np.float32)}
    with pytest.raises(RuntimeError) as e:
        lstm._run(feed)
    assert str(e.value).startswith("lstm-2layer: onnxruntime failed to run model.onnx on input float32 (2, 1, 3), "
                                   "h_0 float32 (2, 4, 5)")
    assert e.value.__cause__ is None and e.value.__suppress_context__
