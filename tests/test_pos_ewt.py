"""pos-ewt, the UD English EWT tagger: accuracy, size, int8, padded batches, and its CLI."""

from __future__ import annotations

import json
import lzma

import numpy as np
import pytest

import runtime
from export.zoo.ewt import DATA, MIN_DEV_ACCURACY, read_conllu
from export.zoo.spec import DataError
from export.verify import ATOL, RTOL
from export.zoo.build import subject_for

from .conftest import ARTIFACTS, loaded, run_cli

POS_EWT = ARTIFACTS / "pos-ewt"


tagger = loaded("pos-ewt")


@pytest.fixture(scope="module")
def dev_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ewt") / "en_ewt-ud-dev.conllu"
    path.write_bytes(lzma.decompress((DATA / "en_ewt-ud-dev.conllu.xz").read_bytes()))
    return path


@pytest.fixture(scope="module")
def dev_sample():
    """60 dev sentences of many lengths (1 to the longest)."""
    dev = sorted(read_conllu(DATA / "en_ewt-ud-dev.conllu.xz"), key=lambda s: len(s[0]))
    return [dev[i][0] for i in np.linspace(0, len(dev) - 1, 60).astype(int)]


def test_eval_cli_reports_dev_accuracy(dev_file):
    out = run_cli("runtime", "eval", str(POS_EWT), str(dev_file), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["sentences"] == 2001 and result["tokens"] == 25147, result
    assert result["accuracy"] >= MIN_DEV_ACCURACY, result
    assert result["correct"] == round(result["accuracy"] * result["tokens"])
    assert "NOUN" in out.stdout and "precision" in out.stdout and "recall" in out.stdout


def test_tag_conllu_fills_column_4_and_leaves_everything_else(dev_file, tmp_path):
    head = dev_file.read_text(encoding="utf-8").split("\n\n")[:150]
    src = tmp_path / "in.conllu"
    src.write_text("\n\n".join(head) + "\n\n", encoding="utf-8")
    out = run_cli("runtime", "tag", str(POS_EWT), str(src), "--format", "conllu")
    assert out.returncode == 0, out.stderr
    before, after = src.read_text(encoding="utf-8").splitlines(), out.stdout.splitlines()
    assert len(before) == len(after)
    tags = set(runtime.load(POS_EWT).tags)
    for a, b in zip(before, after):
        ca, cb = a.split("\t"), b.split("\t")
        if len(ca) == 10 and ca[0].isdigit():
            assert ca[:3] + ca[4:] == cb[:3] + cb[4:] and cb[3] in tags, (a, b)
        else:
            assert a == b  # comments, blank lines, multi-word tokens, empty nodes: untouched


def test_tag_text_cli_writes_word_slash_tag():
    out = run_cli("runtime", "tag", str(POS_EWT), "-", input="The dog barked at 3 cats .\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["The/DET", "dog/NOUN", "barked/VERB", "at/ADP", "3/NUM", "cats/NOUN", "./PUNCT"]


def test_tag_batch_of_mixed_lengths_equals_tagging_each_alone(tagger, dev_sample):
    """Padding must not reach the backward direction: batch results equal each sentence alone."""
    batched_tags, batched_scores = tagger.tag_batch(dev_sample), tagger.scores_batch(dev_sample)
    for words, tags, scores in zip(dev_sample, batched_tags, batched_scores):
        assert tags == tagger.tag(words), f"len {len(words)}: {words}"
        np.testing.assert_allclose(scores, tagger.scores_batch([words])[0], atol=ATOL, rtol=RTOL,
                                   err_msg=f"len {len(words)}")


def test_padded_batches_equal_single_sentences_on_every_backend(dev_sample):
    """Eager torch (pack_padded_sequence), TorchScript and ONNX Runtime: a padded batch gives each sentence's
    own scores, and the backends agree."""
    bk = subject_for(POS_EWT)
    tagger = runtime.load(POS_EWT)
    sentences = [dev_sample[5], dev_sample[40], dev_sample[-1], dev_sample[0]]  # lengths vary widely
    t = max(len(s) for s in sentences)
    batch_feed = tagger.inputs(sentences)
    for name, fn in bk.backends.items():
        batch = fn(batch_feed)["scores"]
        for b, s in enumerate(sentences):
            alone = fn(tagger.inputs([s]))["scores"][:, 0]
            np.testing.assert_allclose(batch[: len(s), b], alone, atol=ATOL, rtol=RTOL,
                                       err_msg=f"pos-ewt on {name}: sentence {b} (len {len(s)}) padded to {t}")


def test_int8_variant_loads_and_its_checks_passed_at_export(tagger, dev_sample):
    q = runtime.load(POS_EWT, variant="int8")
    agree = np.mean([a == b for s8, s32 in zip(q.tag_batch(dev_sample), tagger.tag_batch(dev_sample))
                     for a, b in zip(s8, s32)])
    assert agree >= 0.98, agree  # on a small sample; the full-dev figure is recorded at export
    checks = {c["what"]: c for c in tagger.manifest.parity["checks"]}
    assert all(c["ok"] for c in checks.values()), checks
    assert any(w.startswith("int8") for w in checks), checks
    assert (POS_EWT / "model.int8.onnx").stat().st_size <= 3_000_000
    assert (POS_EWT / "model.onnx").stat().st_size <= 8_000_000


def test_unknown_words_and_odd_text_are_tagged(tagger):
    words = ["Zyxwvut", "🙂", "مرحبا", "e\u0301", "\x07", "1,234.5", "x" * 500]
    assert len(tagger.tag(words)) == len(words)


def test_training_curve_is_beside_the_artifact():
    png = (POS_EWT / "training_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and "training_curve.png" in runtime.load(POS_EWT).manifest.files


def test_bad_training_data_fails_early_with_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="missing"):
        read_conllu(tmp_path / "nope.conllu")
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tThe\tthe\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="malformed CoNLL-U"):
        read_conllu(bad)
    empty = tmp_path / "empty.conllu"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no sentences"):
        read_conllu(empty)


def test_training_recipe_runs_end_to_end_on_a_small_corpus(tmp_path):
    """The training loop (batches from runtime.tagger.spell, word dropout, EMA, dev evaluation) on 120
    sentences with a tiny network: one epoch, a checkpoint that loads and tags."""
    import torch

    from export.zoo.ewt import DEV_FILE, TRAIN_FILE, TrainConfig, train
    from export.zoo.models import CharBiLSTMTagger, TaggerConfig

    blocks = lzma.decompress((DATA / DEV_FILE).read_bytes()).decode("utf-8").split("\n\n")
    (tmp_path / TRAIN_FILE).write_bytes(lzma.compress(("\n\n".join(blocks[:100]) + "\n\n").encode("utf-8")))
    (tmp_path / DEV_FILE).write_bytes(lzma.compress(("\n\n".join(blocks[100:120]) + "\n\n").encode("utf-8")))
    threads = torch.get_num_threads()
    try:
        ckpt = train(TrainConfig(epochs=1, threads=1), {"word_dim": 8, "char_dim": 8, "char_hidden": 8, "hidden": 8,
                                                        "num_layers": 2}, tmp_path)
    finally:
        torch.set_num_threads(threads)  # train() sets it for the whole process
    assert len(ckpt["training"]["history"]) == 1 and 0 <= ckpt["training"]["best_dev_accuracy"] <= 1
    net = CharBiLSTMTagger(TaggerConfig(**ckpt["config"]))
    net.load_state_dict(ckpt["state_dict"])
    assert all(torch.isfinite(p).all() for p in net.parameters())
