"""The REPL as a person uses it: typing into a real PromptSession through prompt_toolkit's pipe
input, reading what is drawn, accepting suggestions, running commands; plus `completer repl`
with stdin not a terminal, and bad --model.

The model is a hand-built bigram RNN (the next character depends only on the last one), so the
ghost text is known in advance: after "import " it is "os", after "url" it is "):".
"""
import asyncio
import io
import re
import subprocess
import time

import numpy as np
import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import ColorDepth, DummyOutput
from prompt_toolkit.output.vt100 import Vt100_Output

from completer.model import checkpoint
from completer.engine import Engine
from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig
from completer.repl import app, commands
from completer.repl.editing import next_indent, should_submit
from completer.repl.keys import next_word
from completer.repl.session import URI, Session, Settings
from completer.model.vocab import Vocab
from conftest import PYTHON_CHARS

# character -> [(next character, score)]; anything else is followed by a newline (score 8)
RULES = {" ": [("o", 12), ("j", 10)], "o": [("s", 12)], "s": [("\n", 12)],
         "l": [(")", 12)], ")": [(":", 12)], ":": [("\n", 12)]}
RIGHT, CTRL_SPACE, ESC_ENTER = "\x1b[C", "\x00", "\x1b\r"


def make_bigram_checkpoint(path, rules=RULES):
    """A vanilla RNN whose hidden state is the one-hot last character and whose head is a bigram table."""
    vocab = Vocab(PYTHON_CHARS)
    V = len(vocab)
    model = CharModel(ModelConfig(cell="rnn", vocab_size=V, embed=V, hidden=V, layers=1))
    p = model.params
    p["embed"][:] = np.eye(V)                     # (V, E=V)
    p["layers.0.Wx"][:] = 3 * np.eye(V)           # h = tanh(3 * onehot)
    p["layers.0.b"][:] = 0
    p["layers.0.Wh"][:] = 0                       # no memory beyond the last character
    W = np.zeros((V, V), np.float32)              # (H=V, V)
    W[:, vocab.id("\n")] = 8
    for a, nexts in rules.items():
        for b, score in nexts:
            W[vocab.id(a), vocab.id(b)] = score
    p["head.W"][:] = W
    p["head.b"][:] = 0
    return checkpoint.save(path, model, vocab)


@pytest.fixture(scope="session")
def bigram_checkpoint(tmp_path_factory):
    return make_bigram_checkpoint(tmp_path_factory.mktemp("bigram") / "bigram.safetensors")


@pytest.fixture
def session(bigram_checkpoint):
    return Session(Engine.from_checkpoint(bigram_checkpoint))


def plain(raw: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)


async def until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the REPL")
        await asyncio.sleep(0.01)


class Typist:
    """A PromptSession on a pipe input, drawn into a string as a 24-bit-colour terminal."""

    def __init__(self, session, inp):
        self.out = io.StringIO()
        output = Vt100_Output(self.out, lambda: Size(rows=24, columns=100),
                              default_color_depth=ColorDepth.DEPTH_24_BIT)
        self.inp, self.prompt = inp, app.build_prompt(session, input=inp, output=output)
        self.buffer = self.prompt.default_buffer
        self.task = asyncio.ensure_future(self.prompt.prompt_async())

    async def type(self, text):
        # from a thread: a write larger than the pipe's buffer must not block the loop that reads it
        await asyncio.to_thread(self.inp.send_text, text)
        await asyncio.sleep(0.05)

    async def suggestion(self):
        await until(lambda: self.buffer.suggestion is not None)
        await asyncio.sleep(0.05)  # let the renderer draw it
        return self.buffer.suggestion.text

    async def submit(self):
        self.inp.send_text(ESC_ENTER)
        return await asyncio.wait_for(self.task, 5)


def typing(session, script):
    async def main():
        with create_pipe_input() as inp:
            await script(Typist(session, inp))
    asyncio.run(main())


GREY = "\x1b[0;38;2;127;127;127m"  # app.STYLE's auto-suggestion colour, #7f7f7f


def test_ghost_text_is_drawn_grey_and_right_accepts_it(session):
    async def script(t):
        await t.type("import ")
        assert await t.suggestion() == "os"
        assert t.buffer.text == "import "            # ghost text is not in the buffer...
        assert GREY + "os" in t.out.getvalue()       # ...but drawn after the cursor, in grey
        await t.type(RIGHT)
        assert t.buffer.text == "import os"
        assert await t.submit() == "import os"
    typing(session, script)


def test_suggestion_follows_every_keystroke(session):
    async def script(t):
        await t.type("def get(self, url")
        assert await t.suggestion() == "):"
        await t.type("\t")                           # Tab at the end accepts too
        assert t.buffer.text == "def get(self, url):"
        await t.type("\x7f\x7f")                     # Backspace twice: the suggestion comes back
        assert await t.suggestion() == "):"
        await t.type("\x1d")                         # Ctrl-] accepts one character
        assert t.buffer.text == "def get(self, url)"
        await t.submit()
    typing(session, script)


def test_alt_f_accepts_the_next_word(tmp_path):
    rules = {" ": [("o", 12)], "o": [("s", 12)], "s": [(".", 12)], ".": [("p", 12)], "p": [("\n", 12)]}
    s = Session(Engine.from_checkpoint(make_bigram_checkpoint(tmp_path / "b.safetensors", rules)))

    async def script(t):
        await t.type("import ")
        assert await t.suggestion() == "os.p"
        await t.type("\x1bf")                        # Alt-F (Esc f)
        assert t.buffer.text == "import os"
        assert await t.suggestion() == ".p"
        await t.type("\x1b[1;5C")                    # Ctrl-Right
        assert t.buffer.text == "import os."
        await t.submit()
    typing(s, script)


def test_ctrl_space_menu_lists_the_best_continuations_with_probabilities(session):
    async def script(t):
        await t.type("import ")
        await t.suggestion()
        await t.type(CTRL_SPACE)
        await until(lambda: t.buffer.complete_state and len(t.buffer.complete_state.completions) >= 2)
        items = t.buffer.complete_state.completions
        best = session.engine.complete_text("import ", session.request(menu=True))
        assert [c.text for c in items] == [c.text for c in best][:len(items)]
        assert items[0].text == "os" and items[1].text == "j"
        assert items[0].display_meta_text.strip() == f"{best[0].prob:.1%}"
        await asyncio.sleep(0.1)
        assert "os" in plain(t.out.getvalue()) and "%" in plain(t.out.getvalue())  # the menu is drawn
        await t.type("\x1b[B\x1b[B")                 # Down twice: the second alternative
        await t.type("\r")                           # Enter closes the menu, keeps the choice
        assert t.buffer.text == "import j" and t.buffer.complete_state is None
        assert await t.submit() == "import j"
    typing(session, script)


def test_enter_indents_blocks_and_submits_complete_statements(session):
    async def script(t):
        await t.type("def f(x):\r")
        assert t.buffer.text == "def f(x):\n    "      # auto-indent after ':'
        await t.type("return x\r")
        assert t.buffer.text == "def f(x):\n    return x\n"  # dedent after return
        assert not t.task.done()
        await t.type("\r")                           # an empty line ends the block
        assert await asyncio.wait_for(t.task, 5) == "def f(x):\n    return x\n"
    typing(session, script)

    async def one_line(t):
        await t.type("x = 1\r")
        assert await asyncio.wait_for(t.task, 5) == "x = 1"
    typing(session, one_line)


def test_a_keystroke_cancels_the_completion_in_flight(session):
    """The first request is slow; the next keystroke must cancel it, and only the latest shows."""
    real, tokens = session.engine.complete, []

    def slow_first(uri, offset, req, cancel=None):
        tokens.append(cancel)
        if len(tokens) == 1:
            end = time.monotonic() + 5
            while not cancel.cancelled and time.monotonic() < end:
                time.sleep(0.005)
        return real(uri, offset, req, cancel=cancel)  # raises Cancelled for a cancelled token
    session.engine.complete = slow_first

    async def script(t):
        start = time.monotonic()
        await t.type("import")
        await until(lambda: tokens)
        await t.type(" ")
        assert await t.suggestion() == "os"
        assert tokens[0].cancelled and time.monotonic() - start < 2
        assert not tokens[-1].cancelled
        await t.submit()
    typing(session, script)


def test_paste_of_binary_garbage_and_100k_chars_stays_responsive(session):
    calls = []
    complete = session.complete
    session.complete = lambda *a, **k: calls.append(1) or complete(*a, **k)
    garbage = bytes(range(1, 256)).decode("latin-1").replace("\x1b", "") * 4
    typed = "".join(map(chr, range(0xA0, 0xA0 + 300)))  # characters the model never saw
    big = ("x = 1  # " + "y" * 90 + "\n") * 1000   # 100,000 characters

    async def script(t):
        start = time.monotonic()
        await t.type("\x1b[200~" + garbage + big + "\x1b[201~")   # a bracketed paste
        await until(lambda: len(t.buffer.text) == len(garbage) + len(big), timeout=10)
        await t.type(" ")
        assert await t.suggestion() == "os"          # still completing, at the end of it all
        assert time.monotonic() - start < 10
        await t.type(typed)                          # typed (not pasted): one key at a time
        await until(lambda: t.buffer.text.endswith(typed))
        assert len(calls) < 50                       # not one completion per character
        await t.submit()
    typing(session, script)


def test_session_is_one_growing_document(session):
    session.submit("import os")
    session.submit("def f():\n    pass\n")
    session.complete("x = ", 4)
    assert session.engine.text(URI) == "import os\ndef f():\n    pass\nx = "
    session.complete("x = y", 2)                     # the text after the cursor stays in the document
    assert session.engine.text(URI) == "import os\ndef f():\n    pass\nx = y"
    assert commands.run(session, ":reset") == "session cleared"
    session.complete("z", 1)
    assert session.engine.text(URI) == "z"


def test_adapt_learns_the_session_and_reset_restores_the_shipped_weights(bigram_checkpoint):
    session = Session(Engine.from_checkpoint(bigram_checkpoint, adapt=True))
    session.submit("value_of_x = 1\n" * 40)      # submitted text is typed text: it is learned
    session.complete("", 0)
    assert session.engine.wait_adaptation(10)
    assert session.engine.adapt_steps(URI) >= 2
    assert commands.run(session, ":reset") == "session cleared"
    assert session.engine.adapt_steps(URI) == 0
    before = session.engine
    commands.run(session, f":model {bigram_checkpoint}")   # a new model keeps the setting
    assert session.engine is not before and session.engine.adapt


def test_commands_change_settings_and_report_errors(session, bigram_checkpoint, tmp_path):
    assert commands.run(session, ":mode char") == "mode char"
    assert session.settings.mode == "char"
    assert session.complete("import ", 7)[0].text == "o"   # char mode: one character
    assert commands.run(session, ":decoder beam") == "decoder beam"
    assert commands.run(session, ":temp 0.5") == "temperature 0.5"
    assert session.request().temperature == 0.5 and session.request().decoder == "beam"
    for bad, why in [(":mode paragraph", "unknown mode"), (":decoder nope", "unknown decoder"),
                     (":temp -1", "0 or more"), (":temp hot", "number"), (":frobnicate", "unknown command"),
                     (":model /no/such.safetensors", "no such checkpoint"), (":save", "usage")]:
        with pytest.raises(CompleterError, match=why):
            commands.run(session, bad)
    assert session.settings.mode == "char"           # a failed command changes nothing
    assert "rnn" in commands.run(session, f":model {bigram_checkpoint}")
    assert commands.run(session, ":d greedy") == "decoder greedy"  # unambiguous prefixes work
    with pytest.raises(CompleterError, match="ambiguous command :m .:mode, :model"):
        commands.run(session, ":m line")
    text = commands.run(session, ":help")
    assert all(f":{name}" in text for name in commands.COMMANDS) and "Ctrl-Space" in text
    with pytest.raises(commands.Quit):
        commands.run(session, ":quit")


def test_read_loop_runs_commands_saves_the_session_and_keeps_history(session, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    saved = tmp_path / "session.py"
    keys = ["import os\r", "def f(x):\r", "return x\r", "\r", ":mode token\r", ":bogus\r",
            f":save {saved}\r", ":quit\r"]
    out = io.StringIO()
    with create_pipe_input() as inp:
        for k in keys:
            inp.send_text(k)
        output = Vt100_Output(out, lambda: Size(rows=24, columns=100))
        with create_app_session(input=inp, output=output):
            assert app.run(session, app.build_prompt(session, history=app.open_history())) == 0
    assert saved.read_text() == "import os\ndef f(x):\n    return x\n"
    assert session.settings.mode == "token"
    screen = plain(out.getvalue())
    assert "mode token" in screen and "error: unknown command :bogus" in screen
    assert "Ctrl-Space" in screen and "rnn" in screen          # the banner names the keys and model
    history = (tmp_path / "data" / "completer" / "history").read_text()
    assert "+import os" in history and "+:quit" in history


def test_ctrl_d_quits(session):
    with create_pipe_input() as inp:
        inp.send_text("\x04")
        with create_app_session(input=inp, output=DummyOutput()):
            assert app.run(session, app.build_prompt(session)) == 0


def test_toolbar_shows_model_mode_decoder_and_latency(session):
    session.settings.decoder, session.settings.temperature = "top-k", 0.7
    session.complete("import ", 7)
    text = "".join(t for _, t in app.toolbar(session, app.EngineSuggest(session))())
    assert "rnn" in text and "line" in text and "top-k T=0.7" in text
    assert re.search(r"latency \d+ ms", text)


@pytest.mark.parametrize("text, submit", [
    ("import os", True), ("", True), (":mode char", True), ("def f(x):", False), ("x = (1,", False),
    ("def f(x):\n    return x", False), ("def f(x):\n    return x\n", True), ("\x00\x01 garbage", True),
    ("x = (1,\n 2)", True),
])
def test_when_enter_submits(text, submit):
    assert should_submit(text) == submit


def test_indentation_and_words():
    assert next_indent("def f(x):  # comment") == "    "
    assert next_indent("    x = 1") == "    "
    assert next_indent("        return x") == "    "
    assert next_word("os.path") == "os" and next_word(".path") == "." and next_word("  (self)") == "  ("


def test_stdin_not_a_terminal_prints_the_completion(completer_exe, bigram_checkpoint):
    r = subprocess.run(completer_exe + ["repl", "--model", str(bigram_checkpoint)], input="import ",
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "os\n")
    r = subprocess.run(completer_exe + ["--model", str(bigram_checkpoint), "--mode", "char"],
                       input="def get(self, url", capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, ")\n")


@pytest.mark.parametrize("make_bad", [lambda p: None, lambda p: p.write_bytes(b"\x00" * 7),
                                      lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")])
def test_bad_model_is_one_line_and_exit_2(completer_exe, tmp_path, make_bad):
    path = tmp_path / "m.safetensors"
    make_bad(path)
    r = subprocess.run(completer_exe + ["repl", "--model", str(path)], input="x", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and str(path) in r.stderr


def test_only_the_ghost_text_runs_under_the_typing_budget(session):
    from completer.engine import TYPING_BUDGET_MS

    seen = []
    complete = session.engine.complete
    session.engine.complete = lambda uri, offset, req, cancel=None: seen.append(req) or complete(uri, offset, req, cancel)
    session.complete("import o", 8, typing=True)       # what EngineSuggest asks as you type
    session.complete("import o", 8)                    # the piped REPL, a menu: the user waits
    session.complete("import o", 8, menu=True)
    assert [r.budget_ms for r in seen] == [TYPING_BUDGET_MS, 0, 0]
