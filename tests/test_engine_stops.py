"""Stop rules and post-processing, on text alone (no model)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from completer.engine.documents import common_prefix

from completer.engine.stops import Stopper, Syntax, continues_identifier, finish


def run(mode, context, generated, max_chars=1000):
    """The completion the stop rule keeps from `generated`."""
    s = Stopper(mode, context, max_chars)
    for i, ch in enumerate(generated):
        keep = s.push(ch)
        if keep is not None:
            return generated[:keep]
    return generated


@pytest.mark.parametrize("mode,context,generated,kept", [
    ("char", "x = ", "foo", "f"),
    ("line", "x = ", "foo(1)\ny = 2", "foo(1)"),
    ("token", "x = fo", "o(1)", "o"),
    ("token", "x = ", "  foo.bar", "  foo"),
    ("token", "x ", "+= 1", "+="),
    ("token", "x = ", "(1)", "("),
    ("token", "x = 12", "34 + 1", "34"),
    ("token", "x = foo", "(1)", "("),              # the identifier is complete: the next token
    ("token", "x =", " 1 + 2", " 1"),
    ("block", "def f(x):", "\n    y = 1\n    return y\ndef g", "\n    y = 1\n    return y"),
    ("block", "def f(x):", "\n    y = 1\n\n    return y", "\n    y = 1"),
    ("block", "    if x:", "\n        a()\n    else:\n", "\n        a()"),
    ("block", "class A:\n    def f(self):", "\n        if x:\n            return 1\n        return 2\n    def g",
     "\n        if x:\n            return 1\n        return 2"),
    ("line", "f(a", ", b))", ", b)"),              # the second ')' closes nothing
    ("line", "x = ", "a]", "a"),
    ("line", "x = '(", "))'", "))'"),               # inside a string brackets do not count
    ("line", "x = 1  # ", ")", ")"),               # ... nor inside a comment
    ("line", 'x = """(\n', 'a"""', 'a"""'),
    ("free", "", "a)\n\n)", "a)\n\n)"),
    ("line", "", "abcdef", "abc"),
])
def test_stop_rules(mode, context, generated, kept):
    assert run(mode, context, generated, max_chars=3 if kept == "abc" else 1000) == kept


def test_syntax_scan_tracks_brackets_and_strings():
    s = Syntax.scan("f(a, [b, '(', \"]\"")
    assert s.stack == ["(", "["] and s.quote is None
    s = Syntax.scan("x = 'it\\'s")
    assert s.quote == "'"
    s = Syntax.scan("a) + (b")  # a closer from before the context is forgotten
    assert s.stack == ["("]


@pytest.mark.parametrize("text,mode,suffix,out", [
    ("foo(1)  ", "line", "", "foo(1)"),
    ("x\n    ", "block", "", "x"),
    (" ", "char", "", " "),                         # char mode keeps a space: it is the answer
    ("abc\")", "line", "\")\n", "abc"),
    ("abc\")", "line", ")\n", "abc\""),
    ("abc)", "line", "x)", "abc)"),
    ("])", "line", "])", ""),
])
def test_finish(text, mode, suffix, out):
    assert finish(text, mode, suffix) == out


def test_continues_identifier():
    assert continues_identifier("fo", "o")
    assert not continues_identifier("fo", "(")
    assert not continues_identifier("f(", "o")
    assert not continues_identifier("", "o")


@given(st.text("ab\n", max_size=40), st.text("ab\n", max_size=40))
def test_common_prefix(a, b):
    n = common_prefix(a, b)
    assert a[:n] == b[:n] and (n == min(len(a), len(b)) or a[n] != b[n])


def test_common_prefix_of_long_texts():
    a = "x" * 200_000
    for i in (0, 1, 65_535, 65_536, 150_001, 199_999):
        assert common_prefix(a, a[:i] + "y" + a[i + 1:]) == i
    assert common_prefix(a, a + "z") == len(a)
