"""runtime.tokenize: the UD English EWT rules one by one, the words-are-the-text property, and token F1 on EWT dev."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given, strategies as st

from runtime.tokenize import tokenize

from .conftest import ROOT

# Measured on EWT dev 2026-12-04: token F1 0.9931 (benchmarks/tokenizer_eval.py). A regression below this fails.
MIN_DEV_F1 = 0.99

RULES = {
    "whitespace": [
        ("The  dog\tbarked\n", ["The", "dog", "barked"]),
        ("The dog barked.", ["The", "dog", "barked", "."]),
    ],
    "punctuation": [
        ("Hello, world!", ["Hello", ",", "world", "!"]),
        ("Wait... what?!", ["Wait", "...", "what", "?!"]),
        ("wow!!! really??", ["wow", "!!!", "really", "??"]),
        ("yes -- no; maybe: later", ["yes", "--", "no", ";", "maybe", ":", "later"]),
        ('"Hi," she said.', ['"', "Hi", ",", '"', "she", "said", "."]),
        ("(a) [b] {c}", ["(", "a", ")", "[", "b", "]", "{", "c", "}"]),
        ("‘hi’ and “bye”", ["‘", "hi", "’", "and", "“", "bye", "”"]),
        ("''so'' he said", ["''", "so", "''", "he", "said"]),
    ],
    "abbreviations": [
        ("Mr. Smith and Mrs. Jones met Dr. Who.", ["Mr.", "Smith", "and", "Mrs.", "Jones", "met", "Dr.", "Who", "."]),
        ("the U.S. army", ["the", "U.S.", "army"]),
        ("fruit, e.g. apples", ["fruit", ",", "e.g.", "apples"]),
        ("apples, pears, etc. are fruit", ["apples", ",", "pears", ",", "etc.", "are", "fruit"]),
        ("Jennifer M. Anderson of Acme Inc. said", ["Jennifer", "M.", "Anderson", "of", "Acme", "Inc.", "said"]),
        ("at 5 a.m. on Sept. 3", ["at", "5", "a.m.", "on", "Sept.", "3"]),
        ("so did I.", ["so", "did", "I", "."]),
    ],
    "line-final abbreviation": [
        ("He lives in the U.S.", ["He", "lives", "in", "the", "U.S", "."]),
        ("apples, pears, etc.", ["apples", ",", "pears", ",", "etc", "."]),
    ],
    "numbers": [
        ("It is 3.5 m", ["It", "is", "3.5", "m"]),
        ("1,000 people", ["1,000", "people"]),
        ("it cost $5.", ["it", "cost", "$", "5", "."]),
        ("10% off", ["10", "%", "off"]),
        ("at 5:30 today", ["at", "5:30", "today"]),
        ("on 11/28/2000 and 9/11", ["on", "11/28/2000", "and", "9/11"]),
        ("at 5pm or 7:30PM", ["at", "5", "pm", "or", "7:30", "PM"]),
        ("the 2nd time in the 1970s", ["the", "2nd", "time", "in", "the", "1970s"]),
        ("call 713-853-3989", ["call", "713-853-3989"]),
        ("in 1969-1970", ["in", "1969", "-", "1970"]),
    ],
    "urls and e-mail": [
        ("see http://www.example.com/a?b=c&d=e.", ["see", "http://www.example.com/a?b=c&d=e", "."]),
        ("(www.example.org)", ["(", "www.example.org", ")"]),
        ("mail jane.doe@example.com, please", ["mail", "jane.doe@example.com", ",", "please"]),
        ("mailto:amy@compaq.com", ["mailto:amy@compaq.com"]),
        ("open TEXT.htm now", ["open", "TEXT.htm", "now"]),
    ],
    "clitics": [
        ("I don't know", ["I", "do", "n't", "know"]),
        ("I can't and won't", ["I", "ca", "n't", "and", "wo", "n't"]),
        ("I'm sure you're right", ["I", "'m", "sure", "you", "'re", "right"]),
        ("we've, they'll, he'd", ["we", "'ve", ",", "they", "'ll", ",", "he", "'d"]),
        ("John's dog", ["John", "'s", "dog"]),
        ("I don’t know, I’m sure it’s", ["I", "do", "n’t", "know", ",", "I", "’m", "sure", "it", "’s"]),
        ("DON'T", ["DO", "N'T"]),
        ("O'Neill's car", ["O'Neill", "'s", "car"]),
        ("the 80's", ["the", "80's"]),
        ("the students' books", ["the", "students", "'", "books"]),
    ],
    "fused forms": [
        ("I'm gonna go", ["I", "'m", "gon", "na", "go"]),
        ("I wanna go", ["I", "wan", "na", "go"]),
        ("I gotta go", ["I", "got", "ta", "go"]),
        ("I cannot go", ["I", "can", "not", "go"]),
        ("I dont know", ["I", "do", "nt", "know"]),
    ],
    "hyphens": [
        ("a 15-year term", ["a", "15", "-", "year", "term"]),
        ("state-of-the-art", ["state", "-", "of", "-", "the", "-", "art"]),
        ("an e-mail to a non-profit", ["an", "e-mail", "to", "a", "non-profit"]),
        ("re-wording the anti-smoking law", ["re-wording", "the", "anti-smoking", "law"]),
        ("and/or b/c", ["and", "/", "or", "b/c"]),
    ],
    "emoticons and hashtags": [
        ("great :) thanks ;-)", ["great", ":)", "thanks", ";-)"]),
        ("sad :( but :D", ["sad", ":(", "but", ":D"]),
        ("<3 ^_^", ["<3", "^_^"]),
        ("Note:Please read", ["Note", ":", "Please", "read"]),
        ("#audiobooks rock", ["#audiobooks", "rock"]),
    ],
}


@pytest.mark.parametrize("text, expected", [case for cases in RULES.values() for case in cases],
                         ids=[f"{rule}: {text}" for rule, cases in RULES.items() for text, _ in cases])
def test_rule(text, expected):
    assert tokenize(text) == expected, f"tokenize({text!r})"


@pytest.mark.parametrize("text", ["", " ", "  \t\n ", "\u00a0\u2003"])
def test_empty_and_whitespace_give_no_words(text):
    assert tokenize(text) == [], f"tokenize({text!r})"


@pytest.mark.parametrize("value", [None, b"The dog.", ["The", "dog"], 3])
def test_non_str_is_a_type_error(value):
    with pytest.raises(TypeError, match=f"expected a str, got {type(value).__name__}"):
        tokenize(value)


TRICKY = st.sampled_from(list("aZé09 .,;:!?'’\"-/@#$%&()[]<>^_*+=\t\n\u00a0") + ["n't", "'s", "http://", "www.",
                                                                                 "Mr.", "U.S.", ":)", "..."])


@given(st.lists(TRICKY | st.characters(), max_size=40).map("".join))
def test_words_are_the_texts_non_space_characters(text):
    words = tokenize(text)
    assert "".join(words) == "".join(text.split()), f"tokenize({text!r}) = {words!r}"
    assert all(w and not any(c.isspace() for c in w) for w in words), f"tokenize({text!r}) = {words!r}"


def test_ewt_dev_token_f1_stays_above_its_floor():
    spec = importlib.util.spec_from_file_location("tokenizer_eval", ROOT / "benchmarks" / "tokenizer_eval.py")
    evaluation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluation)
    sentences = evaluation.read_sentences()
    scores = evaluation.token_scores(sentences, evaluation.tokenized(sentences, tokenize))
    assert scores["f1"] >= MIN_DEV_F1, f"EWT dev token F1 {scores['f1']:.4f} < {MIN_DEV_F1} ({scores})"
