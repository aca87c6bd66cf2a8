"""What ``python -m runtime info`` and ``run`` print and read: an artifact's summary, arrays in .npz files, and
an input fed chunk by chunk with the state carried."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import TIME, Manifest
from .model import Model


def info_lines(m: Manifest, formats: dict[str, dict]) -> list[str]:
    """At most about 30 lines: kind; IO with dtypes and axes; state pairs; lengths; formats with sizes; the
    exporter's path; the verification summary (cases, worst difference, each runtime's status)."""
    def spec(t) -> str:
        return f"{t.name} {t.dtype} ({', '.join(str(d) for d in t.shape)})"

    lines = [f"{m.name}: {m.kind} artifact"]
    lines.append("inputs:  " + "; ".join(spec(t) for t in m.io.inputs))
    lines.append("outputs: " + "; ".join(spec(t) for t in m.io.outputs))
    lines.append("state:   " + (", ".join(f"{i} -> {o}" for i, o in m.io.state) if m.io.state
                                else "none (each run is independent)"))
    if m.io.lengths:
        lines.append(f"lengths: {m.io.lengths} (each sequence's valid length along time)")
    lines.append("formats: " + ", ".join(f"{f} {_size(v['bytes'])}" for f, v in formats.items()))
    ex = m.export
    path = ex.get("onnx_path") or ex.get("exporter") or "?"
    ts = ex.get("torchscript")
    lines.append(f"exported: model.onnx via {path}" + (f", model.pt {ts['method']}ed" if isinstance(ts, dict) else "")
                 + (f"; torch {ex['torch']}, opset {ex.get('opset')}" if "torch" in ex else ""))
    not_written = ex.get("not_written") or {}
    for fmt, why in list(not_written.items())[:3]:
        lines.append(f"  not written: {fmt}: {str(why)[:120]}")
    p = m.parity
    if p:
        sizes = ", ".join(f"{k} {v}" for k, v in (p.get("sizes") or {}).items())
        worst = p.get("max_abs_diff")
        lines.append(f"verified: {'ok' if p.get('ok') else 'FAILED'}; {p.get('comparisons', '?')} comparisons of "
                     f"{', '.join(p.get('backends', []))} at {sizes}; worst abs diff "
                     + (f"{worst:.2g}" if isinstance(worst, (int, float)) else "?"))
        facts = [k for k in ("stepping_equals_whole", "padded_equals_alone") if p.get(k) is not None]
        if facts:
            lines.append("         " + ", ".join(f"{k.replace('_', ' ')}: {'yes' if p[k] else 'NO'}" for k in facts))
        for name, r in (p.get("runtimes") or {}).items():
            if r.get("status") == "reference":
                continue
            detail = {"agrees": f"max abs diff {r.get('max_abs_diff', 0):.2g}",
                      "disagrees": f"max abs diff {r.get('max_abs_diff', '?')}, first: {str(r.get('first_failure'))[:80]}",
                      "refused": str(r.get("error", ""))[:100]}.get(r.get("status"), "")
            lines.append(f"  {name} {r.get('version', '')}: {r.get('status')}" + (f" ({detail})" if detail else ""))
    lines.append("(python -m runtime info --json prints the whole manifest)")
    return lines


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{max(1, round(n / 1e3))} kB"


def read_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of a .npz file by name (pickled objects are refused); a bad file is a ValueError naming it."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # a zip archive, as np.savez writes
            raise ValueError(f"{path}: not an .npz file (write one with numpy.savez(path, name=array, ...))")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError(f"{path}: expected an .npz of named arrays (np.savez), got a single .npy array")
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: {e}") from None


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` by name into ``path`` (numpy adds .npz when the name lacks it)."""
    np.savez(path, **arrays)


def run_chunks(model: Model, inputs: dict[str, Any], chunk: int) -> dict[str, np.ndarray]:
    """``inputs`` fed ``chunk`` steps at a time along ``time`` through one stream; outputs along time joined,
    the others (state outputs) the last chunk's."""
    if chunk < 1:
        raise ValueError(f"--stream: expected a chunk length >= 1, got {chunk}")
    if model.io.lengths:
        raise ValueError(f"{model.name}: --stream: the artifact takes each sequence's length ({model.io.lengths!r}): "
                         f"run whole sequences")
    timed = {t.name: t.shape.index(TIME) for t in model.io.data_inputs if TIME in t.shape and t.name in inputs}
    if not timed:
        raise ValueError(f"{model.name}: --stream: no input has a 'time' axis to feed in chunks")
    s = model.stream()
    state = {i for i, _ in model.io.state}
    given = {k: v for k, v in inputs.items() if k in state}
    if given:
        s.state = given
    rest = {k: np.asarray(v) for k, v in inputs.items() if k not in state}
    total = {np.asarray(rest[k]).shape[a] for k, a in timed.items()}
    if len(total) != 1:
        raise ValueError(f"{model.name}: --stream: the inputs along time disagree in length: {sorted(total)}")
    steps = total.pop()
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, steps, chunk):
        feed = {k: (np.take(v, range(start, min(steps, start + chunk)), axis=timed[k]) if k in timed else v)
                for k, v in rest.items()}
        parts.append(s.run(**feed))
    out = {}
    for t in model.io.outputs:
        if TIME in t.shape:
            out[t.name] = np.concatenate([p[t.name] for p in parts], axis=t.shape.index(TIME))
        else:
            out[t.name] = parts[-1][t.name]
    return out
