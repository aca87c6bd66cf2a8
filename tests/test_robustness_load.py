"""``runtime.load`` on hostile folders: non-regular files, oversized files, symbolic links, a graph whose axis layout
differs from the manifest's, bad arguments, a folder replaced while it loads, and malformed manifests (hand-picked
cases and property-based mutations of real ones). Every failure is one ArtifactError (TypeError/ValueError for the
arguments), and nothing hangs.

Each test copies committed artifacts into tmp_path first; the committed artifacts are never modified."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime
from runtime.artifact import MANIFEST, ONNX_FILE, ArtifactError, sha256_bytes

from .conftest import ARTIFACTS, copy_artifact, edit_manifest, rehash


def copy(tmp_path: Path, name: str = "lstm-2layer", dest: str | None = None) -> Path:
    return copy_artifact(tmp_path, name, dest)


def load_within(folder: Path, case: str, seconds: float = 20, **kwargs):
    """runtime.load in a thread: (result or exception). Fails the test, naming the case, if it does not return."""
    box: dict = {}

    def target():
        try:
            box["result"] = runtime.load(folder, **kwargs)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            box["error"] = e
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for name in (MANIFEST, ONNX_FILE):  # unblock a reader stuck on a FIFO: a writer that closes at once
            try:
                os.close(os.open(folder / name, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        pytest.fail(f"case {case}: runtime.load did not return within {seconds} s")
    return box.get("result"), box.get("error")


def refused(folder: Path, case: str, *words: str, **kwargs) -> str:
    result, error = load_within(folder, case, **kwargs)
    assert isinstance(error, ArtifactError), f"case {case}: expected ArtifactError, got {error!r} / {result!r}"
    for w in words:
        assert w in str(error), f"case {case}: {w!r} not in {str(error)!r}"
    return str(error)


# ---- 1. only regular files, of bounded size, inside the folder ---------------------------------------------------

SECRET = b"TOP-SECRET contents of a file outside the artifact folder\n"


def _fifo(folder: Path, name: str, tmp_path: Path) -> None:
    (folder / name).unlink()
    os.mkfifo(folder / name)


def _link(target_of):
    def make(folder: Path, name: str, tmp_path: Path) -> None:
        target = target_of(folder, tmp_path)
        (folder / name).unlink()
        os.symlink(target, folder / name)
    return make


def _directory(folder: Path, name: str, tmp_path: Path) -> None:
    (folder / name).unlink()
    (folder / name).mkdir()


def _sparse(size: int):
    def make(folder: Path, name: str, tmp_path: Path) -> None:
        with open(folder / name, "r+b") as f:
            f.truncate(size)  # sparse: no disk, no memory unless read
    return make


def _outside(folder: Path, tmp_path: Path) -> Path:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    return secret


@pytest.mark.parametrize("case, name, make, words", [
    ("fifo as model.onnx", ONNX_FILE, _fifo, ["expected a regular file, got a FIFO"]),
    ("fifo as manifest.json", MANIFEST, _fifo, ["expected a regular file, got a FIFO"]),
    ("model.onnx -> /dev/zero", ONNX_FILE, _link(lambda f, t: "/dev/zero"), ["symbolic link"]),
    ("manifest.json -> /dev/zero", MANIFEST, _link(lambda f, t: "/dev/zero"), ["symbolic link"]),
    ("model.onnx -> a file outside the folder", ONNX_FILE, _link(_outside), ["symbolic link"]),
    ("manifest.json -> a file outside the folder", MANIFEST, _link(_outside), ["symbolic link"]),
    ("model.onnx -> ../ relative link", ONNX_FILE, _link(lambda f, t: (_outside(f, t), "../secret.bin")[1]),
     ["symbolic link"]),
    ("model.onnx -> a file inside the folder (refused too)", ONNX_FILE,
     _link(lambda f, t: (shutil.copy(f / ONNX_FILE, f / "real.onnx"), "real.onnx")[1]), ["symbolic link"]),
    ("manifest.json is a folder", MANIFEST, _directory, ["expected a regular file, got a folder"]),
    ("model.onnx is a folder", ONNX_FILE, _directory, ["expected a regular file, got a folder"]),
    ("manifest.json over 16 MB", MANIFEST, _sparse(16 * 2**20 + 1), ["expected at most 16,777,216 bytes"]),
    ("model.onnx over 2 GB", ONNX_FILE, _sparse(2 * 2**30 + 1), ["expected at most 2,147,483,648 bytes"]),
])
def test_only_bounded_regular_files_inside_the_folder_are_read(tmp_path, case, name, make, words):
    folder = copy(tmp_path)
    make(folder, name, tmp_path)
    msg = refused(folder, case, str(folder / name), *words)
    assert sha256_bytes(SECRET) not in msg and "TOP-SECRET" not in msg, f"case {case}: leaks the outside file: {msg}"


def test_an_unreadable_manifest_is_an_artifact_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    folder = copy(tmp_path)
    (folder / MANIFEST).chmod(0)
    refused(folder, "manifest.json mode 000", str(folder / MANIFEST), "cannot read it")


# ---- 2. the graph's declared IO must be the manifest's, axes and dtypes included ---------------------------------

def _twin_graph(folder: Path) -> None:
    shutil.copy(ARTIFACTS / "lstm-2layer-batch-first" / ONNX_FILE, folder / ONNX_FILE)
    rehash(folder)


def _manifest_io(change):
    def make(folder: Path) -> None:
        edit_manifest(folder, lambda m: change({t["name"]: t for t in m["io"]["inputs"] + m["io"]["outputs"]}))
    return make


@pytest.mark.parametrize("case, make, words", [
    ("batch-first twin's model.onnx", _twin_graph,
     ["graph input 'input' disagrees", "expected float32 ('time', 'batch', 3), got float32 ('batch', 'time', 3)"]),
    ("manifest axes swapped", _manifest_io(lambda t: t["output"].__setitem__("shape", ["batch", "time", 5])),
     ["graph output 'output'", "expected float32 ('batch', 'time', 5), got float32 ('time', 'batch', 5)"]),
    ("manifest fixed size differs", _manifest_io(lambda t: [t[n].__setitem__("shape", [3, "batch", 5])
                                                            for n in ("h_0", "h_n")]),
     ["graph input 'h_0'", "expected float32 (3, 'batch', 5), got float32 (2, 'batch', 5)"]),
    ("manifest symbol renamed", _manifest_io(lambda t: [t[n].__setitem__("shape", ["steps", "batch", t[n]["shape"][2]])
                                                        for n in ("input", "output")]),
     ["graph input 'input'", "expected float32 ('steps', 'batch', 3), got float32 ('time', 'batch', 3)"]),
    ("manifest dtype differs", _manifest_io(lambda t: t["input"].__setitem__("dtype", "int32")),
     ["graph input 'input'", "expected int32 ('time', 'batch', 3), got float32 ('time', 'batch', 3)"]),
    ("manifest rank differs", _manifest_io(lambda t: t["output"].__setitem__("shape", ["time", "batch"])),
     ["graph output 'output'", "expected float32 ('time', 'batch'), got float32 ('time', 'batch', 5)"]),
])
def test_graph_io_layout_must_be_the_manifests(tmp_path, case, make, words):
    folder = copy(tmp_path)
    make(folder)
    refused(folder, case, str(folder / ONNX_FILE), *words)


# ---- 3. arguments are checked first, and named ---------------------------------------------------------------------

@pytest.mark.parametrize("case, kwargs, error, words", [
    ("zero threads", {"intra_op_threads": 0}, ValueError, ["intra_op_threads", "got 0"]),
    ("negative threads", {"intra_op_threads": -3}, ValueError, ["intra_op_threads", "got -3"]),
    ("a billion threads", {"intra_op_threads": 10**9}, ValueError, ["intra_op_threads"]),
    ("float threads", {"intra_op_threads": 1.5}, TypeError, ["intra_op_threads", "float"]),
    ("bool threads", {"intra_op_threads": True}, TypeError, ["intra_op_threads", "bool"]),
    ("numpy bool threads", {"intra_op_threads": np.bool_(True)}, TypeError, ["intra_op_threads"]),
    ("str threads", {"intra_op_threads": "2"}, TypeError, ["intra_op_threads", "str"]),
    ("None threads", {"intra_op_threads": None}, TypeError, ["intra_op_threads"]),
    ("str spinning", {"spinning": "yes"}, TypeError, ["spinning", "expected a bool"]),
    ("int spinning", {"spinning": 1}, TypeError, ["spinning", "expected a bool"]),
    ("unknown variant", {"variant": "fp16"}, ValueError, ["variant", "'fp16'"]),
    ("list variant", {"variant": ["fp32"]}, TypeError, ["variant", "list"]),
    ("None variant", {"variant": None}, TypeError, ["variant"]),
])
def test_load_arguments_are_checked_before_anything_is_read(tmp_path, case, kwargs, error, words):
    for folder in (ARTIFACTS / "lstm-2layer", tmp_path / "absent"):
        with pytest.raises(error) as e:
            runtime.load(folder, **kwargs)
        for w in words:
            assert w in str(e.value), f"case {case}: {w!r} not in {str(e.value)!r}"
        assert "onnxruntime" not in str(e.value), f"case {case}: reported as the model's fault: {e.value}"


@pytest.mark.parametrize("case, providers, error, words", [
    ("a provider this build lacks", ["XnnpackExecutionProvider"], ValueError,
     ["'XnnpackExecutionProvider'", "not in this onnxruntime build", "available", "CPUExecutionProvider"]),
    ("a name, not a list", "CPUExecutionProvider", TypeError, ["providers", "list", "str"]),
    ("an empty list", [], TypeError, ["providers", "non-empty"]),
    ("a number in the list", [3], TypeError, ["providers", "3"]),
    ("options that are not a dict", [("CPUExecutionProvider", 1)], TypeError, ["providers"]),
])
def test_providers_are_checked_against_this_onnxruntime_build(tmp_path, case, providers, error, words):
    for folder in (ARTIFACTS / "lstm-2layer", tmp_path / "absent"):
        with pytest.raises(error) as e:
            runtime.load(folder, providers=providers)
        for w in words:
            assert w in str(e.value), f"case {case}: {w!r} not in {str(e.value)!r}"


@pytest.mark.parametrize("providers", [None, ["CPUExecutionProvider"], [("CPUExecutionProvider", {})]])
def test_providers_reach_the_session(providers):
    model = runtime.load(ARTIFACTS / "lstm-2layer", providers=providers)
    assert model.session.get_providers() == ["CPUExecutionProvider"], f"case providers={providers}"


def test_numpy_ints_and_bools_are_accepted(tmp_path):
    model = runtime.load(ARTIFACTS / "lstm-2layer", intra_op_threads=np.int64(2), spinning=np.bool_(True))
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 2, "case numpy int threads"
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1", "case numpy bool spinning"


# ---- 4. a folder replaced while it loads -----------------------------------------------------------------------

def test_loading_while_an_export_replaces_the_folder_gives_no_false_damage(tmp_path):
    """A thread replaces the folder again and again the way an export does (a complete new folder beside it, the old
    one renamed away, the new one renamed in, the old one removed), alternating two different artifacts, so a
    manifest read from one with a model file read from the other is a SHA-256 mismatch. Acceptable failures: the
    folder absent for the instant between the renames ("not a folder") and "replaced while loading" (load retries
    once by itself); never "damaged", "missing" or "no manifest"."""
    sources = [copy(tmp_path, "lstm-2layer", "src-a"), copy(tmp_path, "rnn-hello", "src-b")]
    folder = copy(tmp_path, "lstm-2layer", "current")
    stop = threading.Event()
    swaps = [0]

    def replace_forever():
        while not stop.is_set():
            new, old = tmp_path / "new", tmp_path / "old"
            shutil.copytree(sources[swaps[0] % 2], new)
            os.rename(folder, old)
            os.rename(new, folder)
            shutil.rmtree(old)
            swaps[0] += 1

    thread = threading.Thread(target=replace_forever, daemon=True)
    thread.start()
    loaded, absent, replaced, false = 0, 0, 0, []
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                model = runtime.load(folder)
                assert model.name in ("lstm-2layer", "rnn-hello"), f"case replace-race: loaded {model.name!r}"
                loaded += 1
            except ArtifactError as e:
                if "not a folder" in str(e):
                    absent += 1
                elif "replaced while loading" in str(e):
                    replaced += 1
                else:
                    false.append(str(e))
    finally:
        stop.set()
        thread.join(10)
    assert swaps[0] > 10 and loaded > 10, f"case replace-race: too little happened ({swaps[0]} swaps, {loaded} loads)"
    assert not false, (f"case replace-race: {len(false)} false errors in {loaded} loads ({absent} absent, {replaced} "
                       f"replaced): {false[:3]}")


# ---- 5. malformed manifests: one ArtifactError naming the file and the field -----------------------------------

def _set(*path_and_value):
    *path, value = path_and_value

    def change(m):
        for key in path[:-1]:
            m = m[key]
        m[path[-1]] = value
    return change


def _drop(*path):
    def change(m):
        for key in path[:-1]:
            m = m[key]
        del m[path[-1]]
    return change


def _text(old: str, new: str):
    """Edit the manifest's JSON text (for what json.dumps cannot write: a 5,000-digit int, 100,000 brackets)."""
    def make(folder: Path) -> None:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
        assert old in text
        (folder / MANIFEST).write_text(text.replace(old, new, 1), encoding="utf-8")
    make.edits_text = True
    return make


@pytest.mark.parametrize("case, name, change, words", [
    ("deep nesting", "lstm-2layer", _text('"vocab": {}', '"vocab": ' + "[" * 100_000 + "]" * 100_000),
     ["not valid JSON"]),
    ("5,000-digit integer", "lstm-2layer", _text('"format_version": 1', '"format_version": 1' + "0" * 5000),
     ["not valid JSON"]),
    ("NaN", "lstm-2layer", _text('"format_version": 1', '"format_version": NaN'), ["not valid JSON"]),
    ("format_version true", "lstm-2layer", _set("format_version", True), ["unsupported format_version"]),
    ("name not a str", "lstm-2layer", _set("name", 7), ["field 'name'", "expected a str, got int 7"]),
    ("kind a list", "lstm-2layer", _set("kind", ["recurrent"]), ["field 'kind'"]),
    ("config missing", "lstm-2layer", _drop("config"), ["field 'config'", "got nothing (missing)"]),
    ("io a list", "lstm-2layer", _set("io", []), ["field 'io'", "expected an object, got list"]),
    ("io.inputs a dict", "lstm-2layer", _set("io", "inputs", {}), ["field 'io.inputs'"]),
    ("tensor not an object", "lstm-2layer", _set("io", "outputs", 1, "h_n"), ["field 'io.outputs[1]'"]),
    ("tensor name missing", "lstm-2layer", _drop("io", "inputs", 0, "name"), ["field 'io.inputs[0].name'"]),
    ("tensor name repeated", "lstm-2layer", _set("io", "inputs", 2, "name", "h_0"), ["field 'io.inputs[2].name'"]),
    ("dtype float64", "lstm-2layer", _set("io", "inputs", 0, "dtype", "float64"), ["field 'io.inputs[0].dtype'"]),
    ("shape a str", "lstm-2layer", _set("io", "inputs", 0, "shape", "time"), ["field 'io.inputs[0].shape'"]),
    ("shape with a float", "lstm-2layer", _set("io", "inputs", 1, "shape", [2, "batch", 5.5]),
     ["field 'io.inputs[1].shape'"]),
    ("shape with a negative size", "lstm-2layer", _set("io", "inputs", 1, "shape", [-2, "batch", 5]),
     ["field 'io.inputs[1].shape'"]),
    ("state naming no output", "char-hello", _set("io", "state", [["h_0", "h_x"], ["c_0", "c_n"]]),
     ["field 'io.state'"]),
    ("state not pairs", "lstm-2layer", _set("io", "state", [["h_0"]]), ["field 'io.state'"]),
    ("state a dict", "lstm-2layer", _set("io", "state", {"h_0": "h_n"}), ["field 'io.state'"]),
    ("state pair of different shapes", "lstm-2layer", _set("io", "state", [["h_0", "c_n"], ["c_0", "output"]]),
     ["field 'io.state[1]'"]),
    ("lengths naming no input", "lstm-2layer", _set("io", "lengths", "nope"), ["field 'io.lengths'"]),
    ("lengths a float input", "lstm-2layer", _set("io", "lengths", "input"), ["field 'io.lengths'"]),
    ("vocab a list", "lstm-2layer", _set("vocab", []), ["field 'vocab'"]),
    ("files a list", "lstm-2layer", _set("files", []), ["field 'files'"]),
    ("SHA-256 not hex", "lstm-2layer", _set("files", ONNX_FILE, "xyz"), ["field 'files.model.onnx'"]),
    ("SHA-256 an int", "lstm-2layer", _set("files", "model.pt", 5), ["field 'files.model.pt'"]),
    ("file name a path", "lstm-2layer", _set("files", "../x", "0" * 64), ["field 'files.../x'"]),
    ("export a list", "lstm-2layer", _set("export", []), ["field 'export'"]),
    ("parity a str", "lstm-2layer", _set("parity", "ok"), ["field 'parity'"]),
    ("tagger words missing", "pos-tutorial", _drop("vocab", "words"), ["field 'vocab.words'"]),
    ("tagger tags a str", "pos-tutorial", _set("vocab", "tags", "DNV"), ["field 'vocab.tags'"]),
    ("tagger unk not a word", "pos-tutorial", _set("vocab", "unk", "<nope>"), ["field 'vocab.unk'"]),
    ("tagger pad null", "pos-tutorial", _set("vocab", "pad", None), ["field 'vocab.pad'"]),
    ("tagger without scores", "pos-tutorial", _set("io", "outputs", 0, "name", "tags"),
     ["field 'io'", "expected input 'words' and output 'scores'"]),
    ("spelled tagger without char_buckets", "pos-ewt", _drop("config", "char_buckets"),
     ["field 'config.char_buckets'"]),
    ("spelled tagger with a bucket too many", "pos-ewt", _set("config", "char_buckets", [4, 8, 12]),
     ["field 'config.char_buckets'"]),
    ("char-lm bos missing", "char-hello", _drop("vocab", "bos"), ["field 'vocab.bos'"]),
    ("char-lm bos a bool", "char-hello", _set("vocab", "bos", True), ["field 'vocab.bos'"]),
    ("char-lm symbols an int", "char-hello", _set("vocab", "symbols", 36), ["field 'vocab.symbols'"]),
    ("char-lm never_generate out of range", "char-hello", _set("vocab", "never_generate", [-1]),
     ["field 'vocab.never_generate'"]),
    ("char-lm extra data input", "char-hello", _set("io", "state", [["c_0", "c_n"]]), ["field 'io.inputs'", "h_0"]),
])
def test_malformed_manifest_is_one_artifact_error_naming_the_field(tmp_path, case, name, change, words):
    folder = copy(tmp_path, name)
    if getattr(change, "edits_text", False):
        change(folder)
    else:
        edit_manifest(folder, change)
    refused(folder, case, str(folder / MANIFEST), *words)


# ---- 5b. property: any mutation of a real manifest is refused cleanly, or loads and runs ----------------------------

HUGE_INT, DEEP = "\x00huge-int\x00", "\x00deep\x00"
NAMES = ["h_0", "h_n", "c_0", "c_n", "input", "output", "words", "scores", "chars", "logits", "time", "batch",
         "<unk>", "float32", "int64", "int32", "bool", ONNX_FILE, "0" * 64]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.integers() | st.floats() | st.text(max_size=4)
    | st.sampled_from(NAMES + [HUGE_INT, DEEP]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    """Every path into the manifest but inside the free-form export and parity records."""
    yield prefix
    if prefix in (("export",), ("parity",)):
        return
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, prefix + (key,))


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("mutated")
    return {name: (copy(root, name), (ARTIFACTS / name / MANIFEST).read_text(encoding="utf-8"))
            for name in ("lstm-2layer", "pos-tutorial", "char-hello")}


def _valid_feed(model) -> dict[str, np.ndarray]:
    feed = {}
    for spec in model.io.data_inputs:
        shape = tuple(2 if isinstance(d, str) else d for d in spec.shape)
        fill = 2 if spec.name == model.io.lengths else 0
        feed[spec.name] = np.full(shape, fill, dtype=np.dtype(spec.dtype))
    return feed


@pytest.mark.parametrize("name", ["lstm-2layer", "pos-tutorial", "char-hello"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutated_manifest_is_refused_cleanly_or_runs(originals, name, data):
    folder, text = originals[name]
    manifest = json.loads(text)
    path = data.draw(st.sampled_from(sorted(_paths(manifest), key=repr)), label="path")
    op = data.draw(st.sampled_from(["drop", "replace", "wrap"] if path else ["replace"]), label="op")
    value = data.draw(json_values, label="value") if op == "replace" else None
    if not path:
        manifest = value
    else:
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        if op == "drop":
            del parent[path[-1]]
        else:
            parent[path[-1]] = value if op == "replace" else [parent[path[-1]]]
    out = json.dumps(manifest).replace(json.dumps(HUGE_INT), "9" * 5000).replace(json.dumps(DEEP),
                                                                                  "[" * 50_000 + "]" * 50_000)
    case = f"{name}: {op} {list(path)} -> {value!r:.80}"
    (folder / MANIFEST).write_text(out, encoding="utf-8")
    try:
        try:
            model = runtime.load(folder)
        except ArtifactError as e:
            assert str(folder / MANIFEST) in str(e) or str(folder / ONNX_FILE) in str(e), \
                f"case {case}: the error names no file: {e}"
            return
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"case {case}: load raised {type(e).__name__}: {e}")
        try:
            out = model.run(**_valid_feed(model))
            assert set(out) == {t.name for t in model.io.outputs}, f"case {case}: outputs {sorted(out)}"
            if isinstance(model, runtime.Tagger):
                assert len(model.tag(["The", "dog"])) == 2, f"case {case}"
            if isinstance(model, runtime.CharLM):
                model.generate("h", max_chars=3, seed=0)
                stream = model.stream(seed=0)
                stream.feed("he")
                stream.step()
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"case {case}: loaded, then failed on first use: {type(e).__name__}: {e}")
    finally:
        (folder / MANIFEST).write_text(text, encoding="utf-8")
