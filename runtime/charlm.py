"""Character language models: generate text one symbol per step, the recurrent state carried between steps.

Graph IO: ``chars`` int64 (T, B) -> ``logits`` float32 (T, B, V) next-symbol scores, plus the recurrent state.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .model import Model

CHARS, LOGITS = "chars", "logits"


class CharLM(Model):
    """``generate(prompt, max_chars, temperature, seed)``. Characters outside the symbol table map to unknown."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        vocab = self.manifest.vocab
        self.symbols: list[str] = list(vocab["symbols"])
        self.bos_id: int = vocab["bos"]
        self.eos_id: int = vocab["eos"]
        self.unk_id: int = vocab["unk"]
        specials = {self.bos_id, self.eos_id, self.unk_id}
        self._index = {s: i for i, s in enumerate(self.symbols) if i not in specials}

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"{self.name}: expected text as str, got {type(text).__name__}")
        return np.fromiter((self._index.get(ch, self.unk_id) for ch in text), dtype=np.int64, count=len(text))

    def _step(self, ids: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Feed ids (T,) for one stream; return the last step's logits (V,) and the new state."""
        out = self.run(**{CHARS: self.time_major(CHARS, ids[:, None])}, **state)  # (T, 1) in the graph's layout
        logits = self.time_major(LOGITS, out[LOGITS])[-1, 0]  # (T, 1, V) -> (V,)
        return logits, {i: out[o] for i, o in self.io.state}

    def iter_generate(self, prompt: str = "", max_chars: int = 256, temperature: float = 0.0,
                      seed: int | None = None) -> Iterator[str]:
        """Yield generated characters as they come: the start symbol and the prompt go in as one sequence, then
        one step per character. Stops at the end symbol or after ``max_chars``. Temperature 0 is greedy."""
        if not isinstance(max_chars, int) or max_chars < 0:
            raise ValueError(f"max_chars: expected an int >= 0, got {max_chars!r}")
        if not isinstance(temperature, (int, float)) or not np.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature: expected a finite number >= 0, got {temperature!r}")
        rng = np.random.default_rng(seed)
        ids = np.concatenate([[self.bos_id], self.encode(prompt)]).astype(np.int64)
        logits, state = self._step(ids, {})
        for _ in range(max_chars):
            nxt = self._pick(logits, temperature, rng)
            if nxt == self.eos_id:
                return
            yield self.symbols[nxt]
            logits, state = self._step(np.array([nxt], dtype=np.int64), state)

    def generate(self, prompt: str = "", max_chars: int = 256, temperature: float = 0.0,
                 seed: int | None = None) -> str:
        """The continuation of ``prompt`` (without the prompt itself)."""
        return "".join(self.iter_generate(prompt, max_chars, temperature, seed))

    def _pick(self, logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
        logits = logits.astype(np.float64)
        # Never generate the start or unknown symbol (the unknown may be an input-only id past the logits).
        logits[[i for i in (self.bos_id, self.unk_id) if i < logits.shape[0]]] = -np.inf
        if temperature == 0:
            return int(np.argmax(logits))
        z = logits / temperature
        p = np.exp(z - z.max())
        return int(rng.choice(len(p), p=p / p.sum()))
