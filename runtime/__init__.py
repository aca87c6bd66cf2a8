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

from .artifact import ArtifactError, Manifest, read_manifest
from .charlm import CharLM
from .model import Model
from .tagger import Tagger

__all__ = ["load", "Model", "Tagger", "CharLM", "Manifest", "ArtifactError"]

_CLASSES: dict[str, type[Model]] = {"recurrent": Model, "tagger": Tagger, "char-lm": CharLM}


def load(path: str | Path, *, intra_op_threads: int = 1, spinning: bool = False) -> Model:
    """Load the artifact folder ``path`` and return the object for its kind (Model, Tagger or CharLM).

    The manifest is read first and every file is checked against its SHA-256 before onnxruntime sees it.
    ``intra_op_threads`` and ``spinning`` set onnxruntime's thread pool (defaults suit small edge CPUs).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not a folder (an artifact is a folder holding manifest.json)")
    manifest = read_manifest(folder)
    return _CLASSES[manifest.kind](folder, manifest, intra_op_threads=intra_op_threads, spinning=spinning)
