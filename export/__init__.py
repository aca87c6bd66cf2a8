"""seqedge export: take a trained recurrent torch module to TorchScript + ONNX with dynamic time and batch axes,
verified at many lengths and batch sizes, as an artifact folder the torch-free ``runtime`` loads.

    import export
    export.export_module(model, (tokens, (h_0, c_0)), "artifacts/my-lm",
                         input_names=["input", "h_0", "c_0"],
                         axes={"input": {0: "time", 1: "batch"}, "h_0": {1: "batch"}, "c_0": {1: "batch"}})

The registered models (``python -m export --list``) live in ``export.zoo`` and are built with the same call.
"""

from .errors import DataError, ExportError, ExportWarning, ParityError, PortabilityWarning, SignatureError, WriteError

__all__ = ["export_module", "Check", "ExportError", "ParityError", "SignatureError", "WriteError", "DataError", "ExportWarning", "PortabilityWarning"]


def __getattr__(name: str):
    """``export.export_module`` and ``export.Check`` import torch on first use, not on ``import export``: the command
    line (``python -m export --help``, ``--list``) answers without it."""
    if name in ("export_module", "Check"):
        from . import api
        globals()[name] = value = getattr(api, name)
        return value
    raise AttributeError(f"module 'export' has no attribute {name!r}")
