"""Stop rules and post-processing, on text alone (no model)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from completer.engine.documents import common_prefix

from completer.engine import syntax
from completer.engine.stops import Stopper, continues_identifier, finish


def run(mode, context, generated, max_chars=1000, begin=(None, 0)):
    """The completion the stop rule keeps from `generated`."""
    s = Stopper(mode, context, max_chars, begin)
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
    ("line", "x = ", '"""a"b)"""', '"""a"b)"""'),  # a quote inside a triple-quoted string
    ("line", "x = ", '""), y', '""'),                # an empty string is no triple quote
    ("line", "x = f(", "'''it's (a)''') + 1)", "'''it's (a)''') + 1"),
    ("free", "", "a)\n\n)", "a)\n\n)"),
    ("line", "", "abcdef", "abc"),
])
def test_stop_rules(mode, context, generated, kept):
    assert run(mode, context, generated, max_chars=3 if kept == "abc" else 1000) == kept


def test_the_context_scan_tracks_brackets_and_strings():
    syntax._last = None
    s = syntax.state("f(a, [b, '(', \"]\"")
    assert s.stack == ["(", "["] and s.quote is None
    s = syntax.state("x = 'it\\'s")
    assert s.quote == "'"
    s = syntax.state("a) + (b")  # a closer from before the context is forgotten
    assert s.stack == ["("]
    s = syntax.state('x = """a"b\n(c')                # one scanner: triple quotes here too
    assert s.quote == '"""' and s.stack == []


def test_the_stop_rule_starts_where_the_context_does():
    """A context that begins inside a docstring (the engine's block start): the prose's
    apostrophe opens no string, so the brackets after the docstring count."""
    context = "    Return the user's name.\n    " + '"""' + "\n    return f("
    assert run("line", context, "x)) + 1", begin=('"""', 0)) == "x)"
    assert run("line", context, "x)) + 1") == "x)) + 1"    # read from outside a string: all kept


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
