"""The IPython extension in real IPython, driven in tmux: ghost text, IPython's own keys, the history
fallback, the context of earlier cells, %completer, and a slow model that never blocks typing.

IPython loads the extension from the documented config line (`c.InteractiveShellApp.extensions`);
the model is the hand-built bigram of test_repl ("import " -> "os"; after a digit, nothing).
"""
import shutil
import sys
import time
from pathlib import Path

import pytest

from test_repl import make_bigram_checkpoint
from test_repl_tmux import Tmux

pytest.importorskip("IPython", reason="IPython is a test dependency: pip install -e '.[test]'")
IPYTHON = Path(sys.executable).with_name("ipython")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")]

# Run in IPython at start-up: a switch that makes the next model completion take 3 s (until
# cancelled), recording its cancel token, to show that typing goes on meanwhile.
SLOW = """
import time, completer.ipython as _ci
_tokens = []
def slow():
    session = _ci._extension.session
    real = session.engine.complete
    def complete(uri, offset, req, cancel=None):
        session.engine.complete = real
        _tokens.append(cancel)
        end = time.monotonic() + 3
        while not cancel.cancelled and time.monotonic() < end:
            time.sleep(0.01)
        return real(uri, offset, req, cancel=cancel)
    session.engine.complete = complete
"""


def test_ipython_ghost_text_keys_fallback_context_and_magic(tmp_path):
    model = make_bigram_checkpoint(tmp_path / "bigram.safetensors")
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (tmp_path / "slow.py").write_text(SLOW)
    (profile / "ipython_config.py").write_text(
        'c.InteractiveShellApp.extensions = ["completer.ipython"]\n'            # the README's line
        f'c.InteractiveShellApp.exec_lines = ["%completer model {model}", "%run -i {tmp_path / "slow.py"}"]\n')
    work = tmp_path / "work"       # the folder IPython starts in, which its project memory reads: empty
    work.mkdir()
    t = Tmux(f"{IPYTHON} --no-banner", {"IPYTHONDIR": tmp_path / "ipython", "HOME": tmp_path}, cwd=work)
    try:
        t.wait_for("In [1]:")
        t.send("x = 12345", literal=True)
        t.send("Enter")
        t.wait_for("In [2]:")

        t.send("import ", literal=True)
        t.wait_for("In [2]: import os")                       # the model's ghost text...
        t.send("M-f")                                         # ...Alt-F accepts a word of it
        t.send("; print(os.name)", literal=True)
        t.send("Enter")
        t.wait_for("posix\n")                                 # "os" was really inserted
        t.wait_for("In [3]:")

        t.send("x = 1", literal=True)                         # the model offers nothing after "1":
        t.wait_for("In [3]: x = 12345")                       # IPython's history suggestion shows
        t.send("End")                                         # End accepts it (IPython's key)
        t.send("; print(x * 2)", literal=True)
        t.send("Enter")
        t.wait_for("24690\n")
        t.wait_for("In [4]:")

        t.send("%completer mode char", literal=True)
        t.send("Enter")
        t.wait_for("In [5]:")
        t.send("import ", literal=True)
        t.wait_for("In [5]: import o\n")                     # one character now (not history's "os")
        t.send("Right")                                      # Right accepts
        t.send("s", literal=True)
        t.send("Enter")
        t.wait_for("In [6]:")

        t.send("slow()", literal=True)                       # the next completion takes 3 s...
        t.send("Enter")
        t.wait_for("In [7]:")
        start = time.monotonic()
        t.send("impo", literal=True)
        t.send("rt sys", literal=True)                       # ...yet typing is drawn at once
        t.wait_for("In [7]: import sys", timeout=2)
        assert time.monotonic() - start < 2
        t.send("; print(_tokens[0].cancelled)", literal=True)
        t.send("Enter")
        t.wait_for("True\n")                                 # a keystroke cancelled it
        t.wait_for("In [8]:")

        t.send(f"%completer save {tmp_path / 'context.py'}", literal=True)
        t.send("Enter")
        t.wait_for("In [9]:")
        context = (tmp_path / "context.py").read_text()
        assert context.startswith("x = 12345\nimport os; print(os.name)\nx = 12345; print(x * 2)\nimport os\n")
        assert "%completer" not in context                   # magics are not context

        t.send("%completer off", literal=True)
        t.send("Enter")
        t.wait_for("In [10]:")
        t.send("import ", literal=True)                      # off: history only (its latest match)
        t.wait_for("In [10]: import sys; print(_tokens[0].cancelled)")
        t.send("C-u")
        t.send("%completer mode nonsense", literal=True)
        t.send("Enter")
        t.wait_for("%completer: unknown mode 'nonsense'")    # one line, no traceback
        t.send("exit", literal=True)
        t.send("Enter")
        end = time.monotonic() + 10
        while t.alive() and time.monotonic() < end:
            time.sleep(0.05)
        assert not t.alive()
    finally:
        screen = t.screen() if t.alive() else ""
        t.kill()
    assert "Traceback" not in screen
