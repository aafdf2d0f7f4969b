"""The ptpython helper (completer.ptpython.configure, from ptpython's config file) in real ptpython,
driven in tmux: the model's ghost text, Right and Alt-F accept, the history fallback, context.

The model is the hand-built bigram of test_repl ("import " -> "os"; after a digit, nothing).
"""
import shutil
import sys
import time
from pathlib import Path

import pytest

from test_repl import make_bigram_checkpoint
from test_repl_tmux import Tmux

pytest.importorskip("ptpython", reason="ptpython is a test dependency: pip install -e '.[test]'")
PTPYTHON = Path(sys.executable).with_name("ptpython")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")]

CONFIG = '''
def configure(repl):
    from completer.ptpython import configure as completer   # the README's snippet
    import builtins
    builtins.completer_session = completer(repl, model={model!r})  # the test reads the context
'''


def wait_line(t, line, timeout=15):
    """Until the last line drawn above the toolbar (the one being typed) is `line`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = [l for l in t.screen().splitlines() if l.strip() and "[F4]" not in l]
        if lines and lines[-1] == line:
            return
        time.sleep(0.05)
    raise AssertionError(f"the input line never read {line!r}; the screen:\n{t.screen()}")


def wait_prompt(t):
    """Until a fresh, empty prompt is the input line (so typing goes into it)."""
    wait_line(t, ">>>")


def test_ptpython_ghost_text_keys_fallback_and_context(tmp_path):
    model = make_bigram_checkpoint(tmp_path / "bigram.safetensors")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.py").write_text(CONFIG.format(model=str(model)))
    t = Tmux(str(PTPYTHON), {"PTPYTHON_CONFIG_HOME": tmp_path / "config", "XDG_DATA_HOME": tmp_path / "data",
                             "HOME": tmp_path}, cwd=tmp_path / "config")
    try:
        wait_prompt(t)
        t.send("x = 12345", literal=True)
        t.send("Enter")
        wait_prompt(t)
        t.send("import ", literal=True)
        wait_line(t, ">>> import os")                         # the model's ghost text
        t.send("Right")                                      # Right accepts it
        t.send("; print(os.name)", literal=True)
        t.send("Enter")
        t.wait_for("posix\n")
        wait_prompt(t)

        t.send("x = 1", literal=True)                        # nothing from the model after "1":
        wait_line(t, ">>> x = 12345")                         # the history suggestion shows
        t.send("C-e")
        t.send("; print(x * 2)", literal=True)
        t.send("Enter")
        t.wait_for("24690\n")
        wait_prompt(t)

        t.send("import ", literal=True)
        wait_line(t, ">>> import os")
        t.send("M-f")                                        # Alt-F accepts a word
        t.send(".path", literal=True)
        wait_line(t, ">>> import os.path")
        t.send("Enter")
        wait_prompt(t)
        t.send("print(repr(completer_session.context))", literal=True)
        t.send("Enter")
        t.wait_for("'x = 12345\\nimport os; print(os.name)\\nx = 12345; print(x * 2)\\nimport os.path\\n")
        t.send("exit()", literal=True)
        t.send("Enter")
        end = time.monotonic() + 10
        while t.alive() and time.monotonic() < end:
            time.sleep(0.05)
        assert not t.alive()
    finally:
        t.kill()
