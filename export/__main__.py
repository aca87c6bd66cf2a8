"""``python -m export NAME... | --all [--out DIR] [--force]``: train, export, verify and write registered models;
``python -m export --module FILE.py:NAME --input SPEC... --out DIR``: the same for a user's own module (cli.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import runtime
from .choices import EXPORTERS, FORMATS
from .errors import UsageError, WriteError
from .zoo.catalog import CATALOG

# Nothing above imports torch, numpy or onnx: ``--help``, ``--version``, ``--list`` and usage errors answer in an
# interpreter start; the work's modules are imported in ``_work``.
DEFAULT_OUT = Path("artifacts")
EXPORT_EXTRA = ("torch", "onnx", "onnxscript", "tqdm", "conllu", "matplotlib")  # pyproject.toml's [export] extra
INSTALL_EXPORT = "pip install torch==2.13.0 && pip install '.[export]' (in the seqedge clone)"


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Export a torch module to TorchScript (model.pt) and ONNX (model.onnx) with dynamic time and "
                    "batch axes, verify parity across eager torch, TorchScript and ONNX Runtime at many lengths and "
                    "batch sizes, and write an artifact folder with manifest.json. Either registered models by NAME "
                    "(trained or rebuilt, written to DIR/NAME) or your own module with --module (written to DIR). "
                    "An artifact that fails any check is not written and the exit status is 1.",
        epilog="registered models: " + ", ".join(CATALOG) + ". Example of --module: python -m export --module "
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
    p.add_argument("--version", action="version", version=f"seqedge {runtime.__version__}")
    _add_format_argument(p)
    _add_module_arguments(p)
    return p


def _add_module_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export your own module (--module; this RUNS the code of the file or package named)")
    g.add_argument("--module", metavar="FILE.py:NAME", help="factory function or class returning the torch.nn.Module "
                   "(called with --kwargs); also package.module:NAME")
    g.add_argument("--kwargs", default="{}", metavar="JSON", help="keyword arguments for NAME, as a JSON object")
    g.add_argument("--checkpoint", type=Path, metavar="FILE", help="weights: a state_dict saved with torch.save, "
                   "loaded with torch.load(weights_only=True)")
    g.add_argument("--input", action="append", default=[], metavar="SPEC", dest="inputs",
                   help="one per flattened forward argument, in order: NAME:DTYPE[DIMS][:LOW..HIGH], DIMS sizes or "
                        "SYMBOL=SIZE for dynamic axes, e.g. input:int64[time=35,batch=4]:0..9999")
    g.add_argument("--args", metavar="STRUCTURE", help="how forward takes the inputs, e.g. 'input, (h_0, c_0)' "
                   "(default: each input a separate argument)")
    g.add_argument("--output-names", metavar="A,B,...", help="names of the flattened outputs (default output_0, ...)")
    g.add_argument("--lengths", metavar="NAME", help="the input holding each sequence's valid length along 'time'")
    g.add_argument("--state", action="append", default=[], metavar="IN=OUT",
                   help="a recurrent state pair, e.g. h_0=h_n (detected when not given)")
    g.add_argument("--int8", action="store_true", help="also write model.int8.onnx, checked against fp32")
    g.add_argument("--portable", action="store_true",
                   help="require every installed ONNX runtime to agree with onnxruntime (default: another runtime's "
                        "refusal or wrong answer is a warning line and recorded in the manifest)")
    g.add_argument("--pte-batch", type=int, default=1, metavar="N",
                   help="the batch size model.pte is made for (ExecuTorch keeps only the time axis dynamic; default 1)")


def _add_format_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--formats", type=_formats, default=None, metavar="A,B",
                   help=f"optional formats to write beside model.pt and model.onnx, each of which must then pass: "
                        f"{','.join(FORMATS)} (ort: model.ort for minimal onnxruntime builds; pt2: torch.export "
                        f"program; pte: ExecuTorch). Default: all, .pt2 and .pte wherever they pass; '' for none")


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(f for f in (s.strip() for s in text.split(",")) if f)
    unknown = [f for f in names if f not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown format(s) {unknown}: expected names from {','.join(FORMATS)}")
    return names


def main(argv: list[str] | None = None, *, prog: str = "python -m export", fix_hashing: bool = False) -> int:
    """Exit status: 0 when every artifact was written, 1 when one failed (or data, disk, install), 2 for a bad
    command line, answered before any work. ``fix_hashing`` (the command's own start): run again with
    PYTHONHASHSEED=0 before torch is imported, unless it is set so."""
    args = _parser(prog).parse_args(argv)
    if args.list:
        for name, entry in CATALOG.items():
            print(f"{name:26} {entry.kind:10} {entry.source:16} {entry.summary}")
        return 0
    try:
        names, request = _check(args)
    except UsageError as e:
        return _fail(str(e), 2)
    except WriteError as e:
        return _fail(str(e), 1)
    if fix_hashing and os.environ.get("PYTHONHASHSEED") != "0":
        # Byte-reproducible artifacts: torch.jit.script orders a module's constants by iterating a set of their
        # names, so with Python's per-process string hashing model.pt (and the SHA-256 in manifest.json) changed on
        # every export of the same weights. Run this same command again, before torch is imported, with string
        # hashing fixed (sys.orig_argv: `python -m export ...` or the `seqedge` script, as it was started).
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, "PYTHONHASHSEED": "0"})
    try:
        return _work(args, names, request)
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] not in EXPORT_EXTRA:
            raise
        return _fail(f"{prog} needs the export extra, and {e.name} is not installed: {INSTALL_EXPORT}", 1)


def _check(args) -> tuple[list[str], "cli.Request | None"]:
    """The command line's checks that need no torch: the models to export (or the --module request)."""
    from .write import check_writable

    if args.module:
        from . import cli  # the --module export
        if args.names or args.all or args.data or args.retrain:
            raise UsageError("--module exports your own module: give no NAME, --all, --data or --retrain with it")
        if args.out == DEFAULT_OUT:
            raise UsageError("--module needs --out DIR, the artifact folder to write")
        return [], cli.check(args)
    if args.all == bool(args.names):
        raise UsageError("give model NAMEs or --all (not both), or --module")
    unknown = [n for n in args.names if n not in CATALOG]
    if unknown:
        raise UsageError(f"unknown model(s) {unknown}: expected names from: {', '.join(CATALOG)}")
    names = list(CATALOG) if args.all else args.names
    if args.data is not None:
        no_data = [n for n in names if not CATALOG[n].reads_data]
        if no_data:
            raise UsageError(f"--data: {', '.join(no_data)} read(s) no data files (expected only models that do: "
                             f"{', '.join(n for n, e in CATALOG.items() if e.reads_data)})")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: expected a folder, got a file")
    check_writable(args.out, f"--out {args.out}")  # before any work, and leaves nothing behind
    if not args.force:
        existing = [n for n in names if (args.out / n).exists()]
        if existing:
            raise UsageError(f"{', '.join(str(args.out / n) for n in existing)} "
                             f"{'exists' if len(existing) == 1 else 'exist'}; pass --force to replace")
    return names, None


def _work(args, names: list[str], request) -> int:
    """Train or load, export, verify and write; print the parity table. Imports torch."""
    import warnings

    from . import cli
    from .errors import DataError, ExportError, ExportWarning
    from .zoo.build import export
    from .zoo.registry import REGISTRY
    from .zoo.spec import check_data, use_data_dir

    if request is not None:
        return cli.run(args, request, _table)
    if args.data is not None:  # every name reads data (checked before torch)
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
    try:
        sys.exit(main(fix_hashing=True))
    except BrokenPipeError:  # `python -m export --list | head`: stop writing, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
