"""The Ray engine against the single-process command, on one machine: ``make bench-ray``.

    python benchmarks/ray_bench.py            # about 5-10 min on 2 cores: ray_results.json, ray_results.md
    python benchmarks/ray_bench.py --rounds 1 --copies 4   # a quick look

The corpus: EWT dev as plain text (one sentence per line), repeated ``--copies`` times (20: 503k tokens), one copy
per file. Three commands, as users run them, in the same rounds (order rotated round to round, so a slow spell of
a busy machine lands on all alike; medians with min-max):

- ``python -m runtime tag pos-ewt CORPUS --out DIR`` (single process, one intra-op thread);
- the same with ``--engine ray --workers 1`` and ``--workers 2`` (a local Ray started and stopped by the command).

Every output folder is compared byte for byte with the single-process one. Before each round, the cores the
machine gives are measured (1 and 2 processes spinning): on a shared machine they bound what a second worker adds. Ray's start-up is the wall time of the
ray command on a one-sentence file (start Ray, start and load the actors, stop Ray). While each command runs, the
CPU time of its processes is sampled from /proc (the driver, the tagging actors, the rest of Ray), which says where
the second core goes. The 1-minute load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent
POS = ROOT / "artifacts" / "pos-ewt"
DEV = ROOT / "export" / "zoo" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu.xz"
ACTOR = "ray::MapWorker(MapBatches(_ChunkTagger))"
TICK = os.sysconf("SC_CLK_TCK")
FINAL = re.compile(r"tagged (\d+) files .*?: ([\d,]+) sentences, ([\d,]+) tokens, ([\d,]+) tokens/s, ([\d.]+) s")


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def build_corpus(folder: Path, copies: int) -> dict:
    data = lzma.decompress(DEV.read_bytes()).decode("utf-8")
    lines = []
    for s in data.split("\n\n"):
        words = [r.split("\t")[1] for r in s.split("\n") if r.split("\t")[0].isdigit()]
        if words:
            lines.append(" ".join(words))
    text = "\n".join(lines) + "\n"
    folder.mkdir(parents=True)
    for i in range(copies):
        (folder / f"part-{i:03d}.txt").write_text(text, encoding="utf-8")
    (folder.parent / "tiny").mkdir()
    (folder.parent / "tiny" / "one.txt").write_text("The dog barked .\n", encoding="utf-8")
    return {"files": copies, "sentences": len(lines) * copies, "tokens": sum(len(x.split()) for x in lines) * copies}


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, CPU ticks user+system, title) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            title = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]), title)
    return table


class CpuSampler:
    """The CPU seconds of a command's process tree by role, sampled every 0.2 s (a process's last sample counts)."""

    def __init__(self, pid: int):
        self.pid, self.last, self.role = pid, {}, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            table = _proc_table()
            tree, frontier = {self.pid}, [self.pid]
            while frontier:
                frontier = [p for p, (pp, _, _) in table.items() if pp in frontier and p not in tree]
                tree.update(frontier)
            for p in tree & table.keys():
                title = table[p][2]
                self.last[p] = table[p][1]
                if p not in self.role or (title and self.role[p] == "other Ray processes"):  # a zombie has no title
                    self.role[p] = ("driver" if p == self.pid else "actors" if title.startswith(ACTOR)
                                    else "other Ray processes")
            self.stop.wait(0.2)

    def finish(self) -> dict:
        self.stop.set()
        self.thread.join()
        out: dict[str, float] = {}
        for p, ticks in self.last.items():
            out[self.role[p]] = out.get(self.role[p], 0.0) + ticks / TICK
        return {k: round(v, 2) for k, v in sorted(out.items())}


def run(name: str, args: list[str], out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    before = load1()
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "tag", str(POS), *args, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = CpuSampler(proc.pid)
    _, err = proc.communicate()
    wall = time.perf_counter() - t
    cpu = sampler.finish()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {err[-2000:]}")
    m = FINAL.search(err.splitlines()[-1])
    tokens, n = int(m.group(3).replace(",", "")), int(m.group(1))
    return {"wall_s": wall, "files": n, "tokens": tokens, "tokens_per_s": tokens / wall,
            "reported_s": float(m.group(5)), "cpu_s": cpu, "load1_before": before}


def _spin(seconds: float) -> float:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return time.process_time()


def capacity(seconds: float = 5.0) -> dict:
    """The cores this machine gives us now: the CPU seconds per second that 1 and then 2 busy processes get. On a
    shared machine, what a second worker can add is what is free (the other work's demand varies meanwhile)."""
    import multiprocessing

    got = {}
    for n in (1, 2):
        with multiprocessing.get_context("spawn").Pool(n) as pool:
            got[str(n)] = sum(pool.map(_spin, [seconds] * n)) / seconds
    return got


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--copies", type=int, default=20, help="copies of EWT dev, one file each (20: 503k tokens)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report", type=Path, metavar="JSON", help="only write ray_results.md again from this JSON")
    args = ap.parse_args()
    if args.report:
        (args.out / "ray_results.md").write_text(report(json.loads(args.report.read_text())), encoding="utf-8")
        return
    started, load_before = time.time(), load1()
    commands = {"single process": [], "ray, 1 worker": ["--engine", "ray", "--workers", "1"],
                "ray, 2 workers": ["--engine", "ray", "--workers", "2"]}
    with tempfile.TemporaryDirectory(prefix="seqedge-ray-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        facts = build_corpus(corpus, args.copies)
        print(f"corpus: {facts}", file=sys.stderr)
        runs: dict[str, list[dict]] = {k: [] for k in commands}
        startup: list[float] = []
        identical = True
        names = list(commands)
        cores: list[dict] = []
        for r in range(args.rounds):
            cores.append(capacity())
            print(f"round {r + 1}: cores available: {cores[-1]}", file=sys.stderr)
            for name in names[r % len(names):] + names[:r % len(names)]:
                res = run(name, [str(corpus), *commands[name]], Path(tmp) / "out" / name.replace(" ", "_"))
                runs[name].append(res)
                print(f"round {r + 1}: {name}: {res['wall_s']:.1f} s, {res['tokens_per_s']:,.0f} tokens/s, "
                      f"cpu {res['cpu_s']}, load {res['load1_before']}", file=sys.stderr)
            tiny = run("ray start-up", [str(Path(tmp) / "tiny"), "--engine", "ray", "--workers", "2"],
                       Path(tmp) / "out" / "tiny")
            startup.append(tiny["wall_s"])
            print(f"round {r + 1}: ray start-up (one sentence, 2 workers): {tiny['wall_s']:.1f} s", file=sys.stderr)
            reference = tree_bytes(Path(tmp) / "out" / "single_process")
            for name in names[1:]:
                identical &= tree_bytes(Path(tmp) / "out" / name.replace(" ", "_")).__eq__(reference)
    summary = {}
    for name, rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        rates = [x["tokens_per_s"] for x in rs]
        summary[name] = {"wall_s": stats(walls), "tokens_per_s": stats(rates),
                         "cpu_s": {k: statistics.median(x["cpu_s"].get(k, 0.0) for x in rs)
                                   for k in sorted({k for x in rs for k in x["cpu_s"]})}}
    up = statistics.median(startup)
    for name in names[1:]:  # tagging alone: the wall time less the start-up
        summary[name]["tokens_per_s_after_startup"] = facts["tokens"] / (summary[name]["wall_s"]["median"] - up)
    one, two = summary["ray, 1 worker"], summary["ray, 2 workers"]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "corpus": facts, "rounds": args.rounds, "runs": runs, "summary": summary,
        "ray_startup_s": stats(startup),
        "scaling_2_over_1": one["wall_s"]["median"] / two["wall_s"]["median"],
        "scaling_2_over_1_after_startup": two["tokens_per_s_after_startup"] / one["tokens_per_s_after_startup"],
        "outputs_identical": identical,
        "cores_available": {"runs": cores, "one": statistics.median(c["1"] for c in cores),
                            "two": statistics.median(c["2"] for c in cores)},
        "load1_before": load_before, "load1_after": load1(), "seconds": time.time() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "ray_results.md").write_text(report(result), encoding="utf-8")
    print(report(result))


def report(r: dict) -> str:
    c, s = r["corpus"], r["summary"]
    lines = [f"Measured {r['date']} on {r['machine']['processor']} ({r['machine']['cpus']} CPUs), Python "
             f"{r['machine']['python']}; 1-min load average {r['load1_before']:.2f} before, {r['load1_after']:.2f} "
             f"after. Corpus: EWT dev x {c['files']} files, {c['sentences']:,} sentences, {c['tokens']:,} tokens. "
             f"Median [min-max] of {r['rounds']} interleaved rounds. Outputs byte-identical to the single process: "
             f"{'yes' if r['outputs_identical'] else '**no**'}.", "",
             "| command | wall s | tokens/s | tokens/s after Ray's start-up | CPU s: driver / actors / rest of Ray "
             "| cores used | tokens per CPU s of tagging |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, x in s.items():
        w, t = x["wall_s"], x["tokens_per_s"]
        after = f"{x['tokens_per_s_after_startup']:,.0f}" if "tokens_per_s_after_startup" in x else "-"
        cpu = x["cpu_s"]
        lines.append(f"| {name} | {w['median']:.1f} [{w['min']:.1f}-{w['max']:.1f}] | {t['median']:,.0f} "
                     f"[{t['min']:,.0f}-{t['max']:,.0f}] | {after} | {cpu.get('driver', 0):.1f} / "
                     f"{cpu.get('actors', 0):.1f} / {cpu.get('other Ray processes', 0):.1f} | "
                     f"{sum(cpu.values()) / w['median']:.2f} | "
                     f"{c['tokens'] / (cpu.get('actors') or cpu['driver']):,.0f} |")
    u = r["ray_startup_s"]
    lines += ["", f"Ray start-up (the ray command on a one-sentence file, 2 workers: start Ray, start the actors and "
                  f"load the artifact, stop Ray): {u['median']:.1f} s [{u['min']:.1f}-{u['max']:.1f}].",
              f"Scaling, 2 workers / 1 worker: {r['scaling_2_over_1']:.2f}x on wall time, "
              f"{r['scaling_2_over_1_after_startup']:.2f}x after start-up (target >= 1.7x).",
              f"Cores available (1 and 2 busy processes spinning, 5 s, before each round): "
              f"{r['cores_available']['one']:.2f} and {r['cores_available']['two']:.2f} (medians): " + _bound(r),
              "Cores used: the CPU seconds of the command's processes over its wall time (the share of the 2 cores "
              "the run got); tokens per CPU s of tagging: the tokens over the CPU time of the process that tags "
              "(the single process, or the actors).", ""]
    return "\n".join(lines)


def _bound(r: dict) -> str:
    """What kept 2 workers from 2x, from this run's figures: other work on the machine, or Ray's own CPU time."""
    if r["cores_available"]["two"] < 1.8:
        return "the second core was partly taken by other work, and a second worker can only add what is free."
    two = r["summary"]["ray, 2 workers"]["cpu_s"]
    own = two.get("driver", 0) + two.get("other Ray processes", 0)
    return (f"both cores were free; Ray's own processes and the driver took {own:.1f} CPU s of the run besides the "
            f"actors' {two.get('actors', 0):.1f} s of tagging, on the same 2 cores, and with 1 worker they already "
            f"ran on the second core: on 2 cores that overhead, not the tagging, bounds the scaling.")


if __name__ == "__main__":
    main()
