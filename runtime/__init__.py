"""seqedge runtime: run exported recurrent models with numpy + onnxruntime only (never torch).

    import runtime
    tagger = runtime.load("artifacts/pos-tutorial")
    tagger.tag("The dog ate the apple".split())      # ['DET', 'NN', 'V', 'DET', 'NN']
    lm = runtime.load("artifacts/char-hello")
    lm.generate()                                    # 'hello pytorch. how long can a rnn cell remember? ...'
    rnn = runtime.load("artifacts/lstm-tutorial")
    rnn.run(input=x)                                 # {'output': ..., 'h_n': ..., 'c_n': ...}
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"  # the package's one version (pyproject.toml reads it)
__all__ = ["load", "Model", "Tagger", "CharLM", "Manifest", "ArtifactError"]

# Nothing is imported by `import runtime` itself: numpy and onnxruntime on the first load (or use of a name below),
# so that the command lines' --help and --version answer in an interpreter start.
_LAZY = {"Model": "model", "Tagger": "tagger", "CharLM": "charlm", "Manifest": "artifact",
         "ArtifactError": "artifact"}  # name -> its module
_CLASSES = {"recurrent": "Model", "tagger": "Tagger", "char-lm": "CharLM", "module": "Model"}  # manifest kind ->


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        globals()[name] = value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        return value
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


def load(path: str | Path, *, variant: str = "fp32", format: str = "onnx", intra_op_threads: int = 1,
         spinning: bool = False, providers: list | None = None) -> "Model":
    """Load the artifact folder ``path`` and return the object for its kind (Model, Tagger or CharLM).

    The manifest is read first and the model file is checked against its SHA-256 before onnxruntime sees it.
    ``variant`` is "fp32" (model.onnx) or, where the artifact has one, "int8" (model.int8.onnx). ``format`` "ort"
    loads the same variant in ONNX Runtime's ORT format (model.ort, model.int8.ort), where the artifact has it:
    what a minimal onnxruntime build (no ONNX parser) loads; the answers are the same.
    ``intra_op_threads`` and ``spinning`` set onnxruntime's thread pool (defaults suit small edge CPUs).
    ``providers``: onnxruntime execution providers in order of preference, as ``InferenceSession`` takes them
    (names, or (name, options) pairs), e.g. ``["XnnpackExecutionProvider", "CPUExecutionProvider"]`` on an
    onnxruntime build with XNNPACK; each must be in ``onnxruntime.get_available_providers()``. None (the default)
    is the CPU. The parity the export verified is the CPU provider's; check another provider's answers on your data.
    Bad arguments are a TypeError or ValueError naming the argument, raised before anything is read.
    """
    from .artifact import FORMATS, VARIANTS, FolderReplaced, model_file, read_artifact
    from .model import check_options, check_providers

    if not isinstance(variant, str):
        raise TypeError(f"variant: expected one of {sorted(VARIANTS)}, got {type(variant).__name__} {variant!r:.40}")
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r:.40}")
    if not isinstance(format, str):
        raise TypeError(f"format: expected one of {list(FORMATS)}, got {type(format).__name__} {format!r:.40}")
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {format!r:.40}")
    intra_op_threads, spinning = check_options(intra_op_threads, spinning)
    providers = check_providers(providers)
    folder = Path(path)
    for retry in (False, True):  # an export that renamed a new artifact over the folder meanwhile: read it again
        try:
            manifest, data, graph = read_artifact(folder, variant, format)
            break
        except FolderReplaced:
            if retry:
                raise
    cls = __getattr__(_CLASSES[manifest.kind])
    return cls(folder, manifest, intra_op_threads=intra_op_threads, spinning=spinning,
               onnx_file=model_file(variant, format), onnx=(data, graph), providers=providers)
