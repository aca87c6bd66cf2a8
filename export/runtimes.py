"""Run an exported ONNX model in several mainstream runtimes, to check that they agree with onnxruntime.

``load(name, path)`` returns a function from a feed (input name -> array) to every graph output (output name ->
array, in graph order), for one of ``RUNTIMES``:

- ``onnxruntime``: an ``InferenceSession`` on the CPU execution provider, one intra-op thread.
- ``onnx-reference``: ``onnx.reference.ReferenceEvaluator``, the ONNX package's pure-numpy reference.
- ``openvino``: the model compiled for CPU with dynamic shapes kept and ``INFERENCE_PRECISION_HINT`` f32 (the CPU
  plugin runs in bf16 by default on CPUs that have it).
- ``tract``: sonos/tract's Python bindings; the ONNX graph's symbolic dimensions (``time``, ``batch``...) stay
  symbols, so one loaded model runs any sequence length or batch size.

Each runtime's package is imported only when asked for: ``available()`` reports versions without failing, and
``load`` raises ``RuntimeUnavailable`` when the package is missing, or ``RuntimeError`` (message starting with the
runtime's name) when the runtime refuses the model. This module does not import torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import numpy as np

RUNTIMES = ("onnxruntime", "onnx-reference", "openvino", "tract")

Feed = dict[str, np.ndarray]
Runner = Callable[[Feed], dict[str, np.ndarray]]

_PACKAGES = {"onnxruntime": "onnxruntime", "onnx-reference": "onnx", "openvino": "openvino", "tract": "tract"}


class RuntimeUnavailable(RuntimeError):
    """The Python package of a runtime is not installed (or fails to import)."""

    def __init__(self, name: str, reason: str = "") -> None:
        self.name = name
        detail = f": {reason}" if reason else ""
        super().__init__(f"{name}: runtime unavailable, package {_PACKAGES.get(name, name)!r} not importable{detail}")


def _check_name(name: str) -> None:
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime: expected one of {', '.join(RUNTIMES)}, got {name!r}")


def _import(name: str, module: str | None = None):
    try:
        return importlib.import_module(module or _PACKAGES[name])
    except ImportError as e:
        raise RuntimeUnavailable(name, str(e)) from e


def _version(name: str) -> str | None:
    try:
        if name == "tract":
            return str(_import(name).version())
        return str(_import(name).__version__)
    except Exception:  # an installed but broken package counts as unavailable here
        return None


def available() -> dict[str, str | None]:
    """Runtime name -> version string of its package, or None where it is not importable."""
    return {name: _version(name) for name in RUNTIMES}


def _graph_io(onnx_path: Path) -> tuple[list[str], list[str]]:
    """Input names (initializers excluded) and output names of the graph, in graph order."""
    onnx = _import("onnx-reference")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers], [o.name for o in graph.output]


def _order(name: str, inputs: list[str], feed: Feed) -> list[np.ndarray]:
    if set(feed) != set(inputs):
        raise ValueError(f"{name}: feed names: expected {sorted(inputs)}, got {sorted(feed)}")
    return [np.asarray(feed[n]) for n in inputs]


def _load_onnxruntime(onnx_path: Path) -> Runner:
    ort = _import("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]

    def run(feed: Feed) -> dict[str, np.ndarray]:
        return dict(zip(outputs, session.run(outputs, feed)))

    return run


def _load_reference(onnx_path: Path) -> Runner:
    reference = _import("onnx-reference", "onnx.reference")
    evaluator = reference.ReferenceEvaluator(str(onnx_path))
    outputs = list(evaluator.output_names)

    def run(feed: Feed) -> dict[str, np.ndarray]:
        return {n: np.asarray(v) for n, v in zip(outputs, evaluator.run(outputs, feed))}

    return run


def _load_openvino(onnx_path: Path) -> Runner:
    ov = _import("openvino")
    core = ov.Core()
    model = core.read_model(str(onnx_path))  # partial shapes stay dynamic: no reshape
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ports = list(compiled.outputs)
    outputs = [p.get_any_name() for p in ports]
    request = compiled.create_infer_request()

    def run(feed: Feed) -> dict[str, np.ndarray]:
        result = request.infer(feed)  # an OVDict keyed by output ports (ConstOutput), not by names
        return {n: np.array(result[p]) for n, p in zip(outputs, ports)}  # copy: the request reuses its buffers

    return run


def _tract_message(error: Exception) -> str:
    """tract's error text without the Rust backtrace that RUST_BACKTRACE=1 appends."""
    return str(error).split("\n\nStack backtrace:")[0].strip()


def _load_tract(onnx_path: Path) -> Runner:
    tract = _import("tract")
    inputs, outputs = _graph_io(onnx_path)
    try:
        # The ONNX input facts carry the graph's dim_params as tract symbols: the typed model is symbolic in
        # time/batch and is optimized once for all sizes, the symbols resolved from the inputs at each run.
        model = tract.onnx().load(str(onnx_path)).into_model()
        if model.input_count() != len(inputs) or model.output_count() != len(outputs):
            raise RuntimeError(
                f"tract: inputs/outputs: expected {len(inputs)}/{len(outputs)}, "
                f"got {model.input_count()}/{model.output_count()}"
            )
        runnable = model.into_runnable()
    except tract.TractError as e:
        raise RuntimeError(f"tract: refused {onnx_path}: {_tract_message(e)}") from e

    def run(feed: Feed) -> dict[str, np.ndarray]:
        try:
            values = runnable.run(_order("tract", inputs, feed))
        except tract.TractError as e:
            raise RuntimeError(f"tract: run failed: {_tract_message(e)}") from e
        return {n: v.to_numpy() for n, v in zip(outputs, values)}

    return run


_LOADERS: dict[str, Callable[[Path], Runner]] = {
    "onnxruntime": _load_onnxruntime,
    "onnx-reference": _load_reference,
    "openvino": _load_openvino,
    "tract": _load_tract,
}


def load(name: str, onnx_path: Path | str) -> Runner:
    """A function running ``onnx_path`` in runtime ``name``: feed (input name -> array) -> every output, in order.

    Raises ``RuntimeUnavailable`` when the runtime's package is not installed, ``FileNotFoundError`` for a missing
    model, and ``RuntimeError`` (message starting with the runtime's name) when the runtime refuses the model.
    """
    _check_name(name)
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model: expected a file, got {str(path)!r}")
    return _LOADERS[name](path)
