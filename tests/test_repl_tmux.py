"""`completer` in a real terminal: tmux runs it, we type, and read the screen back.

Skipped (with the reason) when tmux is not installed; .ci/run installs it.
"""
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from completer.model import checkpoint
from test_repl import make_bigram_checkpoint

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")]

GREY_256 = "\x1b[38;5;244m"  # app.STYLE's #7f7f7f in the 256 colours tmux offers


class Tmux:
    def __init__(self, command, env, cwd=None):
        """cwd: where the program starts (the REPLs' project memory reads that folder)."""
        self.socket = f"completer-test-{uuid.uuid4().hex[:8]}"
        env = " ".join(f"{k}='{v}'" for k, v in env.items())
        where = ["-c", str(cwd)] if cwd else []
        self.run("new-session", "-d", "-x", "100", "-y", "20", "-s", "repl", *where, f"env {env} {command}")

    def run(self, *args):
        return subprocess.run(["tmux", "-L", self.socket, "-f", os.devnull, *args], check=True,
                              capture_output=True, text=True, timeout=20).stdout

    def send(self, *keys, literal=False):
        self.run("send-keys", "-t", "repl", *(["-l"] if literal else []), *keys)

    def screen(self, colours=False):
        return self.run("capture-pane", "-p", "-t", "repl", *(["-e"] if colours else []))

    def wait_for(self, text, colours=False, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.screen(colours):
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def alive(self):
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "repl"],
                              capture_output=True).returncode == 0

    def kill(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(tmp_path, completer_exe):
    model = make_bigram_checkpoint(tmp_path / "bigram.safetensors")
    t = Tmux(" ".join(completer_exe + ["--model", str(model)]), {"XDG_DATA_HOME": tmp_path / "data"}, cwd=tmp_path)
    try:
        yield t
    finally:
        t.kill()


def test_ghost_text_appears_and_right_accepts_it(terminal, tmp_path):
    t = terminal
    t.wait_for(">>>")  # (capture-pane drops trailing spaces)
    assert "Ctrl-Space" in t.screen() and "Right" in t.screen()   # the banner names the keys
    t.wait_for("model rnn 98x1 (39k params)  mode line  decoder greedy")  # the toolbar

    t.send("import ", literal=True)
    t.wait_for(">>> import os")                                  # "os" is drawn...
    t.wait_for(GREY_256 + "os", colours=True)                    # ...as grey ghost text
    t.send("Right")
    t.send("#", literal=True)                                    # typed after the accepted text
    t.wait_for(">>> import os#")
    t.send("Escape", "Enter")                                    # Esc Enter submits
    t.wait_for("import os#\n>>>")                               # a fresh prompt

    t.send("def get(self, url", literal=True)
    t.wait_for(">>> def get(self, url):")
    t.wait_for(GREY_256 + "):", colours=True)
    t.send("Right")
    t.send("Enter")                                              # a block header: new indented line
    t.send("pass", literal=True)
    t.wait_for("...     pass")                                   # indented by 4 after the ':'
    t.send("Enter")
    t.send("Enter")                                              # the empty line submits the block
    t.wait_for("pass\n...\n>>>")
    t.send(":save " + str(tmp_path / "s.py"), literal=True)
    t.send("Enter")
    t.wait_for("saved")
    assert (tmp_path / "s.py").read_text() == "import os#\ndef get(self, url):\n    pass\n"
    t.send("C-d")
    end = time.monotonic() + 10
    while t.alive() and time.monotonic() < end:
        time.sleep(0.05)
    assert not t.alive()                                         # Ctrl-D quits
    assert "+import os#" in (tmp_path / "data" / "completer" / "history").read_text()


def ghost_after(line_start: str, coloured_screen: str) -> str:
    """The grey text drawn right after `line_start` on the screen ('' if none)."""
    for line in coloured_screen.splitlines():
        plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if plain.startswith(line_start) and GREY_256 in line:
            return re.sub(r"\x1b\[[0-9;]*m", "", line.split(GREY_256, 1)[1]).rstrip()
    return ""


@pytest.mark.skipif(not checkpoint.default_path().is_file(), reason="no shipped model in checkpoints/")
def test_plain_completer_on_the_shipped_model(tmp_path, completer_exe):
    """What a new user does: run `completer`, type, see grey text, press Right."""
    t = Tmux(" ".join(completer_exe), {"XDG_DATA_HOME": tmp_path / "data"})
    try:
        t.wait_for("default.safetensors")
        # the shipped confidence gate hides the cold start's doubtful guesses (docs/gate.md): show
        # every one, this test is about the ghost text itself
        t.send(":gate 0", literal=True)
        t.send("Enter")
        t.wait_for("gate 0")
        for typed in ("import ", "def get(self, url"):
            t.send(typed, literal=True)
            end = time.monotonic() + 15
            while not (ghost := ghost_after(">>> " + typed, t.screen(colours=True))):
                assert time.monotonic() < end, f"no ghost text after {typed!r}:\n{t.screen()}"
                time.sleep(0.05)
            t.send("Right")
            t.send("\x01", literal=True)   # Ctrl-A: the cursor moves only if the text is in the buffer
            t.send("#", literal=True)
            t.wait_for(">>> #" + typed + ghost)
            t.send("C-u")                  # clear the input for the next round
            t.send("C-e")
            t.send("C-u")
            t.wait_for(">>>\n")
    finally:
        t.kill()
