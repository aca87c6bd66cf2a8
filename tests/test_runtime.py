"""The runtime's public API: loading, input checks with expected-vs-got errors, omitted state, taggers, char LMs."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from runtime.artifact import ArtifactError

from .conftest import ARTIFACTS, loaded


lstm, tagger, lm = (loaded(n) for n in ("lstm-tutorial", "pos-tutorial", "char-hello"))


def x(t=4, b=2):
    return np.random.default_rng(0).standard_normal((t, b, 3), dtype=np.float32)


def test_load_returns_the_class_for_the_kind(lstm, tagger, lm):
    assert type(lstm) is runtime.Model and isinstance(tagger, runtime.Tagger) and isinstance(lm, runtime.CharLM)


def test_run_returns_every_output_by_name(lstm):
    out = lstm.run(input=x(), h_0=np.zeros((1, 2, 3), np.float32), c_0=np.zeros((1, 2, 3), np.float32))
    assert list(out) == ["output", "h_n", "c_n"]
    assert out["output"].shape == (4, 2, 3) and out["h_n"].shape == (1, 2, 3) and out["c_n"].shape == (1, 2, 3)


def test_omitted_state_means_zeros(lstm):
    zeros = np.zeros((1, 2, 3), np.float32)
    a, b = lstm.run(input=x()), lstm.run(input=x(), h_0=zeros, c_0=zeros)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_session_defaults_suit_edge_cpus(lstm):
    opts = lstm.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    two = runtime.load(ARTIFACTS / "lstm-tutorial", intra_op_threads=2, spinning=True)
    assert two.session.get_session_options().intra_op_num_threads == 2
    assert two.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"


@pytest.mark.parametrize("feed, error, words", [
    ({"input": x().astype(np.float64)}, TypeError, ["expected dtype float32, got float64"]),
    ({"input": x()[0]}, ValueError, ["expected rank 3", "got rank 2"]),
    ({"input": np.zeros((4, 2, 5), np.float32)}, ValueError, ["axis 2 must be 3", "(4, 2, 5)"]),
    ({"input": x(), "h_0": np.zeros((1, 5, 3), np.float32)}, ValueError, ["'batch' disagrees", "2", "5"]),
    ({"input": x(), "bogus": x()}, ValueError, ["unknown input(s) ['bogus']"]),
    ({"h_0": np.zeros((1, 2, 3), np.float32)}, ValueError, ["missing input(s) ['input']"]),
    ({"input": np.zeros((0, 2, 3), np.float32)}, ValueError, ["must have size >= 1"]),
])
def test_bad_input_says_expected_and_got(lstm, feed, error, words):
    with pytest.raises(error) as e:
        lstm.run(**feed)
    for w in words:
        assert w in str(e.value), f"{w!r} not in {str(e.value)!r}"


def test_integer_ids_are_cast_safely(tagger):
    ids = np.array([[0], [1], [2]])
    a = tagger.run(words=ids.astype(np.int64))["scores"]
    b = tagger.run(words=ids.astype(np.int32))["scores"]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="expected dtype int64, got float32"):
        tagger.run(words=ids.astype(np.float32))


def test_unknown_words_map_to_unk(tagger):
    tags = tagger.tag(["The", "zebra", "ate", "the", "🍎"])
    assert len(tags) == 5 and set(tags) <= set(tagger.tags)
    np.testing.assert_array_equal(tagger.encode(["zebra"]), [tagger.unk_id])


def test_tag_batch_of_mixed_lengths_equals_tagging_alone_in_input_order(tagger):
    sentences = [["The", "dog"], "Everybody read that book".split(), [], ["apple"], "The dog ate the apple".split()]
    alone = [tagger.tag(s) for s in sentences]
    assert tagger.tag_batch(sentences) == alone
    for s, scores in zip(sentences, tagger.scores_batch(sentences)):
        np.testing.assert_allclose(scores, tagger.scores_batch([s])[0], atol=1e-6)
    assert alone[2] == []


@pytest.mark.parametrize("bad, error", [("The dog", TypeError), ([1, 2], TypeError), (None, TypeError)])
def test_tag_rejects_non_lists_of_str(tagger, bad, error):
    with pytest.raises(error):
        tagger.tag(bad)


def test_generate_greedy_is_deterministic_and_sampling_follows_the_seed(lm):
    assert lm.generate() == lm.generate()
    a = lm.generate("hello", max_chars=40, temperature=0.8, seed=3)
    assert a == lm.generate("hello", max_chars=40, temperature=0.8, seed=3)
    assert len(lm.generate("hello", max_chars=5, temperature=1.0, seed=1)) <= 5


def test_generate_continues_the_prompt_and_maps_unknown_characters(lm):
    assert lm.generate("hello pytorch.", max_chars=10) == " how long "
    assert isinstance(lm.generate("HÉLLO 🙂 \u200f", max_chars=5), str)  # unknown symbols: no KeyError


@pytest.mark.parametrize("kwargs", [{"max_chars": -1}, {"temperature": -0.1}, {"temperature": float("nan")}])
def test_generate_rejects_bad_arguments(lm, kwargs):
    with pytest.raises(ValueError):
        lm.generate("h", **kwargs)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="not a folder"):
        runtime.load(tmp_path / "nope")
    with pytest.raises(ArtifactError, match="no manifest"):
        runtime.load(tmp_path)
