"""A registered model through the public API: train (or load its checkpoint), then ``export_module`` with the
IO the zoo declares for its kind (``models.io_for``), and the model's own checks. Also rebuilds the backends of
a written artifact for the test suite (eager torch from the manifest's config and the TorchScript weights)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

import runtime
from runtime.artifact import TORCHSCRIPT_FILE, IOSpec, Manifest, read_manifest
from ..api import Check, export_module
from ..convert import quiet_export_tools
from ..errors import ExportError
from ..feeds import Plan
from ..signature import torch_backend
from ..verify import Subject, runtime_backend
from ..write import check_writable
from .inputs import example_args, tagger_inputs
from .models import TaggerConfig, build_any, config_from_json, io_for
from .spec import ModelSpec


@dataclass
class Result:
    name: str
    folder: Path
    manifest: Manifest
    seconds: float


def export(spec: ModelSpec, out_root: Path, *, exporter: str = "auto", force: bool = False, retrain: bool = False,
           log: Callable[[str], None] | None = None, formats: Sequence[str] | None = None) -> Result:
    """Train ``spec``, export and verify it with ``export_module``, and write ``out_root/NAME``. A destination
    that cannot be written is a WriteError (an ExportError) before training starts."""
    started = time.perf_counter()
    dest = Path(out_root) / spec.name
    check_writable(dest.parent, str(dest))
    if dest.exists() and not force:
        raise ExportError(f"{dest} exists; pass --force to replace it")
    trained = spec.train(retrain)
    declared = io_for(spec.kind, trained.cfg)
    tagger = isinstance(trained.cfg, TaggerConfig)
    folder = export_module(
        trained.net, example_args(declared, trained.cfg, spec.example_length, spec.example_batch), dest,
        input_names=[t.name for t in declared.inputs],
        axes={t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in declared.inputs},
        output_names=[t.name for t in declared.outputs], lengths="lengths" if tagger else None,
        int8=spec.int8, pte_max=spec.pte_max, portable=True, force=force, exporter=exporter, kind=spec.kind, name=spec.name,
        config=trained.cfg.to_json(), vocab=trained.vocab,
        info={"source": spec.source, "summary": spec.summary, "training": trained.training},
        checks=(*spec.checks, _declared_io(declared)), facts=trained.facts, custom_inputs=tagger_inputs(trained.cfg) if tagger else None,
        extra_files=trained.extra_files, log=log, formats=formats,
        runtime_feeds=(lambda tagger: [tagger.inputs(batch) for batch in spec.sentences()]) if spec.sentences else None)
    manifest = read_manifest(folder)
    return Result(spec.name, folder, manifest, time.perf_counter() - started)


def _declared_io(declared: IOSpec) -> Check:
    """The IO export_module learned by running the network (output axes, state pairs) is the one the zoo declares
    for its kind, which the runtime's Tagger and CharLM are written against."""
    def run(m: runtime.Model) -> tuple[bool, str]:
        got = (m.io.inputs, m.io.outputs, m.io.state)
        want = (declared.inputs, declared.outputs, declared.state)
        return got == want, f"learned {m.io.to_json()}" if got != want else "inputs, outputs and state pairs agree"
    return Check("the learned IO is the IO the zoo declares for this kind", run)


def subject_for(folder: Path) -> Subject:
    """The three backends of a registered model's artifact, as export verified them. Eager torch is rebuilt
    from the manifest's config with the weights of the TorchScript file."""
    manifest = read_manifest(folder)
    cfg = config_from_json(manifest.config)
    with quiet_export_tools():  # torch.jit.load's deprecation warning, as at export
        scripted = torch.jit.load(str(folder / TORCHSCRIPT_FILE))
    net = build_any(cfg)
    net.load_state_dict(scripted.state_dict())
    net.eval()
    flat = tuple(range(len(manifest.io.inputs)))  # registered networks take their inputs flat
    return Subject(manifest.name, manifest.kind, manifest.io, Plan.from_json(manifest.parity["plan"]), {
        "eager": torch_backend(net, manifest.io, flat),
        "torchscript": torch_backend(scripted, manifest.io, flat),
        "onnxruntime": runtime_backend(runtime.load(folder)),
    }, tagger_inputs(cfg) if isinstance(cfg, TaggerConfig) else None, {"eager": net, "torchscript": scripted})
