"""Every error the export side raises, in one place and under one base: ``except ExportError`` catches them all.

- ``ExportError``: nothing was written; the message names the model and what failed (each path tried, with the
  first line of torch's own message).
- ``ParityError``: the exported files were made but disagree with eager torch (or a model's own check failed).
- ``SignatureError``: the arguments of ``export_module`` do not describe the module.
- ``WriteError``: the file system refused (a read-only place, a full disk); a previous artifact is intact.
- ``DataError``: training data or a checkpoint is missing or malformed (the model zoo).

Warnings (the artifact is written): ``ExportWarning``, e.g. an axis fixed because none was declared, and its
subclass ``PortabilityWarning``: an ONNX runtime other than onnxruntime refused model.onnx or answered differently
(``portable=True`` makes that an error).
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


class UsageError(ValueError):
    """A bad ``python -m export`` command line, found before any work: exit status 2 with one line."""


class ExportWarning(UserWarning):
    """Something the export did that is rarely meant, said in one line; the artifact is written."""


class PortabilityWarning(ExportWarning):
    """Another ONNX runtime refused model.onnx or disagrees with onnxruntime, which agrees with torch."""
