"""Syntax-aware suggestions (completer.engine.syntax): the check on known texts, and the engine
applying it to line and block suggestions (a scripted decoder makes the suggestion)."""
import pytest

from completer.engine import Engine, Request
from completer.engine import syntax
from completer.engine.decoders import Decoder
from completer.registry import registry


@pytest.mark.parametrize("context,text,kept", [
    ("x = ", '"abc', ""),                              # a string opened and left open at the line's end
    ("x = f(a, ", '"abc, b)', ""),
    ("x = f(", "a]", "a"),                             # the wrong kind of bracket
    ("x = [f(", "a)]", "a)]"),
    ("y = ", "a $ b", "a "),                           # characters the tokenizer rejects
    ("y = ", "a ? b : c", "a "),
    ("y = ", "`x`", ""),
    ("if a ", "! b:", ""),
    ("y = a ", "\\ b", ""),
    ("y = ", "caf\u00e9 + \u00d7", "caf\u00e9 + "),  # a letter may name; a sign may not
])
def test_what_makes_the_line_worse_is_cut(context, text, kept):
    syntax._last = None
    assert syntax.check(context, text) == kept


@pytest.mark.parametrize("context,text", [
    ("x = ", '"abc" + y'),
    ("x = ", '"""Docstring that goes on'),                # triple quotes may span lines
    ("def f():\n    \"", '""Returns it\'s value.'),    # a triple quote begun in the context
    ("def f():\n    \"\"", '"Returns it\'s value.'),
    ('x = "ab', "cd"),                                   # the user's own open string may stay open
    ("# what", "? $ `"),                                  # comments hold anything
    ("x = ", "'it''s'"),
    ("if x ", "!= 3:"),
    ("print(", 'f"{x!r}")'),
    ("x = ", 'r"\\d+"'),
    ("x = a + ", "\\"),                                   # a line continuation
    ("s = '''", "abc\n  def"),
])
def test_what_the_tokenizer_accepts_is_kept(context, text):
    syntax._last = None
    assert syntax.check(context, text) == text


def test_a_block_that_starts_inside_a_docstring_reads_its_prose_as_prose():
    text = 'def f():\n    """Long prose.\n' + "filler line\n" * 30 + "It's here"
    start = text.index("filler")                  # the engine's context begins past the quote
    quote = syntax.quote_before(text, start)
    assert quote == ('"""', 0)
    ctx, rest = text[start:text.index("It's")], "It's here"
    assert syntax.check(ctx, rest, True, quote) == rest
    syntax._last = None
    assert syntax.check(ctx, rest, True) == "It"   # without it: an apostrophe opens a string


def test_a_triple_quote_split_by_the_blocks_start_is_read_whole():
    text = 'def f():\n    """Doc.\n    """\n    return "it\'s"\n'
    close = text.index('"""\n    return')
    for start in (close + 1, close + 2):      # the context begins inside the closing quote
        begin = syntax.quote_before(text, start)
        assert begin == (None, close + 3 - start)
        ctx = text[start:text.index('"it')]
        syntax._last = None
        assert syntax.check(ctx, '"it\'s"', True, begin) == '"it\'s"'


def test_the_context_scan_continues_as_typing_extends_it():
    syntax._last = None
    a = syntax.state('x = f("a", (')
    b = syntax.state('x = f("a", (b')
    assert a.stack == ["(", "("] and b.stack == ["(", "("] and syntax._last[1] == 'x = f("a", (b'


@pytest.fixture()
def scripted(tiny_checkpoint):
    engine = Engine.from_checkpoint(tiny_checkpoint)

    class Scripted(Decoder):
        """A plugin that says what it is told (req.seed picks the script), through Search.extend."""
        name = "scripted"
        deterministic = True
        scripts = ['"unterminated\n', "a + b$c\n", 'ok("fine")\n']

        def decode(self, search, req, rng):
            hyp = search.root()
            for ch in self.scripts[req.seed]:
                if hyp.done:
                    break
                lp = search.logprobs([hyp])[0]
                i = engine.vocab.id(ch)
                hyp = search.extend(hyp, i, lp[i])
            return [hyp]

    registry.register("decoder", "scripted", Scripted)
    yield engine
    registry.unregister("decoder", "scripted")


@pytest.mark.parametrize("mode", ["line", "block"])
def test_the_engine_checks_line_and_block_suggestions(scripted, mode):
    def ask(seed, mode=mode):
        return [c.text for c in scripted.complete_text("x = ", Request(mode=mode, decoder="scripted", seed=seed))]
    assert ask(0) == []                               # all of it inside the unterminated string
    assert ask(1) == ["a + b"]
    assert ask(2) == ['ok("fine")']
    assert ask(1, "token") == ["a"]                   # token mode: the stop rule alone ("a", then " ")
