"""The seed tutorials' printed tensors and behaviour, reproduced through the runtime from the committed artifacts."""

from __future__ import annotations

import pytest

import runtime
from export.zoo.registry import REGISTRY
from export.zoo.seeds import HELLO, TOY_DATA

from .conftest import ARTIFACTS

# char-shakespeare's loss checks read its whole validation text (~10 s each): in the slow tier.
CHECKS = [pytest.param(name, check, id=f"{name}: {check.what}",
                       marks=[pytest.mark.slow] if name == "char-shakespeare" and "loss" in check.what else [])
          for name, spec in REGISTRY.items() for check in spec.checks]


@pytest.mark.parametrize("name, check", CHECKS)
def test_seed_reference(name, check):
    ok, detail = check.run(runtime.load(ARTIFACTS / name))
    assert ok, f"{name}: {check.what}: {detail}"


def test_every_seed_model_has_a_reference_check():
    assert all(spec.checks for spec in REGISTRY.values()), [n for n, s in REGISTRY.items() if not s.checks]


@pytest.mark.parametrize("name", ["pos-tutorial", "pos-tutorial-gru"])
def test_toy_taggers_tag_both_sentences(name):
    tagger = runtime.load(ARTIFACTS / name)
    for words, tags in TOY_DATA:
        assert tagger.tag(words) == tags, f"{name}: {words}"


@pytest.mark.parametrize("name", ["char-hello", "char-hello-batch-first"])
def test_char_hello_regenerates_the_sentence(name):
    assert runtime.load(ARTIFACTS / name).generate() == HELLO


def test_untrained_tagger_matched_seed_000_at_export():
    checks = runtime.load(ARTIFACTS / "pos-tutorial").manifest.parity["checks"]
    untrained = [c for c in checks if "untrained" in c["what"]]
    assert untrained and all(c["ok"] for c in untrained), untrained
