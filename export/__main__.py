"""``python -m export NAME... | --all [--out DIR] [--force]``: train, export, verify and write registered models;
``python -m export --module FILE.py:NAME --input SPEC... --out DIR``: the same for a user's own module (cli.py)."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # Byte-reproducible artifacts: torch.jit.script orders a module's constants by iterating a set of their names,
    # so with Python's per-process string hashing model.pt (and the SHA-256 in manifest.json) changed on every
    # export of the same weights. Re-run this command, before torch is imported, with string hashing fixed.
    os.execve(sys.executable, [sys.executable, "-m", "export", *sys.argv[1:]], {**os.environ, "PYTHONHASHSEED": "0"})

import argparse  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from . import cli  # noqa: E402
from .convert import EXPORTERS, ExportError  # noqa: E402
from .errors import ExportWarning  # noqa: E402
from .write import WriteError, check_writable  # noqa: E402
from .zoo.build import export  # noqa: E402
from .zoo.registry import REGISTRY  # noqa: E402
from .zoo.spec import DataError, check_data, use_data_dir  # noqa: E402

DEFAULT_OUT = Path("artifacts")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a torch module to TorchScript (model.pt) and ONNX (model.onnx) with dynamic time and "
                    "batch axes, verify parity across eager torch, TorchScript and ONNX Runtime at many lengths and "
                    "batch sizes, and write an artifact folder with manifest.json. Either registered models by NAME "
                    "(trained or rebuilt, written to DIR/NAME) or your own module with --module (written to DIR). "
                    "An artifact that fails any check is not written and the exit status is 1.",
        epilog="registered models: " + ", ".join(REGISTRY) + ". Example of --module: python -m export --module "
               "my_models.py:RNNModel --kwargs '{\"rnn_type\": \"LSTM\", \"ntoken\": 10000, \"ninp\": 200, "
               "\"nhid\": 200, \"nlayers\": 2}' --checkpoint lm.pt --input 'input:int64[time=35,batch=4]:0..9999' "
               "--input 'h_0:float32[2,batch=4,200]' --input 'c_0:float32[2,batch=4,200]' --args 'input, (h_0, c_0)' "
               "--out artifacts/my-lm")
    p.add_argument("names", nargs="*", metavar="NAME", help="models to export (see the list below)")
    p.add_argument("--all", action="store_true", help="export every registered model")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"registered models: the folder that receives one subfolder per artifact (default: "
                        f"{DEFAULT_OUT}); --module: the artifact folder itself")
    p.add_argument("--force", action="store_true", help="replace artifacts that already exist")
    p.add_argument("--retrain", action="store_true",
                   help="train the trained models from scratch and rewrite their committed checkpoint "
                        "(export/zoo/checkpoints/NAME.pt), instead of exporting it: pos-ewt and char-shakespeare "
                        "(about 25 min each), pos-tutorial, pos-tutorial-gru, char-hello, char-hello-batch-first "
                        "(seconds; the weights may then differ in more than their last bits on another CPU). The "
                        "untrained seed models are rebuilt from their seed either way")
    p.add_argument("--exporter", choices=EXPORTERS, default="auto",
                   help="ONNX exporter: auto (default: torch's TorchScript-based exporter on the traced module, then "
                        "on the scripted module, then the dynamo exporter; the first whose graph passes the length "
                        "probes is kept), torchscript (the first two only) or dynamo (only torch's default "
                        "exporter, which pins the time axis of RNNs in torch 2.13: kept to re-check that)")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="read the training/evaluation data from DIR instead of the vendored copy (pos-ewt: "
                        "en_ewt-ud-train.conllu.xz and en_ewt-ud-dev.conllu.xz; char-shakespeare: input.txt.xz)")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    cli.add_format_argument(p)
    cli.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for spec in REGISTRY.values():
            print(f"{spec.name:26} {spec.kind:10} {spec.source:16} {spec.summary}")
        return 0
    if args.module:
        if args.names or args.all or args.data or args.retrain:
            return _fail("--module exports your own module: give no NAME, --all, --data or --retrain with it", 2)
        if args.out == DEFAULT_OUT:
            return _fail("--module needs --out DIR, the artifact folder to write", 2)
        return cli.run(args, _table)
    if args.all == bool(args.names):
        return _fail("give model NAMEs or --all (not both), or --module", 2)
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        return _fail(f"unknown model(s) {unknown}: expected names from: {', '.join(REGISTRY)}", 2)
    names = list(REGISTRY) if args.all else args.names
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        return _fail(f"--out {args.out}: expected a folder, got a file", 2)
    try:  # before any work, and leaves nothing behind
        check_writable(args.out, f"--out {args.out}")
    except WriteError as e:
        return _fail(str(e), 1)
    if not args.force:
        existing = [n for n in names if (args.out / n).exists()]
        if existing:
            return _fail(f"{', '.join(str(args.out / n) for n in existing)} exist(s); pass --force to replace", 2)
    if args.data is not None:
        no_data = [n for n in names if not REGISTRY[n].data_files]
        if no_data:
            with_data = [n for n, s in REGISTRY.items() if s.data_files]
            return _fail(f"--data: {', '.join(no_data)} read(s) no data files (expected only models that do: "
                         f"{', '.join(with_data)})", 2)
        for n in names:
            use_data_dir(REGISTRY[n], args.data)
    for n in names:  # every data file is there before any work starts
        try:
            check_data(REGISTRY[n])
        except DataError as e:
            return _fail(f"{n}: {e}", 1)

    rows, failed = [], []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}: train, export, verify ...", file=sys.stderr, flush=True)
        try:
            with warnings.catch_warnings(record=True) as said:  # an ExportWarning is one "warning:" line here
                warnings.simplefilter("always", ExportWarning)
                r = export(REGISTRY[name], args.out, exporter=args.exporter, force=args.force, retrain=args.retrain,
                           formats=args.formats)
            for w in said:
                if issubclass(w.category, ExportWarning):
                    print(f"warning: {w.message}", file=sys.stderr, flush=True)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        except DataError as e:  # bad data fails the whole run at once: the next model would read it too
            return _fail(f"{name}: not written: {e}", 1)
        except WriteError as e:  # a full disk, a read-only file system: so would the next model's
            return _fail(str(e), 1)
        except ExportError as e:
            print(f"error: {name}: not written: {e}", file=sys.stderr)
            failed.append(name)
            rows.append((name, args.exporter, "-", "-", "-", "-", "FAILED"))
            continue
        p = r.manifest.parity
        seed_ok = sum(c["ok"] for c in p["checks"])
        rows.append((name, r.manifest.export["exporter"], str(p["comparisons"]), f"{p['max_abs_diff']:.1e}",
                     f"{seed_ok}/{len(p['checks'])}", cli.runtimes_cell(p), f"ok {r.seconds:.1f}s"))
    _table(["artifact", "exporter", "comparisons", "max abs diff", "checks", "other runtimes", "status"], rows)
    if failed:
        print(f"error: {len(failed)} artifact(s) failed and were not written: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _fail(message: str, status: int) -> int:
    """One line on stderr, and the exit status (2: bad command line, 1: bad data or a failed artifact)."""
    print(f"error: {message}", file=sys.stderr)
    return status


def _table(header: list[str], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


if __name__ == "__main__":
    sys.exit(main())
