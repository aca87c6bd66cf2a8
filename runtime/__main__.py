"""Command line: ``python -m runtime {info,tag,eval,generate,loss} ...``; ``--help`` on each explains it."""

from __future__ import annotations

import argparse
import json
import lzma
import math
import sys

from . import conllu_io, load
from .artifact import ArtifactError
from .charlm import CharLM
from .tagger import Tagger


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime", description="Run seqedge artifacts (numpy + onnxruntime).")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print what an artifact is: kind, IO, exporter, parity")
    info.add_argument("artifact", help="artifact folder, e.g. artifacts/pos-tutorial")

    tag = sub.add_parser("tag", help="tag sentences (text: one whitespace-tokenized sentence per line, word/TAG "
                                     "out; conllu: CoNLL-U in, the same with column 4 filled out)")
    tag.add_argument("artifact", help="a tagger artifact folder, e.g. artifacts/pos-ewt")
    tag.add_argument("file", nargs="?", default="-",
                     help="input file (.xz is decompressed), or - for standard input (default)")
    tag.add_argument("--format", choices=("text", "conllu"), default="text", help="input/output format (default text)")
    tag.add_argument("--variant", choices=("fp32", "int8"), default="fp32", help="model variant (default fp32)")

    ev = sub.add_parser("eval", help="UPOS accuracy on a gold CoNLL-U file, with per-tag precision and recall")
    ev.add_argument("artifact", help="a tagger artifact folder, e.g. artifacts/pos-ewt")
    ev.add_argument("gold", help="gold CoNLL-U file (plain, or xz-compressed when it ends in .xz)")
    ev.add_argument("--json", action="store_true",
                    help='end with one JSON line: {"sentences", "tokens", "correct", "accuracy"}')
    ev.add_argument("--variant", choices=("fp32", "int8"), default="fp32", help="model variant (default fp32)")

    gen = sub.add_parser("generate", help="generate text from a char-lm artifact, printing as it goes")
    gen.add_argument("artifact", help="a char-lm artifact folder, e.g. artifacts/char-hello")
    gen.add_argument("--prompt", default="", help="text to continue (default: none, start from the start symbol)")
    gen.add_argument("-n", "--max-chars", type=int, default=256, help="most characters to generate (default 256)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; higher is more random")
    gen.add_argument("--top-k", type=int, default=None, help="sample only among the k likeliest characters")
    gen.add_argument("--seed", type=int, default=None, help="random seed for sampling (same seed, same text)")

    loss = sub.add_parser("loss", help="a char-lm's mean next-character loss (nats/char) on a text file")
    loss.add_argument("artifact", help="a char-lm artifact folder, e.g. artifacts/char-shakespeare")
    loss.add_argument("file", help="text file (.xz is decompressed)")
    loss.add_argument("--start-fraction", type=float, default=0.0,
                      help="score only the text from this fraction of its characters on (0.9: the last 10%%, "
                           "tiny-shakespeare's validation split)")
    loss.add_argument("--json", action="store_true", help='end with one JSON line: {"characters", "loss"}')
    return p


def _load(args, kind):
    model = load(args.artifact, intra_op_threads=args.threads, variant=getattr(args, "variant", "fp32"))
    if not isinstance(model, kind):
        raise ArtifactError(f"{args.artifact}: is a {model.manifest.kind!r} artifact; "
                            f"'{args.command}' needs a {kind.__name__} artifact")
    return model


def _open_text(path: str):
    """A UTF-8 text file, xz-compressed when its name ends in .xz."""
    return lzma.open(path, "rt", encoding="utf-8") if path.endswith(".xz") else open(path, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            m = load(args.artifact, intra_op_threads=args.threads).manifest
            parity = {k: v for k, v in m.parity.items() if k != "failures"}
            print(json.dumps({"name": m.name, "kind": m.kind, "config": m.config, "io": m.io.to_json(),
                              "files": m.files, "export": m.export, "parity": parity}, indent=2))
        elif args.command == "tag":
            tagger = _load(args, Tagger)
            stream = sys.stdin if args.file == "-" else _open_text(args.file)
            with stream:
                if args.format == "conllu":
                    conllu_io.write_tagged(tagger, conllu_io.read(stream), sys.stdout)
                else:
                    for line in stream:
                        words = line.split()
                        print(" ".join(f"{w}/{t}" for w, t in zip(words, tagger.tag(words))))
        elif args.command == "eval":
            tagger = _load(args, Tagger)
            with _open_text(args.gold) as f:
                result = conllu_io.evaluate(tagger, conllu_io.read(f))
            for line in conllu_io.format_report(result):
                print(line)
            if args.json:
                print(json.dumps({k: result[k] for k in ("sentences", "tokens", "correct", "accuracy")}))
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
            with _open_text(args.file) as f:
                text = f.read()
            text = text[int(len(text) * args.start_fraction):]
            value = lm.loss(text)
            print(f"{value:.4f} nats/char ({value / math.log(2):.4f} bits/char) over {len(text) - 1} characters")
            if args.json:
                print(json.dumps({"characters": len(text) - 1, "loss": value}))
    except (ArtifactError, ValueError, TypeError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
