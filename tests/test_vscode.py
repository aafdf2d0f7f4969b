"""The VS Code extension (plugins/vscode) in code-server 4.100.3 (VS Code 1.100.3), driven by
Debian's chromium through playwright: the VSIX built by the documented command and installed
offline; ghost text from completer after typing, Tab accepts it, the saved file holds it; Ctrl+Space
shows completer's items in the model's order; stopping code-server leaves no `completer serve`;
each bad state (command not found, a model that does not load, a server that exits) says so.

code-server is built once by .ci/code-server into ~/.cache/completer-ci (or $COMPLETER_CODE_SERVER).
The model is the hand-built bigram of tests/test_emacs_tmux.py: "import " -> "os"; after "za" the
beam's best token is "zabde" (90%), then "zac" (4.7%).
"""
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from browser_harness import (GHOST_DELAY, GHOST_TIMER, browser, free_port, kill_group, need,
                             server_processes, stop, wait_gone, wait_port)
from completer.engine import Engine, Request
from test_emacs_tmux import MENU_RULES
from test_repl import make_bigram_checkpoint

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugins" / "vscode"
CODE_SERVER = Path(os.environ.get("COMPLETER_CODE_SERVER")
                   or Path.home() / ".cache" / "completer-ci" / "code-server-4.100.3")


@pytest.fixture(scope="module")
def vsix() -> Path:
    """plugins/vscode/completer.vsix, packaged by the README's command when older than its sources."""
    out = PLUGIN / "completer.vsix"
    sources = [PLUGIN / n for n in ("extension.js", "package.json", "package-lock.json", "README.md")]
    if not out.exists() or out.stat().st_mtime < max(s.stat().st_mtime for s in sources):
        npm = need("/usr/bin/npm", "apt-get install npm")
        if not (PLUGIN / "node_modules").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PLUGIN, check=True, capture_output=True)
        subprocess.run([npm, "run", "package"], cwd=PLUGIN, check=True, capture_output=True)
    return out


@contextlib.contextmanager
def code_server(tmp_path, vsix, settings: dict):
    """code-server on a workspace holding x.py, the extension installed from the VSIX, and a
    chromium page with x.py open and focused; yields (page, proc, workspace)."""
    exe = need(str(CODE_SERVER / "node_modules" / ".bin" / "code-server"), "run .ci/code-server (.ci/run does)")
    ws, data, ext = tmp_path / "ws", tmp_path / "data", tmp_path / "ext"
    (data / "User").mkdir(parents=True)
    ws.mkdir()
    (ws / "x.py").write_text("")
    (data / "User" / "settings.json").write_text(json.dumps(dict({
        "workbench.startupEditor": "none", "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
        "security.workspace.trust.enabled": False, "extensions.autoCheckUpdates": False,
        "telemetry.telemetryLevel": "off", "workbench.tips.enabled": False}, **settings)))
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    common = ["--user-data-dir", str(data), "--extensions-dir", str(ext)]
    subprocess.run([exe, *common, "--install-extension", str(vsix)], env=env, check=True, capture_output=True)
    port, log = free_port(), tmp_path / "code-server.log"
    proc = subprocess.Popen([exe, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", *common,
                             "--disable-workspace-trust", "--disable-telemetry", "--disable-update-check", str(ws)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    from playwright.sync_api import sync_playwright

    try:
        wait_port(port, proc, log)
        with sync_playwright() as pw:
            b = browser(pw)
            try:
                page = b.new_page(viewport={"width": 1200, "height": 800})
                page.goto(f"http://127.0.0.1:{port}/?folder={ws}")
                page.get_by_role("treeitem", name="x.py").click(timeout=60_000)  # Ctrl+P was unreliable
                page.locator(".monaco-editor .view-lines").first.click()
                try:
                    yield page, proc, ws
                except BaseException:
                    page.screenshot(path=str(tmp_path / "failure.png"))  # what the screen showed
                    raise
            finally:
                b.close()
    finally:
        stop(proc)
        kill_group(proc)


def status(page) -> str:
    return " ".join(page.locator(".statusbar-item").all_inner_texts())


def test_ghost_text_menu_and_exit(tmp_path, vsix, completer_exe):
    model = make_bigram_checkpoint(tmp_path / "menu.safetensors", MENU_RULES)
    log = tmp_path / "serve.log"  # also what marks this test's server processes
    settings = {"completer.command": [*completer_exe, "serve", "--log-file", str(log)], "completer.model": str(model),
                "completer.memory": False}
    with code_server(tmp_path, vsix, settings) as (page, proc, ws):
        page.locator(".statusbar-item:has(.codicon-sparkle)", has_text="menu.safetensors").wait_for(timeout=60_000)
        page.evaluate(GHOST_TIMER, ".ghost-text-decoration, .ghost-text")
        page.keyboard.type("import ", delay=30)
        ghost = page.locator(".ghost-text-decoration, .ghost-text").first
        ghost.wait_for(timeout=10_000)
        delay = page.evaluate(GHOST_DELAY)
        print(f"\nVS Code: ghost text {delay:.0f} ms after the last keystroke")
        page.screenshot(path=str(tmp_path / "ghost.png"))
        assert ghost.inner_text().strip() == "os"
        assert "ms" in status(page)                      # the last latency beside the model's name
        page.keyboard.press("Tab")                        # accepts the ghost text
        page.keyboard.press("Control+s")
        end = time.monotonic() + 10
        while (ws / "x.py").read_text() != "import os" and time.monotonic() < end:
            time.sleep(0.05)
        assert (ws / "x.py").read_text() == "import os"

        page.keyboard.press("End")
        page.keyboard.press("Enter")
        page.keyboard.type("za", delay=30)
        page.keyboard.press("Control+Space")             # the menu
        rows = page.locator(".suggest-widget .monaco-list-row")
        rows.first.wait_for(timeout=10_000)
        time.sleep(0.3)
        page.screenshot(path=str(tmp_path / "menu.png"))
        shown = [r.split("\n")[0].strip() for r in rows.all_inner_texts()]
        want = []
        for c in Engine.from_checkpoint(model).complete_text(
                "import os\nza", Request(mode="token", decoder="beam", n=5, beam=5)):
            if c.text and "za" + c.text not in want:
                want.append("za" + c.text)
        assert want[0] == "zabde" and "zac" in want
        assert len(shown) >= 3 and shown == want[:len(shown)], shown
        page.keyboard.press("Escape")
        assert server_processes(str(log))                # the server runs...
    assert proc.returncode is not None
    assert not wait_gone(str(log))                       # ...and is gone with code-server
