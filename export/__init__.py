"""seqedge export: take a trained recurrent torch module to TorchScript + ONNX with dynamic time and batch axes,
verified at many lengths and batch sizes, as an artifact folder the torch-free ``runtime`` loads.

    import export
    export.export_module(model, (tokens, (h_0, c_0)), "artifacts/my-lm",
                         input_names=["input", "h_0", "c_0"],
                         axes={"input": {0: "time", 1: "batch"}, "h_0": {1: "batch"}, "c_0": {1: "batch"}})

The registered models (``python -m export --list``) live in ``export.zoo`` and are built with the same call.
"""

from .api import Check, export_module
from .errors import DataError, ExportError, ExportWarning, ParityError, PortabilityWarning, SignatureError, WriteError

__all__ = ["export_module", "Check", "ExportError", "ParityError", "SignatureError", "WriteError", "DataError", "ExportWarning", "PortabilityWarning"]
