"""The ``seqedge`` command (pyproject.toml's console script): one name for both command lines, as optimum-cli and
spaCy's ``spacy`` give theirs.

    seqedge export ...      python -m export ...   (export and verify; needs the export extra)
    seqedge COMMAND ...     python -m runtime COMMAND ...   (info, run, tag, eval, generate, loss: the runtime alone)

An installed script also avoids a name clash the ``python -m`` forms have: ``python -m export`` run in a folder that
holds the user's own ``export.py`` (or ``runtime.py``) runs that file instead, since Python puts the current folder
first on its path; the script's path starts at its own folder.
"""

from __future__ import annotations

import os
import sys

import runtime

# Each side's command line is imported when its command runs (runtime_cli for the list in --help).

EXPORT_HELP = "export a torch module (or a registered model) to TorchScript, ONNX, ORT, .pt2 and .pte, verified"


def _usage() -> str:
    from runtime import __main__ as runtime_cli

    width = max(map(len, ["export", *runtime_cli.COMMANDS]))
    lines = [f"  {name:{width}}  {text}" for name, text in {"export": EXPORT_HELP, **runtime_cli.COMMANDS}.items()]
    return ("usage: seqedge [-h] [--version] COMMAND [ARGS ...]\n\nExport recurrent torch models and run them "
            "torch-free (numpy + onnxruntime).\n\ncommands:\n" + "\n".join(lines)
            + "\n\n'seqedge COMMAND --help' shows a command's options.\n")


def main(argv: list[str] | None = None) -> int:
    """Exit status as the command's own: 0 done, 1 failed, 2 bad command line (here: no or an unknown COMMAND)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"seqedge {runtime.__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "export":
            from . import __main__ as export_cli
            return export_cli.main(rest, prog="seqedge export", fix_hashing=True)
        from runtime import __main__ as runtime_cli
        if command in runtime_cli.COMMANDS:
            return runtime_cli.main(argv, prog="seqedge")
    except BrokenPipeError:  # `seqedge export --list | head`: stop writing, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    print(f"usage: seqedge [-h] [--version] COMMAND [ARGS ...]\nseqedge: error: unknown command {command!r}: "
          f"expected one of {', '.join(['export', *runtime_cli.COMMANDS])}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
