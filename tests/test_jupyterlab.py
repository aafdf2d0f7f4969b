"""JupyterLab 4 with completer, driven by Debian's chromium through playwright.

Ghost text: the pip-installed plugins/jupyterlab (its inline provider and server bridge), in a
notebook whose first cell is earlier context: typing shows completer's ghost text, Tab accepts it,
the saved notebook holds it, and the bridge sent the earlier cell and the latest text. Menu: the
jupyter-lsp recipe of plugins/README.md (completer serve in LanguageServerManager.language_servers,
jupyterlab-lsp in the page), Tab lists completer's items in the model's order. Stopping
JupyterLab leaves no `completer serve`; a missing command, a model that does not load and a server
that exits each show a message. The model: the bigram of tests/test_emacs_tmux.py.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from browser_harness import (GHOST_DELAY, GHOST_TIMER, free_port, served_page,
                             server_processes, wait_gone)
from completer.engine import Engine, Request
from test_emacs_tmux import MENU_RULES
from test_repl import make_bigram_checkpoint

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
GHOST = ".jp-GhostText"
# Records every line sent to `completer serve --jsonl`, then runs it (argv after the log path).
RECORDER = r'''
import subprocess, sys, threading
log = open(sys.argv[1], "a")
server = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE)
for line in sys.stdin.buffer:
    log.write(line.decode()); log.flush()
    server.stdin.write(line); server.stdin.flush()
server.stdin.close()
sys.exit(server.wait())
'''


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """plugins/jupyterlab installed by pip (building its JupyterLab extension) into a prefix."""
    prefix = tmp_path_factory.mktemp("jl-prefix")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--prefix", str(prefix),
                           str(ROOT / "plugins" / "jupyterlab")], capture_output=True, text=True)
    assert done.returncode == 0, f"pip install plugins/jupyterlab failed: {done.stderr[-3000:]}"
    return prefix


def notebook(path: Path, cells: list) -> None:
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": s, "outputs": [],
                   "execution_count": None} for i, s in enumerate(cells)]}))


@contextlib.contextmanager
def jupyterlab(tmp_path, prefix, config: dict):
    """JupyterLab on a folder holding x.ipynb (cells "import os", ""), the plugin from `prefix`,
    jupyter_server_config.json = `config`; a chromium page in the second cell; yields (page, proc, ws)."""
    ws, conf = tmp_path / "ws", tmp_path / "config"
    for d in (ws, conf):
        d.mkdir()
    notebook(ws / "x.ipynb", ["import os", ""])
    (conf / "jupyter_server_config.json").write_text(json.dumps(config))
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=site, JUPYTER_PATH=str(prefix / "share" / "jupyter"),
               JUPYTER_CONFIG_PATH=os.pathsep.join([str(conf), str(prefix / "etc" / "jupyter")]),
               JUPYTER_CONFIG_DIR=str(conf), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    port = free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           "--allow-root", "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={ws}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with served_page(cmd, env, port, f"http://127.0.0.1:{port}/lab/tree/x.ipynb", tmp_path) as (page, proc):
        editor = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".cm-content")
        editor.wait_for(timeout=60_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'], .jp-Toolbar-kernelStatus").first.wait_for(timeout=60_000)
        editor.click()
        yield page, proc, ws


def cell_source(ws: Path, i: int) -> str:
    try:
        source = json.loads((ws / "x.ipynb").read_text())["cells"][i]["source"]
    except json.JSONDecodeError:  # read while JupyterLab writes it
        return ""
    return "".join(source) if isinstance(source, list) else source


def saved(ws: Path, i: int, want: str, timeout=10.0) -> str:
    end = time.monotonic() + timeout
    while cell_source(ws, i) != want and time.monotonic() < end:
        time.sleep(0.05)
    return cell_source(ws, i)


def test_ghost_text_in_a_notebook(tmp_path, prefix, completer_exe):
    model = make_bigram_checkpoint(tmp_path / "menu.safetensors", MENU_RULES)
    (tmp_path / "recorder.py").write_text(RECORDER)
    sent = tmp_path / "sent.jsonl"
    log = tmp_path / "serve.log"  # also what marks this test's server processes
    command = [sys.executable, str(tmp_path / "recorder.py"), str(sent), *completer_exe, "serve", "--no-memory",
               "--log-file", str(log)]
    with jupyterlab(tmp_path, prefix, {"Completer": {"command": command, "model": str(model)}}) as (page, proc, ws):
        page.evaluate(GHOST_TIMER, GHOST)
        page.keyboard.type("import ", delay=30)
        ghost = page.locator(GHOST).first
        ghost.wait_for(timeout=20_000)
        cold = page.evaluate(GHOST_DELAY)                 # includes starting completer serve
        page.screenshot(path=str(tmp_path / "ghost.png"))
        assert ghost.inner_text().strip() == "os"
        page.keyboard.press("Tab")                        # accepts the ghost text
        page.keyboard.press("Control+s")
        assert saved(ws, 1, "import os") == "import os"
        page.keyboard.press("Enter")
        page.keyboard.type("import ", delay=30)
        page.locator(GHOST).first.wait_for(timeout=20_000)
        print(f"\nJupyterLab: ghost text {page.evaluate(GHOST_DELAY):.0f} ms after the last keystroke "
              f"({cold:.0f} ms the first time, starting the server)")
        page.keyboard.press("Tab")
        page.keyboard.press("Control+s")
        assert saved(ws, 1, "import os\nimport os") == "import os\nimport os"
        asked = [json.loads(line) for line in sent.read_text().splitlines()]
        [init] = [m for m in asked if m.get("method") == "initialize"]
        assert init["params"]["initializationOptions"]["memory"] is None   # the command's --no-memory holds
        docs = [m["params"]["textDocument"].get("text") or m["params"]["contentChanges"][0]["text"]
                for m in asked if m.get("method") in ("textDocument/didOpen", "textDocument/didChange")]
        assert "import os\n\nimport " in docs                # the earlier cell, then the cell
        assert docs[-1] == "import os\n\nimport os\nimport os"   # the latest text, after Tab
        assert len(server_processes(str(log))) == 2        # the server (and the recorder) run...
    assert proc.returncode is not None
    assert not wait_gone(str(log))                        # ...and are gone with JupyterLab


LSP_RECIPE = {"LanguageServerManager": {"language_servers": {"completer": {  # plugins/README.md's recipe
    "version": 2, "argv": None, "languages": ["python"], "mime_types": ["text/x-python", "text/x-ipython"],
    "display_name": "completer", "requires_documents_on_disk": False}}}}


def test_menu_through_jupyter_lsp(tmp_path, prefix, completer_exe):
    model = make_bigram_checkpoint(tmp_path / "menu.safetensors", MENU_RULES)
    log = tmp_path / "serve.log"  # also what marks this test's server processes
    config = json.loads(json.dumps(LSP_RECIPE))
    config["LanguageServerManager"]["language_servers"]["completer"]["argv"] = [
        *completer_exe, "serve", "--model", str(model), "--no-memory", "--log-file", str(log)]
    # the plugin's bad state: its command does not exist; the menu works all the same
    config["Completer"] = {"command": [str(tmp_path / "nowhere" / "completer"), "serve"]}
    with jupyterlab(tmp_path, prefix, config) as (page, proc, ws):
        page.locator(".lsp-statusbar-item", has_text="Fully initialized").or_(
            page.get_by_text("Fully initialized")).first.wait_for(timeout=60_000)
        page.keyboard.type("za", delay=30)
        time.sleep(0.5)
        page.keyboard.press("Tab")                         # JupyterLab's completer: kernel + LSP items
        items = page.locator(".jp-Completer-item .jp-Completer-match")
        items.first.wait_for(timeout=20_000)
        time.sleep(0.5)
        page.screenshot(path=str(tmp_path / "menu.png"))
        shown = [t.strip() for t in items.all_inner_texts()]
        want = []
        for c in Engine.from_checkpoint(model).complete_text(
                "import os\n\nza", Request(mode="token", decoder="beam", n=5, beam=5)):
            if c.text and "za" + c.text not in want:
                want.append("za" + c.text)
        assert want[0] == "zabde" and "zac" in want
        assert len(shown) >= 3 and shown == want[:len(shown)], shown
        page.keyboard.press("Enter")                       # inserts the first: the likeliest
        page.keyboard.press("Control+s")
        assert saved(ws, 1, "zabde") == "zabde"
        assert server_processes(str(log))
        page.get_by_text(f"completer: command not found: {tmp_path / 'nowhere' / 'completer'}").wait_for(timeout=10_000)
    assert not wait_gone(str(log))


def test_bad_states_say_so(tmp_path, prefix, completer_exe):
    """One JupyterLab session through the plugin's bad states, each a notification: a model that
    does not load, then (the file fixed) ghost text, then the server killed; typing starts a new
    server and ghost text is back."""
    model = make_bigram_checkpoint(tmp_path / "menu.safetensors", MENU_RULES)
    good = model.read_bytes()
    model.write_bytes(b"this is not a checkpoint\n" * 4)          # corrupt, until fixed below
    log = tmp_path / "serve.log"  # also what marks this test's server processes
    command = [*completer_exe, "serve", "--log-file", str(log)]
    # no project memory: it would learn from the typed "import \n" lines that a newline follows
    with jupyterlab(tmp_path, prefix, {"Completer": {"command": command, "model": str(model), "memory": False}}) as (page, proc, ws):
        page.keyboard.type("import ", delay=30)
        said = page.get_by_text("completer: the server did not start:")
        said.first.wait_for(timeout=30_000)
        time.sleep(1)                                       # more keystrokes, more failed starts: still one message
        assert len(said.all_inner_texts()) == 1, said.all_inner_texts()
        assert "not a safetensors checkpoint" in said.inner_text() and model.name in said.inner_text(), said.inner_text()
        assert not wait_gone(str(log))                      # the failed server is not left running

        model.write_bytes(good)
        page.keyboard.press("Enter")
        page.keyboard.type("import ", delay=30)
        page.locator(GHOST, has_text="os").first.wait_for(timeout=30_000)
        servers = server_processes(str(log))
        assert len(servers) == 1, servers
        os.kill(servers[0], signal.SIGKILL)                  # the server dies under the notebook
        assert not wait_gone(str(log))
        page.keyboard.press("Enter")
        page.keyboard.type("import ", delay=30)
        said = page.get_by_text("completer: the server exited").first
        said.wait_for(timeout=30_000)
        assert "SIGKILL" in said.inner_text() and "typing starts it again" in said.inner_text(), said.inner_text()
        page.keyboard.press("Enter")                          # ...and typing does
        page.keyboard.type("import ", delay=30)
        page.locator(GHOST, has_text="os").first.wait_for(timeout=30_000)
        assert len(server_processes(str(log))) == 1
        page.screenshot(path=str(tmp_path / "restarted.png"))
    assert not wait_gone(str(log))
