"""Command line: ``python -m runtime {info,tag,eval,generate,loss} ...``; ``--help`` on each explains it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from . import __version__, load

# Everything else (the artifact reader, corpus, progress, numpy and onnxruntime) is imported when a command runs:
# --help, --version and usage errors answer within 2x of a bare Python start (benchmarks/cli_start.py).
VARIANT_CHOICES = ("fp32", "int8")  # runtime.artifact.VARIANTS' names (tests/test_cli_fast.py holds them equal)


# Each command and its one line, for --help here and in the `seqedge` script's list.
COMMANDS = {
    "info": "print what an artifact is: kind, IO, state, formats, exporter, parity",
    "run": "run any artifact on arrays from an .npz file",
    "tag": "tag sentences: raw text, one per line (word/TAG out), or CoNLL-U (the same bytes, UPOS filled)",
    "eval": "UPOS accuracy on a gold CoNLL-U file, with per-tag precision and recall",
    "generate": "generate text from a char-lm artifact, printing as it goes",
    "loss": "a char-lm's mean next-character loss (nats/char) on a text file",
}


def _parser(prog: str = "python -m runtime") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run seqedge artifacts (numpy + onnxruntime).")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--version", action="version", version=f"seqedge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    # --threads after the subcommand too (``tag A x.txt --threads 2``); SUPPRESS keeps the value given before it
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                         help="onnxruntime intra-op threads, as before the subcommand (default 1)")
    model = argparse.ArgumentParser(add_help=False, parents=[threads])  # which model file of the artifact it runs
    model.add_argument("--variant", choices=VARIANT_CHOICES, default="fp32", help="model variant (default fp32)")
    model.add_argument("--ort", action="store_true",
                       help="load the variant's ORT-format file (model.ort, model.int8.ort: what a minimal "
                            "onnxruntime build runs) instead of its .onnx")

    info = sub.add_parser("info", parents=[threads], help=COMMANDS["info"])
    info.add_argument("artifact", help="artifact folder, e.g. artifacts/pos-tutorial")
    info.add_argument("--json", action="store_true", help="print the whole manifest (and file sizes) as JSON")

    run = sub.add_parser("run", parents=[model], help=COMMANDS["run"],
                         description="Run an artifact once on INPUT.npz (arrays named by the artifact's inputs; "
                                     "omitted state inputs are zeros) and print its outputs, or write them to "
                                     "OUT.npz by output name.")
    run.add_argument("artifact", help="artifact folder, e.g. artifacts/lstm-tutorial")
    run.add_argument("input", metavar="INPUT.npz", help="numpy .npz of the inputs (np.savez(path, name=array))")
    run.add_argument("-o", "--out", metavar="OUT.npz", help="write the outputs here instead of printing them")
    run.add_argument("--stream", type=int, metavar="CHUNK",
                     help="feed the inputs CHUNK steps at a time along 'time', the state carried (stateful "
                          "artifacts); outputs along time are joined, state outputs are the last chunk's")

    tag = sub.add_parser("tag", parents=[model], help=COMMANDS["tag"],
                         description="Tag one input to standard output, or many into a folder with --out (one output "
                                     "file per input file, written atomically; see runtime/files.py for the paths).")
    tag.add_argument("artifact", help="a tagger artifact folder, e.g. artifacts/pos-ewt")
    tag.add_argument("inputs", nargs="*", metavar="INPUT",
                     help="input files (.xz is decompressed), folders or glob patterns; none or - reads standard "
                          "input (without --out)")
    tag.add_argument("--format", choices=("text", "conllu"), default="text",
                     help="text (default): raw text, one sentence per line, split into words by a rule-based "
                          "UD English tokenizer (runtime/tokenize.py); conllu: CoNLL-U in, the same bytes out with "
                          "column 4 (UPOS) filled")
    tag.add_argument("--pretokenized", action="store_true",
                     help="text whose words are already split by spaces: split on whitespace only")
    tag.add_argument("--max-words", type=int, metavar="N",
                     help="most padded words in one session.run, which bounds memory (default 8192): raise it "
                          "for longer sentences (local engine)")
    tag.add_argument("--out", type=Path, metavar="DIR", help="write one tagged file per input file under DIR")
    tag.add_argument("--resume", action="store_true",
                     help="with --out: skip inputs whose output exists (outputs are complete or absent)")
    tag.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="with --out: tag in this process (local, default) or on Ray Data (ray: pip install "
                          "'.[ray]' in the seqedge clone); both write the same bytes")
    tag.add_argument("--address", metavar="ADDR",
                     help="with --engine ray: an existing Ray cluster (default: start a local one, stop it after)")
    tag.add_argument("--workers", type=int, metavar="N",
                     help="with --engine ray: tagging actors, one CPU each (default: every CPU)")

    ev = sub.add_parser("eval", parents=[model], help=COMMANDS["eval"])
    ev.add_argument("artifact", help="a tagger artifact folder, e.g. artifacts/pos-ewt")
    ev.add_argument("gold", help="gold CoNLL-U file (plain, or xz-compressed when it ends in .xz)")
    ev.add_argument("--json", action="store_true",
                    help='end with one JSON line: {"sentences", "tokens", "correct", "accuracy"}')

    gen = sub.add_parser("generate", parents=[model], help=COMMANDS["generate"])
    gen.add_argument("artifact", help="a char-lm artifact folder, e.g. artifacts/char-hello")
    gen.add_argument("--prompt", default="", help="text to continue (default: none, start from the start symbol)")
    gen.add_argument("-n", "--max-chars", type=int, default=256, help="most characters to generate (default 256)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; higher is more random")
    gen.add_argument("--top-k", type=int, default=None, help="sample only among the k likeliest characters")
    gen.add_argument("--seed", type=int, default=None, help="random seed for sampling (same seed, same text)")

    loss = sub.add_parser("loss", parents=[model], help=COMMANDS["loss"])
    loss.add_argument("artifact", help="a char-lm artifact folder, e.g. artifacts/char-shakespeare")
    loss.add_argument("file", help="text file (.xz is decompressed)")
    loss.add_argument("--start-fraction", type=float, default=0.0,
                      help="score only the text from this fraction of its characters on (0.9: the last 10%%, "
                           "tiny-shakespeare's validation split)")
    loss.add_argument("--json", action="store_true", help='end with one JSON line: {"characters", "loss"}')
    return p


def _load(args, kind):
    from .artifact import ArtifactError

    model = load(args.artifact, intra_op_threads=args.threads, variant=args.variant,
                 format="ort" if args.ort else "onnx")
    if not isinstance(model, kind):
        raise ArtifactError(f"{args.artifact}: is a {model.manifest.kind!r} artifact; "
                            f"'{args.command}' needs a {kind.__name__} artifact")
    if getattr(args, "max_words", None) is not None:
        if args.max_words < 1:
            raise ValueError(f"--max-words: expected an int >= 1, got {args.max_words}")
        model.max_words_per_run = args.max_words
    return model


def _read_text(path: str) -> str:
    """A whole UTF-8 text file, xz-compressed when its name ends in .xz; damage is a ValueError naming it."""
    import lzma

    from . import corpus

    try:
        with corpus.open_input(path) as f:
            return f.read().decode("utf-8")
    except (lzma.LZMAError, EOFError) as e:
        raise ValueError(f"{path}: cannot decompress ({e})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 (byte {e.start + 1})") from None


def _terminated(signum, frame):
    raise KeyboardInterrupt


def interruptible() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both stop a command as KeyboardInterrupt: exit 130, ``interrupted``, no
    ``.partial`` file left. Python turns SIGINT into KeyboardInterrupt only where its parent did not ignore it, and
    a shell without job control starts background commands (``cmd &`` in a script, CI runners) with SIGINT
    ignored: such a process would ignore Ctrl-C sent to it by ``kill -INT``. So both handlers are set here."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminated)


def main(argv: list[str] | None = None, *, prog: str = "python -m runtime") -> int:
    """Exit status 0 on success; 1 with one line on stderr for any error (bad artifact or input, out of memory,
    standard output closed); 2 for a bad command line; 130 with one line when interrupted (Ctrl-C)."""
    parser = _parser(prog)
    args, extra = parser.parse_known_args(argv)
    # argparse gives a positional list (tag's INPUTs) only the words before the first option; the ones after an
    # option (``tag A --format conllu -``) are inputs too.
    if extra and args.command == "tag" and all(e == "-" or not e.startswith("-") for e in extra):
        args.inputs += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from .artifact import ArtifactError

    interruptible()
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop writing, quietly close standard output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("error: standard output closed before everything was written", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"error: out of memory running '{args.command}'", file=sys.stderr)
        return 1
    except (ArtifactError, ValueError, TypeError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(args) -> int:
    import json
    import math

    from . import CharLM, Tagger, commands, corpus
    from .artifact import MODEL_FILES
    from .progress import Progress

    to_files = args.command == "tag" and args.out is not None
    if sys.stdout is None and not to_files:  # started with standard output closed (`>&-`)
        raise OSError("standard output is closed: nothing could be written")
    if args.command == "info":
        m = load(args.artifact, intra_op_threads=args.threads).manifest
        folder = Path(args.artifact)
        formats = {f: {"runs_in": what, "bytes": (folder / f).stat().st_size} for f, what in MODEL_FILES.items()
                   if f in m.files}
        if args.json:
            parity = {k: v for k, v in m.parity.items() if k != "failures"}
            print(json.dumps({"name": m.name, "kind": m.kind, "config": m.config, "io": m.io.to_json(),
                              "formats": formats, "files": m.files, "export": m.export, "parity": parity}, indent=2))
        else:
            print("\n".join(commands.info_lines(m, formats)))
    elif args.command == "run":
        return _run_arrays(args)
    elif args.command == "tag":
        return _tag(args)
    elif args.command == "eval":
        tagger = _load(args, Tagger)
        with corpus.open_input(args.gold) as f, Progress("eval", unit="sentences") as shown:
            result = corpus.evaluate(tagger, f, args.gold, shown.update)
        for line in corpus.format_report(result):
            print(line)
        if args.json:
            print(json.dumps({k: result[k] for k in ("sentences", "tokens", "correct", "accuracy", "unscored")}))
    elif args.command == "generate":
        lm = _load(args, CharLM)
        sys.stdout.write(args.prompt)
        for ch in lm.iter_generate(args.prompt, args.max_chars, args.temperature, args.top_k, args.seed):
            sys.stdout.write(ch)
            sys.stdout.flush()
        sys.stdout.write("\n")
    elif args.command == "loss":
        lm = _load(args, CharLM)
        if not 0.0 <= args.start_fraction < 1.0:
            raise ValueError(f"--start-fraction: expected a number in [0, 1), got {args.start_fraction}")
        text = _read_text(args.file)
        text = text[int(len(text) * args.start_fraction):]
        with Progress("loss", len(text) - 1, "characters") as shown:
            value = lm.loss(text, shown.update)
        print(f"{value:.4f} nats/char ({value / math.log(2):.4f} bits/char) over {len(text) - 1} characters")
        if args.json:
            print(json.dumps({"characters": len(text) - 1, "loss": value}))
    sys.stdout.flush()  # here, so that a failing write is reported like any error
    return 0


def _run_arrays(args) -> int:
    """``run``: the inputs of INPUT.npz through the artifact, once or (``--stream``) chunk by chunk along time."""
    import numpy as np

    from . import commands

    model = load(args.artifact, intra_op_threads=args.threads, variant=args.variant,
                 format="ort" if args.ort else "onnx")
    inputs = commands.read_npz(args.input)
    if args.stream is None:
        out = model.run(**inputs)
    else:
        out = commands.run_chunks(model, inputs, args.stream)
    if args.out is not None:
        commands.write_npz(args.out, out)
        print(f"wrote {len(out)} outputs to {args.out}: " + ", ".join(f"{k} {v.dtype} {v.shape}" for k, v in out.items()),
              file=sys.stderr)
        return 0
    with np.printoptions(threshold=40, edgeitems=3, precision=5):
        for name, value in out.items():
            print(f"{name}: {value.dtype} {value.shape}")
            print("  " + str(value).replace("\n", "\n  "))
    return 0


def _tag(args) -> int:
    from . import Tagger, corpus, files

    if args.pretokenized and args.format == "conllu":
        raise ValueError("--pretokenized: only with --format text (CoNLL-U is split into words already)")
    fmt = "pretokenized" if args.pretokenized else args.format
    if args.out is None:
        if args.engine != "local" or args.address is not None or args.workers is not None:
            raise ValueError("--engine ray, --address and --workers need --out DIR (one output file per input)")
        if len(args.inputs) > 1 or args.resume:
            raise ValueError("several inputs and --resume need --out DIR (one output file per input)")
        tagger = _load(args, Tagger)
        source = args.inputs[0] if args.inputs else "-"
        if source == "-":
            stream, name = sys.stdin.buffer, "<stdin>"
        else:
            stream, name = corpus.open_input(source), source
        with stream:
            size = 1 if stream.isatty() else corpus.CHUNK_BLOCKS  # typed lines get their answer at once
            corpus.tag_file(tagger, stream, sys.stdout.buffer, fmt, name, size)
        sys.stdout.flush()
        return 0
    if not args.inputs or "-" in args.inputs:
        raise ValueError("--out DIR: give the input files, folders or globs (standard input goes to standard output)")
    if args.engine == "local" and (args.address is not None or args.workers is not None):
        raise ValueError("--address and --workers are options of --engine ray")
    files.check_out(args.out)  # before any work: a file, a read-only place
    jobs = files.plan(args.inputs, args.out, note=lambda line: print(f"note: {line}", file=sys.stderr))
    left = files.clean_partials(args.out)
    if left:
        print(f"note: removed {len(left)} temporary file(s) a killed run left under {args.out}", file=sys.stderr)
    if args.engine == "ray":
        if args.ort:
            raise ValueError("--ort: the ray engine runs the .onnx files (drop --ort, or use --engine local)")
        if args.max_words is not None:
            raise ValueError("--max-words: the ray engine's actors tag with the default limit (use --engine local)")
        from .ray_engine import run_ray  # imports ray: only when asked for

        summary = run_ray(args.artifact, jobs, fmt, args.variant, args.resume, args.address, args.workers)
    else:
        summary = files.run_local(_load(args, Tagger), jobs, fmt, args.resume)
    print(summary.line(), file=sys.stderr)
    for failure in summary.failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
