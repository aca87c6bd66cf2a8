"""Char-LM streams under adversarial use: step_streams refuses a bad list before moving any stream, state and
logits never share arrays with the caller, odd arguments are accepted or refused clearly, and long text is
encoded and run in chunks (flat memory)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ARTIFACTS, ROOT, loaded

lm = loaded("char-shakespeare")
hello = loaded("char-hello")

ENDING = "hello pytorch. how long can a rnn cell remember? show me your limit!"  # char-hello ends right after


def fed(model, prompt="ROMEO:", **kwargs):
    s = model.stream(**kwargs)
    s.feed(prompt)
    return s


def text_of(s, n=40):
    return "".join(s.step() for _ in range(n))


# ---- 1. step_streams checks the whole list, then acts ---------------------------------------------------------

def test_an_ending_prompt_ends_char_hello_at_the_next_step(hello):
    s = fed(hello, ENDING)
    assert s.step() == "" and s.ended, "precondition: greedy char-hello ends right after ENDING"


@pytest.mark.parametrize("case", ["same stream twice", "later stream of another model", "None in the list",
                                  "not a list"])
def test_a_refused_step_streams_call_moves_no_stream(lm, hello, case):
    settings = [("ROMEO:", {"temperature": 0.9, "seed": 3}), ("KING", {"temperature": 0.7, "top_k": 5, "seed": 8})]
    streams = [fed(lm, p, **kw) for p, kw in settings]
    other = fed(hello, "hello")
    bad, error, message = {
        "same stream twice": ([streams[0], streams[1], streams[0]], ValueError,
                              "streams[2]: expected distinct streams, got the stream of streams[0] again"),
        "later stream of another model": ([*streams, other], ValueError,
                                          "streams[2]: expected a stream of this loaded model, 'char-shakespeare' "
                                          "(model.onnx), got one of 'char-hello' (model.onnx)"),
        "None in the list": ([*streams, None], TypeError, "streams[2]: expected a Stream, got NoneType"),
        "not a list": (streams[0], TypeError, "expected a sequence of streams, got Stream"),
    }[case]
    with pytest.raises(Exception) as e:
        lm.step_streams(bad)
    expected = [text_of(fed(lm, p, **kw)) for p, kw in settings]  # fresh streams, same seeds
    assert [text_of(s) for s in streams] == expected, f"{case}: a refused call moved a stream"
    assert isinstance(e.value, error) and message in str(e.value), f"{case}: {e.value!r}"


def test_a_refused_step_streams_call_does_not_end_an_earlier_stream(lm, hello):
    ending = fed(hello, ENDING)
    with pytest.raises(ValueError) as e:
        hello.step_streams([ending, fed(lm)])
    assert not ending.ended, "earlier stream of a refused call: it ended"
    assert "streams[1]: expected a stream of this loaded model, 'char-hello' (model.onnx), got one of " \
        "'char-shakespeare' (model.onnx)" in str(e.value), e.value
    assert ending.step() == "" and ending.ended, "earlier stream of a refused call: it did not end at its step"


def test_step_streams_of_the_same_stream_twice_is_refused_not_stepped_once(lm):
    s = fed(lm)
    with pytest.raises(Exception) as e:
        s.lm.step_streams([s, s])
    assert text_of(s) == lm.generate("ROMEO:", 40), "[s, s]: the state advanced"
    assert isinstance(e.value, ValueError) and "expected distinct streams" in str(e.value), f"[s, s]: {e.value!r}"


# ---- 2. state and logits are copied both ways -----------------------------------------------------------------

def _poison(arrays):
    for a in arrays:
        a[...] = np.nan


@pytest.mark.parametrize("case", ["state got", "state assigned", "logits got", "logits assigned"])
def test_state_and_logits_share_no_array_with_the_caller(lm, case):
    expected = lm.generate("ROMEO", 40)  # ":" first (NaN logits would pick symbol 0, "\n")
    s = fed(lm, "ROMEO")
    if case == "state got":
        _poison(s.state.values())
    elif case == "logits got":
        _poison([s.logits])
    else:
        saved, logits = s.state, s.logits
        s = fed(lm, "")  # a stream that has read its start symbol, then takes over the saved one
        s.state, s.logits = saved, logits
        _poison(saved.values() if case == "state assigned" else [logits])
    assert text_of(s) == expected, f"{case}: NaN written into the caller's array reached the stream"


# ---- 3. odd arguments -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [5e-324, 1e-310, 1e-300, 1e-30])
def test_a_tiny_temperature_samples_the_best_symbol(lm, temperature):
    greedy = lm.generate("ROMEO:", 60)
    assert lm.generate("ROMEO:", 60, temperature=temperature, seed=1) == greedy, f"temperature={temperature!r}"


@pytest.mark.parametrize("name, value, as_python", [
    ("temperature", np.float32(0.75), 0.75),
    ("temperature", np.float64(0.8), 0.8),
    ("temperature", np.int64(1), 1),
    ("top_k", np.int32(5), 5),
    ("top_k", np.int64(5), 5),
    ("max_chars", np.int64(30), 30),
    ("max_chars", np.uint16(30), 30),
    ("seed", np.int64(3), 3),
    ("seed", np.uint32(3), 3),
])
def test_numpy_scalars_are_accepted_as_python_numbers(lm, name, value, as_python):
    args = {"max_chars": 30, "temperature": 0.8, "top_k": 10, "seed": 3}
    got = lm.generate("ROMEO:", **{**args, name: value})
    assert got == lm.generate("ROMEO:", **{**args, name: as_python}), f"{name}={value!r} ({type(value).__name__})"


@pytest.mark.parametrize("name, value, message", [
    ("seed", -1, "seed: expected None or an int >= 0, got -1"),
    ("seed", np.int64(-1), "seed: expected None or an int >= 0, got"),
    ("seed", True, "seed: expected None or an int >= 0, got True"),
    ("seed", 1.5, "seed: expected None or an int >= 0, got 1.5"),
    ("seed", "3", "seed: expected None or an int >= 0, got '3'"),
    ("seed", [1, 2], "seed: expected None or an int >= 0, got [1, 2]"),
    ("seed", np.random.default_rng(0), "seed: expected None or an int >= 0, got Generator"),
    ("temperature", True, "temperature: expected a finite number >= 0, got True"),
    ("temperature", "0.5", "temperature: expected a finite number >= 0, got '0.5'"),
    ("temperature", None, "temperature: expected a finite number >= 0, got None"),
    ("temperature", np.float32("nan"), "temperature: expected a finite number >= 0, got"),
    ("temperature", 10 ** 400, "temperature: expected a finite number >= 0, got 1000"),
    ("top_k", True, "top_k: expected None or an int >= 1, got True"),
    ("top_k", 5.0, "top_k: expected None or an int >= 1, got 5.0"),
    ("top_k", "5", "top_k: expected None or an int >= 1, got '5'"),
    ("max_chars", True, "max_chars: expected an int >= 0, got True"),
    ("max_chars", None, "max_chars: expected an int >= 0, got None"),
    ("max_chars", np.float64(3.0), "max_chars: expected an int >= 0, got"),
])
def test_bools_and_non_numbers_are_refused_naming_the_argument(lm, name, value, message):
    with pytest.raises(ValueError) as e:
        lm.generate("ROMEO:", **{"max_chars": 5, name: value})
    assert message in str(e.value), f"{name}={value!r}: {e.value}"


def test_iter_generate_checks_its_arguments_when_called(lm):
    for name, value in [("max_chars", -1), ("seed", -1), ("temperature", -1.0), ("top_k", 0)]:
        with pytest.raises(ValueError, match=f"{name}: expected"):
            lm.iter_generate("ROMEO:", **{name: value})  # not only at the first next()


def test_feeding_an_ended_stream_is_refused(hello):
    s = fed(hello, ENDING)
    assert s.step() == "" and s.ended
    with pytest.raises(ValueError) as e:
        s.feed("hello")
    assert "has ended" in str(e.value) and "reset()" in str(e.value), f"feed after the end: {e.value}"
    s.reset()
    s.feed(ENDING)
    assert s.step() == "", "feed after reset of an ended stream"


# ---- 4. long text: encoded and run in chunks, memory flat ------------------------------------------------------

MEMORY = """
import json, sys
import runtime
lm = runtime.load(sys.argv[1])
what, n = sys.argv[2], int(sys.argv[3])
text = ("hello world, how are you? " * (n // 26 + 1))[:n]
lm.stream().feed(text[:5000]); lm.loss(text[:5000])  # warm up onnxruntime's buffers
if what == "loss refused at the 2nd character":
    text = "h\\u00e9" + text  # the model does not score its unknown symbol: loss refuses the first chunk

def kb(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key + ":")).split()[1])

open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
base = kb("VmRSS")
try:
    lm.stream().feed(text) if what == "feed" else lm.loss(text)
    error = None
except ValueError as e:
    error = str(e)
print(json.dumps({"grew_mb": (kb("VmHWM") - base) / 1024, "error": error}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("what, n", [("feed", 2_000_000), ("loss", 2_000_000),
                                     ("loss refused at the 2nd character", 20_000_000)])
def test_long_text_is_encoded_and_run_in_chunks_with_flat_memory(what, n):
    """Peak resident memory (VmHWM, reset to VmRSS just before the call) grows < 8 MB. char-hello runs about
    3.5 s per million characters on 2 cores, so feed and loss run over 2M characters (~7 s each), where encoding
    the whole text first costs 32 MB (feed: ids and their concatenation with the start symbol) and 16 MB (loss).
    The 20M case shows the same at the issue's scale without running it all: loss refuses the first chunk (an
    unscored character), before which whole-text encoding had already taken 160 MB."""
    proc = subprocess.run([sys.executable, "-c", MEMORY, str(ARTIFACTS / "char-hello"), what, str(n)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"{what}: {proc.stderr}"
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (r["error"] is None) == (what != "loss refused at the 2nd character"), f"{what}: {r}"
    assert r["grew_mb"] < 8, f"{what} on {n:,} characters: peak resident memory grew {r['grew_mb']:.1f} MB"


def test_chunked_loss_and_feed_match_whole_runs(hello):
    """Chunk edges (1,024 symbols per run) do not change results: loss equals one whole-text run's."""
    text = ("hello pytorch. how long can a rnn cell remember? " * 60)[:2_500]
    for n in (2, 3, 1024, 1025, 1026, 2049, 2_500):
        ids = hello.encode(text[:n])
        out = hello.run(chars=ids[:-1, None])
        logits = out["logits"][:, 0].astype(np.float64)
        m = logits.max(axis=1)
        nll = m + np.log(np.exp(logits - m[:, None]).sum(axis=1)) - logits[np.arange(n - 1), ids[1:]]
        assert abs(hello.loss(text[:n]) - nll.mean()) < 1e-4, f"loss of {n} characters"
    s = hello.stream()
    s.feed(text)
    out = hello.run(chars=np.concatenate([[hello.bos_id], hello.encode(text)])[:, None])
    np.testing.assert_allclose(s.state["h_0"], out["h_n"], atol=1e-4, err_msg="feed of 2,500 characters")



def test_a_stream_of_another_load_of_the_same_artifact_names_the_file(lm):
    """int8 and ORT loads of one artifact share its name: the message tells them apart (issue 23, item 10)."""
    import runtime

    q = runtime.load(ARTIFACTS / "char-shakespeare", variant="int8", format="ort")
    with pytest.raises(ValueError) as e:
        lm.step_streams([q.stream()])
    assert "this loaded model, 'char-shakespeare' (model.onnx), got one of 'char-shakespeare' (model.int8.ort)" \
        in str(e.value), e.value


def test_loss_names_a_character_it_cannot_score(lm):
    with pytest.raises(ValueError, match=r"loss: character 'é' at position 3 is outside the model's symbols"):
        lm.loss("abcé and more")
