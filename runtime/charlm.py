"""Character language models: text in, one symbol per step out, the recurrent state carried between steps.

Graph IO: ``chars`` int64 (T, B) -> ``logits`` float32 (T, B, V) next-symbol scores, plus the recurrent state
(``h_0``/``c_0`` in, ``h_n``/``c_n`` out, (L, B, H)).

A ``Stream`` is one independent text: ``feed(text)``, ``step()``, ``reset()``. ``CharLM.step_streams`` advances
many streams together in one batched session.run, their states stacked on the batch axis (as sherpa-onnx does),
and gives each stream exactly what stepping it alone would.

Thread safety: a loaded ``CharLM`` may be shared by threads (onnxruntime sessions are): ``generate``,
``iter_generate`` and ``loss`` keep their state in locals. A ``Stream`` holds mutable state (recurrent state,
pending text, its random generator): it is per-thread, use each stream from one thread at a time (and pass
``step_streams`` streams no other thread is using).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .artifact import MANIFEST, ArtifactError
from .model import STREAM_ROWS, MAX_STEPS, Model
from . import stream as streams_

CHARS, LOGITS = "chars", "logits"
FEED_CHUNK = 1024  # symbols per session.run when feeding text: bounds memory for any input length


def _int(name: str, value, low: int, none_ok: bool = False) -> int | None:
    """``value`` as a Python int >= ``low`` (Python or numpy ints; not bools), or a ValueError naming it."""
    if value is None and none_ok:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected {'None or ' if none_ok else ''}an int >= {low}, got {value!r}")
    return int(value)


def _number(name: str, value) -> float:
    """``value`` as a finite Python float >= 0 (Python or numpy ints and floats; not bools), or a ValueError."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    try:
        number = float(value) if ok else np.nan
    except OverflowError:  # an int too large for a float
        number = np.inf
    if not (np.isfinite(number) and number >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return number


class CharLM(Model):
    """``generate(prompt, max_chars, temperature, top_k, seed)`` and ``stream(...)``. Characters outside the
    symbol table map to the unknown symbol."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        vocab = self.manifest.vocab
        self.symbols: list[str] = list(vocab["symbols"])
        self.bos_id: int = vocab["bos"]  # fed first into every stream
        self.eos_id: int | None = vocab.get("eos")  # generation stops here (None: never)
        self.unk_id: int = vocab["unk"]
        self.never_generate: list[int] = list(vocab.get("never_generate", [self.unk_id]))
        specials = {self.unk_id, *self.never_generate} - {None}
        self._check_vocab("symbols", len(self.symbols), self.embedding_rows(CHARS), "rows in the input embedding")
        self.n_scores: int | None = self.output_dim(LOGITS)  # symbols the graph scores (None: symbolic axis)
        if self.n_scores is not None and not len(self.symbols) - 1 <= self.n_scores <= len(self.symbols):
            # The graph may leave out the unknown symbol (never predicted), no more.
            self._check_vocab("symbols", len(self.symbols), self.n_scores, f"output {LOGITS!r} scores that many")
        for what in ("bos", "eos", "unk"):
            i = vocab.get(what)
            if i is not None and not (isinstance(i, int) and 0 <= i < len(self.symbols)):
                raise ArtifactError(f"{self.folder / MANIFEST}: vocab {what!r}: expected a symbol id in "
                                    f"[0, {len(self.symbols)}), got {i!r}")
        self._index = {s: i for i, s in enumerate(self.symbols) if i not in specials}

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"{self.name}: expected text as str, got {type(text).__name__}")
        return np.fromiter((self._index.get(ch, self.unk_id) for ch in text), dtype=np.int64, count=len(text))

    def _chunks(self, parts: Iterable[str | np.ndarray], size: int = FEED_CHUNK) -> Iterator[np.ndarray]:
        """The ids of ``parts`` (texts, or arrays of ids) one after the other, in arrays of ``size`` (the last may
        be shorter), each text encoded a piece at a time: memory stays flat however long the text is."""
        buf: list[np.ndarray] = []
        n = 0
        for part in parts:
            for start in range(0, len(part), size):
                ids = part[start:start + size]
                ids = self.encode(ids) if isinstance(ids, str) else ids
                while len(ids):
                    buf.append(ids[:size - n])
                    n, ids = n + len(buf[-1]), ids[len(buf[-1]):]
                    if n == size:
                        yield np.concatenate(buf)
                        buf, n = [], 0
        if n:
            yield np.concatenate(buf)

    def loss(self, text: str, progress: Callable[[int], None] | None = None) -> float:
        """Mean negative log-likelihood, in nats per character, of each character of ``text`` given those before
        it (a character outside the symbols, after the first, is a ValueError naming it: the model gives it no
        probability): one stream from a zero state (no start symbol), fed ``FEED_CHUNK`` characters per session.run and
        encoded a chunk at a time (memory stays flat for any length). ``progress(characters scored so far)`` is
        called after each run."""
        if not isinstance(text, str):
            raise TypeError(f"{self.name}: expected text as str, got {type(text).__name__}")
        if len(text) < 2:
            raise ValueError(f"{self.name}: loss needs at least 2 characters, got {len(text)}")
        state = {i: self.zero_state(i, 1) for i, _ in self.io.state}
        if self.n_scores is not None and self.unk_id >= self.n_scores:  # the graph gives unknown symbols no score
            bad = next((i for i, ch in enumerate(text) if i and ch not in self._index), None)
            if bad is not None:
                raise ValueError(f"{self.name}: loss: character {text[bad]!r} at position {bad} is outside the "
                                 f"model's symbols, which it gives no probability (unknown characters are read as "
                                 f"the unknown symbol, but cannot be scored): remove or replace them first")
        total, scored = 0.0, 0
        chunks = self._chunks([text])
        x = next(chunks)
        while len(x):  # x: the ids of one run
            nxt = next(chunks, x[:0])
            y = np.concatenate([x[1:], nxt[:1]])  # the id after each (the text's last id has none)
            if not len(y):
                break
            out = self.run(**{CHARS: self.time_major(CHARS, x[:len(y), None])}, **state)
            state = {i: out[o] for i, o in self.io.state}
            logits = self.time_major(LOGITS, out[LOGITS])[:, 0].astype(np.float64)  # (T, V)
            if y.max() >= logits.shape[1]:
                raise ValueError(f"{self.name}: the text has characters outside the model's symbols")
            m = logits.max(axis=1, keepdims=True)
            log_z = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
            total += float((log_z - logits[np.arange(len(y)), y]).sum())
            scored += len(y)
            if progress is not None:
                progress(scored)
            x = nxt
        return total / (len(text) - 1)

    def stream(self, temperature: float = 0.0, top_k: int | None = None, seed: int | None = None) -> "Stream":
        return Stream(self, temperature, top_k, seed)

    def step_streams(self, streams: Sequence["Stream"]) -> list[str]:
        """Advance every stream by one symbol in one batched session.run; returns each stream's new symbol
        ("" for a stream that ended). Each stream samples with its own temperature, top_k and seed. The whole
        list is checked before any stream moves: a refused call changes nothing."""
        if isinstance(streams, (Stream, str)) or not isinstance(streams, Iterable):
            raise TypeError(f"{self.name}: step_streams: expected a sequence of streams, got "
                            f"{type(streams).__name__}")
        streams = list(streams)
        seen: dict[int, int] = {}  # id(stream) -> its first index
        for b, s in enumerate(streams):
            streams_.check_stream(self, s, Stream, b, seen, "step_streams", "streams[{}]")
        picks: dict[int, int] = {}  # stream index -> the symbol it picked and feeds back
        for b, s in enumerate(streams):
            s._flush()
            if not s.ended:
                nxt = s._pick()
                if not s.ended:  # picking the end symbol ends the stream
                    picks[b] = nxt
        live = [streams[b] for b in picks]
        feeds = [{CHARS: np.array([[i]], dtype=np.int64), **s._state} for s, i in zip(live, picks.values())]
        if len(live) == 1:  # one stream (generate): its own run, no stacking and splitting
            live[0]._carry(feeds[0])
        elif live:  # one session.run for every stream, their states stacked on the batch axis
            for s, out in zip(live, streams_.stacked_run(self, feeds, STREAM_ROWS, MAX_STEPS)):
                s._keep(out)
        for s in live:
            s._logits = self.time_major(LOGITS, s._outputs[LOGITS])[-1, 0]  # (T, 1, V) -> (V,)
        return [self.symbols[picks[b]] if b in picks else "" for b in range(len(streams))]

    def iter_generate(self, prompt: str = "", max_chars: int = 256, temperature: float = 0.0,
                      top_k: int | None = None, seed: int | None = None) -> Iterator[str]:
        """Yield generated characters as they come: the start symbol and the prompt go in as one sequence, then
        one step per character. Stops at the end symbol or after ``max_chars``. Temperature 0 is greedy. The
        arguments are checked (and the prompt read) when called, not at the first character."""
        max_chars = _int("max_chars", max_chars, 0)
        s = self.stream(temperature, top_k, seed)
        s.feed(prompt)
        return self._generated(s, max_chars)

    @staticmethod
    def _generated(s: "Stream", max_chars: int) -> Iterator[str]:
        for _ in range(max_chars):
            ch = s.step()
            if s.ended:
                return
            yield ch

    def generate(self, prompt: str = "", max_chars: int = 256, temperature: float = 0.0,
                 top_k: int | None = None, seed: int | None = None) -> str:
        """The continuation of ``prompt`` (without the prompt itself). The same seed gives the same text."""
        return "".join(self.iter_generate(prompt, max_chars, temperature, top_k, seed))


class Stream(streams_.Stream):
    """One text stream: ``feed(text)`` reads text (state carried), ``step()`` produces the next character,
    ``reset()`` starts over. Text is encoded and fed ``FEED_CHUNK`` symbols per session.run, so memory stays flat
    however much is fed. The state is carried by runtime.stream.Stream, as for any artifact's stream.

    Arguments: ``temperature`` a finite number >= 0 (0: greedy; scores are scaled relative to the best one, so a
    tiny temperature such as 5e-324 tends to greedy without overflow, ties shared evenly); ``top_k`` None or an
    int >= 1; ``seed`` None or an int >= 0 (a ``numpy.random.Generator`` is refused: ``reset`` could not
    re-seed it). numpy ints and floats are accepted as Python ones; bools are refused."""

    def __init__(self, lm: CharLM, temperature: float = 0.0, top_k: int | None = None, seed: int | None = None):
        self.lm, self.temperature = lm, _number("temperature", temperature)
        self.top_k = _int("top_k", top_k, 1, none_ok=True)
        self._seed = _int("seed", seed, 0, none_ok=True)
        super().__init__(lm)

    def reset(self) -> None:
        """Back to the start: zero state, the start symbol pending, the random generator re-seeded."""
        super().reset()
        self._state = {i: self.lm.zero_state(i, 1) for i, _ in self.lm.io.state}  # one text: batch 1
        self._logits: np.ndarray | None = None  # (V,) scores of the next symbol, once the start symbol is read
        self._pending: list[str | np.ndarray] = [np.array([self.lm.bos_id], dtype=np.int64)]  # read by _flush
        self.ended = False
        self.rng = np.random.default_rng(self._seed)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The recurrent state carried between runs: {state input name (``h_0``, ``c_0``): array with batch 1}.
        Save it with ``logits`` and assign both back to resume the stream (or copy them from another stream of
        the same model); assigned values are checked here, so a wrong one is a ValueError/TypeError, not an
        error deep inside a run. Both directions copy: the stream never shares its arrays with the caller."""
        return {k: v.copy() for k, v in self._state.items()}

    @state.setter
    def state(self, value: Mapping[str, np.ndarray]) -> None:
        self._state = self.lm.check_state(value, "stream state", batch=1)  # copies; dtype, rank, axes, finite

    @property
    def logits(self) -> np.ndarray | None:
        """Scores (V,) of the next symbol, from which ``step`` picks; None before the stream has read anything.
        A copy, and assigning copies too."""
        return None if self._logits is None else self._logits.copy()

    @logits.setter
    def logits(self, value: np.ndarray) -> None:
        arr = np.array(value)  # a copy: later changes to ``value`` do not reach the stream
        n = self.lm.n_scores or len(self.lm.symbols)
        if arr.dtype.kind != "f" or arr.shape != (n,):
            raise ValueError(f"{self.lm.name}: stream logits: expected floats of shape ({n},), got {arr.dtype} "
                             f"{arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{self.lm.name}: stream logits: expected finite values, got NaN/Inf")
        self._logits = arr

    def feed(self, text: str) -> None:
        """Read ``text`` (any length); nothing is generated. A stream that ended (generated the end symbol)
        reads nothing more: feeding it is a ValueError until ``reset()``."""
        if not isinstance(text, str):
            raise TypeError(f"{self.lm.name}: expected text as str, got {type(text).__name__}")
        if self.ended:
            raise ValueError(f"{self.lm.name}: feed: expected a live stream, got one that has ended (it generated "
                             f"the end symbol); call reset() to start over")
        self._pending.append(text)
        self._flush()

    def step(self) -> str:
        """Pick the next character from the model, feed it back, and return it ("" once the stream ended)."""
        return self.lm.step_streams([self])[0]

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for ids in self.lm._chunks(pending):
            out = self._carry({CHARS: np.ascontiguousarray(self.lm.time_major(CHARS, ids[:, None])), **self._state})
            self._logits = self.lm.time_major(LOGITS, out[LOGITS])[-1, 0]  # (T, 1, V) -> (V,)

    def _pick(self) -> int:
        logits = self._logits.astype(np.float64)
        never = [i for i in self.lm.never_generate if i < logits.shape[0]]
        logits[never] = -np.inf
        if self.temperature == 0:
            nxt = int(np.argmax(logits))
        else:
            if self.top_k is not None and self.top_k < logits.shape[0]:
                cut = np.partition(logits, -self.top_k)[-self.top_k]
                logits[logits < cut] = -np.inf
            with np.errstate(over="ignore"):  # a tiny temperature: -inf for all but the best, not NaN
                z = (logits - logits.max()) / self.temperature  # <= 0, the best 0
            p = np.exp(z)
            nxt = int(self.rng.choice(len(p), p=p / p.sum()))
        if nxt == self.lm.eos_id:
            self.ended = True
        return nxt
