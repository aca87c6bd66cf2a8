"""What every registered model of the zoo is: how to make it (a recipe returning ``Trained``), what its artifact must
show (``Check``s), and the checkpoint files of trained models (``make run`` exports them; ``--retrain`` trains)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..api import Check
from ..errors import DataError
from .catalog import CATALOG
from .models import NetConfig, TaggerConfig, build_any, config_from_json


@dataclass
class Trained:
    net: nn.Module
    cfg: NetConfig | TaggerConfig
    vocab: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # how it was made, for the manifest
    # Facts settled during training (about the untrained network): (what, ok, detail).
    facts: list[tuple[str, bool, str]] = field(default_factory=list)
    extra_files: dict[str, bytes] = field(default_factory=dict)  # written beside the model (e.g. a training curve)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to make it and what its artifact must show."""

    name: str  # a key of catalog.CATALOG, which says its kind, source and summary
    example_length: int  # T of the example; parity runs 1, 2, T, 3T and 256
    example_batch: int
    train: Callable[[bool], Trained]  # retrain: bool -> Trained; models with a checkpoint load it unless retrain
    checks: tuple[Check, ...] = ()
    int8: bool = False  # also ship model.int8.onnx (ONNX Runtime dynamic quantization)
    pte_max: dict[str, int] | None = None  # model.pte's bounds per symbol (export_module's pte_max)
    data: Path | None = None  # the folder its data files are read from by default (the vendored copy)
    data_files: tuple[str, ...] = ()  # the files it reads there; ``python -m export --data DIR`` reads DIR's
    # Taggers: real sentences, in batches, that every ONNX runtime is checked on besides generated inputs.
    sentences: Callable[[], list[list[list[str]]]] | None = None

    def __post_init__(self):
        if self.name not in CATALOG:
            raise KeyError(f"{self.name!r}: not in export/zoo/catalog.py's CATALOG (every registered model is)")
        if bool(self.data_files) != CATALOG[self.name].reads_data:
            raise ValueError(f"{self.name!r}: data_files {self.data_files} but export/zoo/catalog.py says "
                             f"reads_data={CATALOG[self.name].reads_data}")

    kind = property(lambda self: CATALOG[self.name].kind)
    source = property(lambda self: CATALOG[self.name].source)
    summary = property(lambda self: CATALOG[self.name].summary)


# Data folders chosen on the command line (``--data``), by model name; recipes and checks read them at run time.
_data_dirs: dict[str, Path] = {}


def use_data_dir(spec: ModelSpec, folder: Path) -> None:
    """Read ``spec``'s data files from ``folder`` instead of the vendored copy, for the rest of this process."""
    _data_dirs[spec.name] = folder


def data_dir(spec: ModelSpec) -> Path:
    """The folder ``spec``'s data files are read from."""
    if spec.data is None:
        raise DataError(f"{spec.name}: reads no data files")
    return _data_dirs.get(spec.name, spec.data)


def check_data(spec: ModelSpec) -> None:
    """Fail early, before any training or export, when one of ``spec``'s data files is missing."""
    if not spec.data_files:
        return
    folder = data_dir(spec)
    missing = [f for f in spec.data_files if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder / missing[0]}: missing data file (expected {', '.join(spec.data_files)} "
                        f"in {folder})")


def save_checkpoint(ckpt: dict, path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: no checkpoint; train one with `python -m export NAME --retrain`")
    return torch.load(path, weights_only=True)  # plain tensors and containers only: never unpickles code


def checkpoint(path: Path, retrain: bool, train: Callable[[], dict]) -> tuple[nn.Module, NetConfig | TaggerConfig, dict]:
    """Train from scratch and save the checkpoint (``retrain``), or load the committed one; returns the network
    (eval mode, weights loaded), its config, and the checkpoint."""
    if retrain:
        ckpt = train()
        save_checkpoint(ckpt, path)
    else:
        ckpt = load_checkpoint(path)
    cfg = config_from_json(ckpt["config"])
    net = build_any(cfg)
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), cfg, ckpt


def data_record(spec: ModelSpec) -> dict:
    """``{"data_dir": FOLDER}`` when ``--data`` chose another folder than the vendored copy, else nothing: the
    manifest says its checks (and, with ``--retrain``, the training) read other data, and differs from one of the
    vendored data, so a re-export keeps no figure measured on the other (``export.api._keep_recorded_figures``)."""
    folder = _data_dirs.get(spec.name)
    return {} if folder is None or folder == spec.data else {"data_dir": str(folder)}


def training_record(ckpt: dict, data: str) -> dict:
    """The checkpoint's training facts for the manifest (the per-epoch history goes into the curve PNG)."""
    history = ckpt["training"]["history"]
    return {**{k: v for k, v in ckpt["training"].items() if k != "history"}, "epochs_run": len(history),
            "data": data}
