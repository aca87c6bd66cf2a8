"""A progress line for long commands (``loss``, ``eval``): written to stderr in place, at most twice a second,
only where stderr is a terminal (a pipe or a log file gets the result alone). Standard library only."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("loss", total, "chars") as p: ... p.update(done)``; the line ends when the block does.

    ``total`` None: counts without a percentage. ``stream``: stderr by default; nothing is written unless it is a
    terminal (``enabled`` overrides that)."""

    def __init__(self, what: str, total: int | None = None, unit: str = "", stream: TextIO | None = None,
                 enabled: bool | None = None, every: float = 0.5):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.stream = sys.stderr if stream is None else stream
        self.enabled = (hasattr(self.stream, "isatty") and self.stream.isatty()) if enabled is None else enabled
        self.start = self._last = time.perf_counter()
        self.done, self._shown = 0, False  # _shown: a line is on the terminal, to be rewritten

    def update(self, done: int) -> None:
        self.done = done
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every:
            self._last = now
            self._write("\r")

    def _write(self, lead: str, end: str = "") -> None:
        elapsed = time.perf_counter() - self.start
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        of = f"/{self.total:,}" if self.total is not None else ""
        self.stream.write(f"{lead}{self.what}: {self.done:,}{of} {self.unit}{share}, {elapsed:.1f} s{end}")
        self.stream.flush()
        self._shown = True

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, error: type | None, *exc) -> None:
        if self.enabled and error is None:  # the final count, and the line ended
            self._write("\r" if self._shown else "", "\n")
        elif self.enabled and self._shown:  # an error follows: on a line of its own
            self.stream.write("\n")
