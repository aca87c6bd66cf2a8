"""Every error the export side raises, in one place and under one base: ``except ExportError`` catches them all.

- ``ExportError``: nothing was written; the message names the model and what failed (each path tried, with the
  first line of torch's own message).
- ``ParityError``: the exported files were made but disagree with eager torch (or a model's own check failed).
- ``SignatureError``: the arguments of ``export_module`` do not describe the module.
- ``WriteError``: the file system refused (a read-only place, a full disk); a previous artifact is intact.
- ``DataError``: training data or a checkpoint is missing or malformed (the model zoo).
"""

from __future__ import annotations


class ExportError(Exception):
    """An export produced something we will not ship (pinned axes, checker failure, ...)."""


class ParityError(ExportError):
    """Backends disagree beyond tolerance, or an artifact check failed; the message lists every failure."""


class SignatureError(ExportError, ValueError):
    """The arguments of ``export_module`` do not describe the module (wrong names, axes, lengths, ...)."""


class WriteError(ExportError):
    """The artifact cannot be written where asked: one line naming the place and the reason. Nothing was written
    there and a previous artifact is intact."""


class DataError(ExportError):
    """Training data or a checkpoint is missing or malformed."""
