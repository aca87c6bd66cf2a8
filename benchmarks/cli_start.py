"""Start times of the CLIs that must answer before torch is imported (issue 24: within 2x of a bare
``python -c "import argparse"``). Runs every command in turn, round after round, so all see the same machine
load, and prints each one's median and its ratio to the bare start.

    .venv/bin/python benchmarks/cli_start.py [--rounds 15]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEQEDGE = str(Path(sys.executable).with_name("seqedge"))
COMMANDS = {
    "python -c 'import argparse'": [sys.executable, "-c", "import argparse"],
    "python -m export --help": [sys.executable, "-m", "export", "--help"],
    "python -m export --version": [sys.executable, "-m", "export", "--version"],
    "python -m export --list": [sys.executable, "-m", "export", "--list"],
    "python -m export --bogus": [sys.executable, "-m", "export", "--bogus"],
    "python -m runtime --help": [sys.executable, "-m", "runtime", "--help"],
    "seqedge --help": [SEQEDGE, "--help"],
    "seqedge --version": [SEQEDGE, "--version"],
    "seqedge export --help": [SEQEDGE, "export", "--help"],
    "seqedge tag --help": [SEQEDGE, "tag", "--help"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    rounds = p.parse_args().rounds
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, cmd in COMMANDS.items():
            t = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, capture_output=True)
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["python -c 'import argparse'"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:32s} {med * 1e3:7.1f} ms  {med / base:5.2f}x")


if __name__ == "__main__":
    main()
