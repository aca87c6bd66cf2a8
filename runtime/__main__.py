"""Command line: ``python -m runtime {info,tag,generate} ...``; ``--help`` on each explains it."""

from __future__ import annotations

import argparse
import json
import sys

from . import load
from .artifact import ArtifactError
from .charlm import CharLM
from .tagger import Tagger


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime", description="Run seqedge artifacts (numpy + onnxruntime).")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print what an artifact is: kind, IO, exporter, parity")
    info.add_argument("artifact", help="artifact folder, e.g. artifacts/pos-tutorial")

    tag = sub.add_parser("tag", help="tag sentences: one whitespace-tokenized sentence per line in, tags out")
    tag.add_argument("artifact", help="a tagger artifact folder, e.g. artifacts/pos-tutorial")
    tag.add_argument("file", nargs="?", default="-", help="input file, or - for standard input (default)")

    gen = sub.add_parser("generate", help="generate text from a char-lm artifact, printing as it goes")
    gen.add_argument("artifact", help="a char-lm artifact folder, e.g. artifacts/char-hello")
    gen.add_argument("--prompt", default="", help="text to continue (default: none, start from the start symbol)")
    gen.add_argument("-n", "--max-chars", type=int, default=256, help="most characters to generate (default 256)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; higher is more random")
    gen.add_argument("--seed", type=int, default=None, help="random seed for sampling (same seed, same text)")
    return p


def _load(args, kind):
    model = load(args.artifact, intra_op_threads=args.threads)
    if not isinstance(model, kind):
        raise ArtifactError(f"{args.artifact}: is a {model.manifest.kind!r} artifact; "
                            f"'{args.command}' needs a {kind.__name__} artifact")
    return model


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            m = load(args.artifact, intra_op_threads=args.threads).manifest
            print(json.dumps({"name": m.name, "kind": m.kind, "config": m.config, "io": m.io.to_json(),
                              "export": m.export, "parity": m.parity.get("summary")}, indent=2))
        elif args.command == "tag":
            tagger = _load(args, Tagger)
            stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
            with stream:
                for line in stream:
                    words = line.split()
                    print(" ".join(tagger.tag(words)) if words else "")
        elif args.command == "generate":
            lm = _load(args, CharLM)
            sys.stdout.write(args.prompt)
            for ch in lm.iter_generate(args.prompt, args.max_chars, args.temperature, args.seed):
                sys.stdout.write(ch)
                sys.stdout.flush()
            sys.stdout.write("\n")
    except (ArtifactError, ValueError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
