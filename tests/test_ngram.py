"""The Kneser-Ney character n-gram against hand computations and the laws of probability."""
import numpy as np
import pytest

from completer.errors import CompleterError
from completer.evaluation.ngram import NGram


def test_unigram_by_hand():
    lm = NGram.train(["abab"], order=1)
    # V = a, b, unknown; raw counts a:2 b:2 -> n1 = 0, n2 = 2 -> D = 0, clamped to 0.05
    D = 0.05
    pa = (2 - D + D * 2 / 3) / 4
    assert lm.prob("", "a") == pytest.approx(pa)
    assert lm.prob("", "z") == pytest.approx(D * 2 / 3 / 4)


def test_bigram_by_hand():
    lm = NGram.train(["abab"], order=2)
    # bigrams (start a) (a b) (b a) (a b): raw counts 1, 2, 1 -> D2 = 2 / (2 + 2)
    # continuation counts: a after {start, b} = 2, b after {a} = 1 -> D1 = 1 / 3, total 3, 2 types
    D2, D1 = 0.5, 1 / 3
    p1 = {"a": (2 - D1 + D1 * 2 / 3) / 3, "b": (1 - D1 + D1 * 2 / 3) / 3, "z": (D1 * 2 / 3) / 3}
    assert lm.prob("a", "b") == pytest.approx((2 - D2 + D2 * 1 * p1["b"]) / 2)
    assert lm.prob("ab", "a") == pytest.approx((1 - D2 + D2 * 1 * p1["a"]) / 1)
    assert lm.prob("", "a") == pytest.approx((1 - D2 + D2 * 1 * p1["a"]) / 1)   # after start
    assert lm.prob("z", "a") == pytest.approx(p1["a"])                          # unseen context
    assert lm.prob("a", "a") == pytest.approx(D2 * 1 * p1["a"] / 2)


@pytest.mark.parametrize("order", [1, 3, 6])
def test_distributions_sum_to_one(order):
    text = "def f(x):\n    return x + 1\n\ndef g(y):\n    return f(y) * 2\n"
    lm = NGram.train([text, "import os\n"], order=order)
    symbols = lm.chars + ["\u20ac"]  # every known character and one stand-in for unknown
    for context in ["", "def ", "    return f", "zzz", text]:
        total = sum(lm.prob(context, c) for c in symbols)
        assert total == pytest.approx(1.0, abs=1e-9)


def test_bits_match_prob_and_learning_helps():
    train = ["for i in range(10):\n    print(i)\n"] * 3
    lm = NGram.train(train, order=4)
    test = "for i in range(10):\n"
    bits = lm.bits([test])
    assert bits.shape == (len(test),)
    assert bits[5] == pytest.approx(-np.log2(lm.prob(test[:5], test[5])))
    assert lm.bpc([test]) < NGram.train(["xyz"], order=4).bpc([test])


def test_no_training_text_is_refused():
    with pytest.raises(CompleterError):
        NGram.train([""], order=3)


# ---- greedy line completion ---------------------------------------------------------------------
def test_greedy_line_by_hand():
    lm = NGram.train(["x = 1\n", "x = 1\n", "x = 2\n"], order=3)
    # every 2-character context up to "= " has one continuation, seen 3 times; after "= ": "1"
    # twice, "2" once, and both back off to the same order-2 estimate (each seen after "=" once),
    # so "1" wins; after " 1" comes a newline, which ends the line
    # ("" is the top of a file: the start-of-file context, seen before each "x")
    assert lm.greedy_lines(["x", "", "x = "]) == [" = 1", "x = 1", "1"]


def test_greedy_line_stops_at_max_chars_and_never_says_unknown():
    lm = NGram.train(["abababab"], order=2)
    assert lm.greedy_lines(["a", "zzzb"], max_chars=5) == ["babab", "ababa"]
    assert lm.greedy_lines([]) == []
    assert NGram.train(["aab"], order=1).greedy_lines(["\u20ac"], max_chars=3) == ["aaa"]


@pytest.mark.parametrize("order", [1, 4, 7])
def test_greedy_line_is_the_argmax_of_prob(order):
    """The batched decode against a naive one that asks prob() about every character in turn."""
    train = ["def f(x):\n    return x + 1\n\n\ndef g(y):\n    return f(y) * 2\n", "import os\nx = f(2)\n"]
    lm = NGram.train(train, order=order)
    contexts = ["def f(", "    ret", "", "zz", "import o", train[0][:40], "x = g(y"]

    def naive(context, max_chars=12):
        out = ""
        while len(out) < max_chars:
            probs = np.array([lm.prob(context + out, c) for c in lm.chars])
            c = lm.chars[int(np.flatnonzero(probs >= probs.max() * (1 - 1e-9))[0])]  # first of ties
            if c == "\n":
                break
            out += c
        return out

    assert lm.greedy_lines(contexts, max_chars=12) == [naive(c) for c in contexts]
