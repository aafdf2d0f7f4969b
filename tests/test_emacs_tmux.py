"""The Emacs package (plugins/emacs/completer.el) in real Emacs 28 with eglot 1.9 and company
(Debian's emacs-nox, elpa-eglot, elpa-company, elpa-lsp-mode; .ci/run installs them), in tmux.

eglot: ghost text appears after typing, typing dismisses it, TAB inserts it; company's menu shows
the server's order (the model's), not flex's re-sort; quitting Emacs leaves no server process
and no error. lsp-mode 8 (completer-lsp-mode-setup): the same menu, in the same order. The model is a hand-built bigram: "import " -> "os"; after "za" the beam's best token
is "zabde" (90%), then shorter, less likely ones ("zac", 4.7%) that flex would put first.
"""
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from completer.engine import Engine, Request
from test_repl import RULES, make_bigram_checkpoint
from test_repl_tmux import Tmux

ROOT = Path(__file__).resolve().parent.parent
ELPA = Path("/usr/share/emacs/site-lisp/elpa")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)"),
              pytest.mark.skipif(shutil.which("emacs") is None or not list(ELPA.glob("eglot-*"))
                                 or not list(ELPA.glob("company-*")),
                                 reason="emacs-nox, elpa-eglot and elpa-company are not installed (.ci/run installs them)")]

MENU_RULES = dict(RULES, a=[("b", 12), ("c", 9)], b=[("d", 12)], d=[("e", 12)], e=[(" ", 12)], c=[(" ", 12)])

INIT = """
(setq package-directory-list '("{elpa}"))
(package-initialize)
(add-to-list 'load-path "{plugin}")
(require 'completer)                                   ; the README's lines
(setq completer-command '({command}))
{client}
(require 'company)
(add-hook 'python-mode-hook #'company-mode)
(setq company-idle-delay nil)                         ; the menu on request only
(global-set-key (kbd "C-c c") #'company-complete)
"""


def server_processes(marker: str) -> list:
    """pids whose command line contains `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "serve" in cmdline:
            found.append(pid)
    return found


EGLOT = """
(setq-default eglot-workspace-configuration '(:completer (:threshold 0.01)))   ; hide items under 1%
(completer-eglot-setup)
(add-hook 'python-mode-hook #'eglot-ensure)
"""
LSP_MODE = """
(setq lsp-session-file "{tmp}/lsp-session" lsp-auto-guess-root t lsp-enable-suggest-server-download nil
      lsp-headerline-breadcrumb-enable nil lsp-enable-snippet nil)
(require 'lsp-mode)
(lsp-register-custom-settings '(("completer.threshold" 0.01)))              ; hide items under 1%
(completer-lsp-mode-setup)
(add-hook 'python-mode-hook #'lsp)
"""


def start_emacs(tmp_path, completer_exe, client):
    """Emacs in tmux on x.py with the package and `client`'s setup; returns (tmux, model, log)."""
    model = make_bigram_checkpoint(tmp_path / "menu.safetensors", MENU_RULES)
    log = tmp_path / "serve.log"
    command = [*completer_exe, "serve", "--model", str(model), "--no-memory", "--log-file", str(log)]  # compared with the network
    (tmp_path / "init.el").write_text(INIT.format(elpa=ELPA, plugin=ROOT / "plugins" / "emacs",
                                                  command=" ".join(f'"{a}"' for a in command),
                                                  client=client.format(tmp=tmp_path)))
    (tmp_path / "run.sh").write_text(f"emacs -nw -Q -l {tmp_path / 'init.el'} {tmp_path / 'x.py'}\n"
                                     f"echo rc=$? > {tmp_path / 'rc'}\n")
    return Tmux(f"sh {tmp_path / 'run.sh'}", {"HOME": tmp_path, "TERM": "xterm-256color"}), model, log


def menu_then_quit(t, tmp_path, model, log, before: str):
    """Opens company's menu after `before` + "za", checks its order, inserts the first, saves, quits."""
    t.send("za", literal=True)
    time.sleep(0.3)
    t.send("C-c", "c")                                    # company's menu
    t.wait_for("zabde")
    time.sleep(0.3)
    shown = re.findall(r"^(za\S*)\s+\d+\.\d%", t.screen(), re.M)
    want = []
    for c in Engine.from_checkpoint(model).complete_text(
            before + "za", Request(mode="token", decoder="beam", n=5, beam=5, min_prob=0.01)):
        if c.text and "za" + c.text not in want:
            want.append("za" + c.text)
    assert want[0] == "zabde" and "zac" in want          # flex would put the short "zac" first
    assert len(shown) >= 3 and shown == want[:len(shown)], t.screen()
    assert 'za"' not in shown and len(want) < 5          # the threshold hid the 0.0% item
    t.send("Enter")                                       # inserts the first: the likeliest
    t.send("C-x", "C-s")
    end = time.monotonic() + 10
    while (not (tmp_path / "x.py").exists() or "zabde" not in (tmp_path / "x.py").read_text()) \
            and time.monotonic() < end:
        time.sleep(0.05)
    assert (tmp_path / "x.py").read_text() == before + "zabde\n"   # python-mode ends it with a newline
    assert server_processes(str(model))                  # the server is running...

    t.send("C-x", "C-c")
    end = time.monotonic() + 10
    while not (tmp_path / "rc").exists() and time.monotonic() < end:
        time.sleep(0.05)
    assert (tmp_path / "rc").read_text().strip() == "rc=0"
    end = time.monotonic() + 5
    while server_processes(str(model)) and time.monotonic() < end:
        time.sleep(0.05)
    assert not server_processes(str(model))              # ...and gone after quitting Emacs
    text = log.read_text() if log.exists() else ""
    assert "ERROR" not in text and "Traceback" not in text and "WARNING" not in text, text


def test_emacs_eglot_ghost_text_tab_menu_order_and_clean_exit(tmp_path, completer_exe):
    t, model, log = start_emacs(tmp_path, completer_exe, EGLOT)
    try:
        t.wait_for("Connected!")                              # eglot started `completer serve`
        t.send("import ", literal=True)
        t.wait_for("\nimport os\n")                           # ghost text
        t.send("j", literal=True)
        t.wait_for("\nimport j\n")                            # typing dismissed it
        t.send("BSpace")
        t.wait_for("\nimport os\n")                           # back after the edit
        t.send("Tab")                                         # TAB inserts it
        t.send("#", literal=True)
        t.wait_for("\nimport os#\n")

        t.send("Enter")
        menu_then_quit(t, tmp_path, model, log, "import os#\n")
    finally:
        t.kill()


@pytest.mark.skipif(not list(ELPA.glob("lsp-mode-*")), reason="elpa-lsp-mode is not installed (.ci/run installs it)")
def test_emacs_lsp_mode_menu_order_and_clean_exit(tmp_path, completer_exe):
    t, model, log = start_emacs(tmp_path, completer_exe, LSP_MODE)
    try:
        t.wait_for("initialized successfully")                # lsp-mode started `completer serve`
        t.send("C-x", "1")                                    # lsp-mode may have split the frame
        t.send("import os", literal=True)
        t.send("Enter")
        t.wait_for("\nimport os\n")
        menu_then_quit(t, tmp_path, model, log, "import os\n")
    finally:
        t.kill()
