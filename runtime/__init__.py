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

from .artifact import MANIFEST, VARIANTS, ArtifactError, Manifest, read_manifest
from .charlm import CharLM
from .model import Model
from .tagger import Tagger

__all__ = ["load", "Model", "Tagger", "CharLM", "Manifest", "ArtifactError"]

_CLASSES: dict[str, type[Model]] = {"recurrent": Model, "tagger": Tagger, "char-lm": CharLM, "module": Model}


def load(path: str | Path, *, variant: str = "fp32", intra_op_threads: int = 1, spinning: bool = False) -> Model:
    """Load the artifact folder ``path`` and return the object for its kind (Model, Tagger or CharLM).

    The manifest is read first and the model file is checked against its SHA-256 before onnxruntime sees it.
    ``variant`` is "fp32" (model.onnx) or, where the artifact has one, "int8" (model.int8.onnx).
    ``intra_op_threads`` and ``spinning`` set onnxruntime's thread pool (defaults suit small edge CPUs).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not a folder (an artifact is a folder holding manifest.json)")
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
    manifest = read_manifest(folder)
    if VARIANTS[variant] not in manifest.files:
        have = sorted(v for v, f in VARIANTS.items() if f in manifest.files)
        raise ArtifactError(f"{folder / MANIFEST}: no {variant!r} variant in this artifact: expected "
                            f"{VARIANTS[variant]} among the files it records, got {sorted(manifest.files)} "
                            f"(variants {have})")
    return _CLASSES[manifest.kind](folder, manifest, intra_op_threads=intra_op_threads, spinning=spinning,
                                   onnx_file=VARIANTS[variant])
