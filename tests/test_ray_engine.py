"""The Ray engine (``python -m runtime tag ... --engine ray``, ``runtime/ray_engine.py``; issue 14): the bytes of the
single-process command on files of both formats, whatever happens to a worker or the driver, and ``TagBatch`` in a
user's own Ray Data program.

Every CLI run starts a local Ray with 2 workers (about 10 s of start-up on 2 busy cores), so the corpora are small:
tens of files of 50-300 EWT dev sentences. Processes a test starts are ended by their id; none is left behind.
"""

from __future__ import annotations

import lzma
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install '.[ray]'")
pytestmark = pytest.mark.slow  # Ray starts a local cluster per run: about a minute in all

import runtime  # noqa: E402
from runtime import ray_engine  # noqa: E402
from runtime.artifact import ArtifactError  # noqa: E402

from .conftest import ARTIFACTS, ROOT, run_cli  # noqa: E402

POS_EWT = ARTIFACTS / "pos-ewt"
DEV = ROOT / "export" / "zoo" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu.xz"
ACTOR = "ray::MapWorker(MapBatches(_ChunkTagger))"  # the title of the engine's actor processes
TEXT_SIZES = (50, 120, 300, 80, 200, 150, 60, 250, 100, 90)  # sentences per file
CONLLU_SIZES = (60, 150, 300, 100, 200, 80, 120, 250)


def _sentences() -> list[str]:
    return [s for s in lzma.decompress(DEV.read_bytes()).decode("utf-8").split("\n\n") if s.strip()]


def _words(sentence: str) -> list[str]:
    return [line.split("\t")[1] for line in sentence.split("\n") if line.split("\t")[0].isdigit()]


def _raw_text(sentence: str) -> str:
    """The sentence as it was written (its ``# text =`` comment): what the text format's tokenizer splits."""
    return next(line[len("# text = "):] for line in sentence.split("\n") if line.startswith("# text = "))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Raw text files (one in a subfolder, one .xz, one empty) and CoNLL-U files (one CRLF, one .xz), and their
    single-process outputs (``python -m runtime tag --out``), the reference every test compares with."""
    root = tmp_path_factory.mktemp("ray")
    sentences = _sentences()
    text, ud = root / "text", root / "ud"
    (text / "sub").mkdir(parents=True)
    ud.mkdir()
    start = 0
    for i, n in enumerate(TEXT_SIZES):
        data = "\n".join(_raw_text(s) for s in sentences[start:start + n]) + "\n"
        start += n
        if i == 1:
            (text / "sub" / f"t{i}.txt").write_text(data, encoding="utf-8")
        elif i == 2:
            (text / f"t{i}.txt.xz").write_bytes(lzma.compress(data.encode()))
        else:
            (text / f"t{i}.txt").write_text(data, encoding="utf-8")
    (text / "empty.txt").write_bytes(b"")
    start = 0
    for i, n in enumerate(CONLLU_SIZES):
        data = "\n\n".join(sentences[(start + k) % len(sentences)] for k in range(n)) + "\n\n"
        start += n
        if i == 1:
            (ud / f"u{i}.conllu").write_bytes(data.replace("\n", "\r\n").encode())
        elif i == 2:
            (ud / f"u{i}.conllu.xz").write_bytes(lzma.compress(data.encode()))
        else:
            (ud / f"u{i}.conllu").write_text(data, encoding="utf-8")
    for name, src, fmt in (("text-ref", text, "text"), ("ud-ref", ud, "conllu")):
        out = run_cli("runtime", "tag", str(POS_EWT), str(src), "--format", fmt, "--out", str(root / name))
        assert out.returncode == 0, out.stderr
    return {"root": root, "text": text, "ud": ud, "text-ref": root / "text-ref", "ud-ref": root / "ud-ref"}


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (temporary ``.NAME.*.partial`` files included: none may be left) -> bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ray_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime", "tag", str(POS_EWT), *args, "--engine", "ray", "--workers", "2"]


def _run_ray(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_ray_cli(*args), cwd=ROOT, capture_output=True, text=True, timeout=300)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc): the local Ray a CLI run started."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parent.items() if pp in frontier]
        found += children
        frontier = children
    return found


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, f"the run ended before the test could interrupt it: {proc.communicate()}"
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the run to get under way")


def _outputs(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def text_run(corpus, tmp_path_factory) -> dict:
    """One ray run over the text corpus plus a malformed file (invalid UTF-8 on line 2) and a missing one."""
    root = tmp_path_factory.mktemp("text-run")
    src = root / "src"
    shutil.copytree(corpus["text"], src)
    (src / "bad.txt").write_bytes(b"fine line\nbad \xff byte\n" + b"more words here\n" * 600)
    missing = root / "missing.txt"
    out = _run_ray(str(src), str(missing), "--out", str(root / "out"))
    return {"proc": out, "src": src, "missing": missing, "out": root / "out"}


def test_text_byte_identical_to_the_single_process_command(corpus, text_run):
    assert _tree(text_run["out"]) == _tree(corpus["text-ref"])  # bad.txt and missing.txt: no output


def test_conllu_byte_identical_to_the_single_process_command(corpus, tmp_path):
    out = _run_ray(str(corpus["ud"]), "--format", "conllu", "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    assert f"tagged {len(CONLLU_SIZES)} files (0 complete already, 0 failed)" in out.stderr.splitlines()[-1]
    assert "tokens/s" in out.stderr.splitlines()[-1] and "Traceback" not in out.stderr
    assert _tree(tmp_path / "out") == _tree(corpus["ud-ref"])


def test_a_malformed_or_missing_file_fails_alone_naming_file_and_line(text_run):
    out, src = text_run["proc"], text_run["src"]
    assert out.returncode == 1, out.stderr
    assert f"tagged {len(TEXT_SIZES) + 1} files (0 complete already, 2 failed)" in out.stderr, out.stderr
    assert out.stderr.splitlines()[-2:] == [f"error: {src / 'bad.txt'}: line 2: not UTF-8 (byte 5: b'\\xff')",
                                            f"error: {text_run['missing']}: No such file or directory"], out.stderr
    assert "Traceback" not in out.stderr


def test_a_worker_killed_mid_run_changes_nothing(corpus, tmp_path):
    """SIGKILL one tagging actor once the first output is written: Ray restarts it and retries its batches."""
    src = tmp_path / "src"
    for copy in "ab":  # 16 files: the run lasts long enough to be interrupted
        (src / copy).mkdir(parents=True)
        for f in corpus["ud"].iterdir():
            (src / copy / f.name).write_bytes(f.read_bytes())
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(_ray_cli(str(src), "--format", "conllu", "--out", str(out_dir)), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _outputs(out_dir) if out_dir.exists() else None, proc)
        actors = [p for p in _descendants(proc.pid) if _title(p).startswith(ACTOR)]
        done = _outputs(out_dir)
        assert actors and len(done) < 16, (actors, done)
        os.kill(actors[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            _kill([proc.pid, *_descendants(proc.pid)])
            proc.wait()
    assert proc.returncode == 0, err
    assert "tagged 16 files (0 complete already, 0 failed)" in err.splitlines()[-1], err
    ref = _tree(corpus["ud-ref"])
    assert _tree(out_dir) == {f"{copy}/{name}": data for copy in "ab" for name, data in ref.items()}


def test_resume_after_a_killed_driver_tags_only_what_is_missing(corpus, tmp_path):
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(_ray_cli(str(corpus["text"]), "--out", str(out_dir)), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ray_processes: list[int] = []
    try:
        _wait_for(lambda: _outputs(out_dir) - {"empty.txt"} if out_dir.exists() else None, proc)
        ray_processes = _descendants(proc.pid)  # before the kill: after it, they belong to init
        proc.kill()
        proc.wait()
    finally:
        _kill([proc.pid, *ray_processes, *_descendants(proc.pid)])  # the local Ray the killed driver left
        proc.wait()
    before = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert 0 < len(before) < len(TEXT_SIZES) + 1, sorted(before)
    out = _run_ray(str(corpus["text"]), "--out", str(out_dir), "--resume")
    assert out.returncode == 0, out.stderr
    left = len(TEXT_SIZES) + 1 - len(before)
    assert f"tagged {left} files ({len(before)} complete already, 0 failed)" in out.stderr.splitlines()[-1], out.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in before.items()), "a complete output was written again"
    got = {k: v for k, v in _tree(out_dir).items() if not Path(k).name.startswith(".")}
    assert got == _tree(corpus["text-ref"])
    # What the killed run left half-written is only ever a hidden .NAME.*.partial file, never an output name.
    assert all(Path(k).name.startswith(".") and k.endswith(".partial") for k in _tree(out_dir).keys() - got.keys())


def test_command_line_errors_are_one_line(tmp_path):
    out = run_cli("runtime", "tag", str(POS_EWT), "x.txt", "--engine", "ray")
    assert out.returncode == 1 and out.stderr == ("error: --engine ray, --address and --workers need --out DIR "
                                                  "(one output file per input)\n"), out.stderr
    out = run_cli("runtime", "tag", str(POS_EWT), "x.txt", "--workers", "2", "--out", str(tmp_path))
    assert out.returncode == 1 and "options of --engine ray" in out.stderr
    out = run_cli("runtime", "tag", str(POS_EWT), "x.txt", "--engine", "ray", "--workers", "0", "--out",
                  str(tmp_path))
    assert out.returncode == 1 and out.stderr == "error: --workers: expected at least 1, got 0\n", out.stderr


def test_without_ray_the_error_names_the_extra_and_the_runtime_never_imports_it(tmp_path):
    (tmp_path / "a.txt").write_text("The dog barked .\n", encoding="utf-8")
    hide = ("import sys; sys.modules['ray'] = None; from runtime.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", hide, "tag", str(POS_EWT), str(tmp_path / "a.txt"), "--out",
                          str(tmp_path / "out"), "--engine", "ray"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: the ray engine needs Ray Data") and "pip install '.[ray]'" in out.stderr
    check = ("import sys, runtime; from runtime.__main__ import main; main(sys.argv[1:]); "
             "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", check, "tag", str(POS_EWT), str(tmp_path / "a.txt"), "--out",
                          str(tmp_path / "local")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "[]\n", (out.stdout, out.stderr)


def test_a_damaged_shipped_artifact_is_refused_by_its_sha256():
    shipped = ray_engine.artifact_files(POS_EWT)
    assert sorted(shipped) == ["manifest.json", "model.onnx"]
    data = bytearray(shipped["model.onnx"])
    data[len(data) // 2] ^= 1
    with pytest.raises(ArtifactError, match="SHA-256 mismatch"):
        ray_engine.load_tagger({**shipped, "model.onnx": bytes(data)})
    with pytest.raises(ArtifactError, match="unexpected file"):
        ray_engine.load_tagger({**shipped, "../x": b""})


# ---- TagBatch in a user's own Ray Data program (in-process, last: its Ray runs until the module ends) -------------

@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("how", ["path", "shipped"])
def test_tag_batch_in_a_users_ray_data_program(ray_local, how):
    ray = ray_local
    sentences = [_words(s) for s in _sentences()[:300]]
    artifact = str(POS_EWT) if how == "path" else ray.put(ray_engine.artifact_files(POS_EWT))
    ds = ray.data.from_items([{"id": i, "tokens": s} for i, s in enumerate(sentences)])
    tagged = ds.map_batches(ray_engine.TagBatch, fn_constructor_kwargs={"artifact": artifact}, batch_size=64,
                            compute=ray.data.ActorPoolStrategy(size=2))
    rows = {row["id"]: row for row in tagged.take_all()}
    tagger = runtime.load(POS_EWT)
    assert sorted(rows) == list(range(len(sentences)))
    for i, s in enumerate(sentences):
        assert list(rows[i]["tokens"]) == s and list(rows[i]["tags"]) == tagger.tag(s), i


def test_sigterm_to_the_driver_is_interrupted_with_ray_stopped(corpus, tmp_path):
    """ray.init installs its core's SIGTERM handler (a C++ stack dump, exit 15); the driver puts its own back:
    exit 130, ``interrupted``, no .partial file, no Ray process left (issue 23, item 8)."""
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(_ray_cli(str(corpus["text"]), "--out", str(out_dir)), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ray_processes: list[int] = []
    try:
        _wait_for(lambda: _outputs(out_dir) - {"empty.txt"} if out_dir.exists() else None, proc)
        ray_processes = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=600)[1].decode()
    except BaseException:
        _kill([proc.pid, *ray_processes])
        raise
    assert proc.returncode == 130 and err.rstrip().endswith("interrupted"), err[-2000:]
    assert "SIGTERM received" not in err, err[-2000:]
    assert not [p for p in out_dir.rglob("*") if p.name.endswith(".partial")]
    deadline = time.monotonic() + 30  # ray.shutdown has returned: its processes are on their way out
    alive = ray_processes
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in ray_processes if _alive(p)]
    _kill(alive)
    assert not alive, f"Ray processes outlived the interrupted driver: {alive}"


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False
