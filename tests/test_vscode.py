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
import signal
import subprocess
import time
from pathlib import Path

import pytest

from browser_harness import (GHOST_DELAY, GHOST_TIMER, free_port, need, served_page,
                             server_processes, wait_gone)
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
    port = free_port()
    cmd = [exe, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", *common,
           "--disable-workspace-trust", "--disable-telemetry", "--disable-update-check", str(ws)]
    with served_page(cmd, env, port, f"http://127.0.0.1:{port}/?folder={ws}", tmp_path) as (page, proc):
        page.get_by_role("treeitem", name="x.py").click(timeout=60_000)  # Ctrl+P was unreliable
        page.locator(".monaco-editor .view-lines").first.click()
        yield page, proc, ws


def status(page) -> str:
    return " ".join(page.locator(".statusbar-item").all_inner_texts())


def ghost_is(page, text: str, timeout: float = 10.0) -> None:
    """Waits until the ghost text on screen reads `text` (whitespace aside)."""
    ghost = page.locator(".ghost-text-decoration, .ghost-text")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        shown = "".join(ghost.all_text_contents()).replace("\xa0", " ").strip()  # Monaco draws spaces as nbsp
        if shown == text:
            return
        time.sleep(0.05)
    raise AssertionError(f"ghost text {shown!r}, expected {text!r}")


def saved(ws: Path, want: str, timeout: float = 10.0) -> str:
    end = time.monotonic() + timeout
    while (ws / "x.py").read_text() != want and time.monotonic() < end:
        time.sleep(0.05)
    return (ws / "x.py").read_text()


# The suggest widget's rows in their list order: the list is virtual (rows are positioned by
# style, and their DOM order need not be the order on screen), so each row's data-index says where
# it is; the label is the item's name without its details (the probability).
MENU_ROWS = """() => [...document.querySelectorAll('.suggest-widget .monaco-list-row')]
  .map(r => [Number(r.dataset.index), (r.querySelector('.label-name') || r).textContent.trim()])
  .sort((a, b) => a[0] - b[0])"""


def menu_rows(page) -> list:
    rows = page.evaluate(MENU_ROWS)
    assert [i for i, _ in rows] == list(range(len(rows))), rows   # the first rows, none missing
    return [label for _, label in rows]


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
        page.screenshot(path=str(tmp_path / "ghost.png"))
        assert ghost.inner_text().strip() == "os"
        item = page.locator(".statusbar-item:has(.codicon-sparkle)", has_text=" ms").first
        item.wait_for(timeout=10_000)                    # the last latency beside the model's name
        print(f"\nVS Code: ghost text {delay:.0f} ms after the last keystroke "
              f"(the extension's round trip, in the status item: {item.inner_text().strip()})")
        page.keyboard.press("Tab")                        # accepts the ghost text
        page.keyboard.press("Control+s")
        assert saved(ws, "import os") == "import os"

        # accept-word: VS Code's own Ctrl+Right takes the ghost text's next word only
        page.keyboard.press("End")
        page.keyboard.press("Enter")
        page.keyboard.type("za", delay=30)
        ghost_is(page, "bde os")
        page.keyboard.press("Control+ArrowRight")             # editor.action.inlineSuggest.acceptNextWord
        ghost_is(page, "os")                             # the rest is still offered
        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")
        assert saved(ws, "import os\nzabde") == "import os\nzabde"

        page.keyboard.press("End")
        page.keyboard.press("Enter")
        page.keyboard.type("za", delay=30)
        page.keyboard.press("Control+Space")             # the menu
        page.locator(".suggest-widget .monaco-list-row").first.wait_for(timeout=10_000)
        time.sleep(0.3)
        page.screenshot(path=str(tmp_path / "menu.png"))
        want = []
        for c in Engine.from_checkpoint(model).complete_text(
                "import os\nzabde\nza", Request(mode="token", decoder="beam", n=5, beam=5)):
            if c.text and "za" + c.text not in want:
                want.append("za" + c.text)
        assert want[0] == "zabde" and "zac" in want
        shown = menu_rows(page)
        assert len(shown) >= 3 and shown == want[:len(shown)], shown
        assert page.locator(".suggest-widget .monaco-list-row.focused").get_attribute("data-index") == "0"
        page.keyboard.press("Enter")                     # inserts the focused item: the likeliest
        page.keyboard.press("Control+s")
        assert saved(ws, "import os\nzabde\nzabde") == "import os\nzabde\nzabde"
        assert server_processes(str(log))                # the server runs...
    assert proc.returncode is not None
    assert not wait_gone(str(log))                       # ...and is gone with code-server


def workspace_settings(ws: Path, settings: dict) -> None:
    """Writes the workspace's .vscode/settings.json, as a user editing it would. (code-server saw
    this file change, but not an outside change to the user's settings.json.)"""
    (ws / ".vscode").mkdir(exist_ok=True)
    (ws / ".vscode" / "settings.json").write_text(json.dumps(settings))


def message(page, text: str, timeout: float = 60.0) -> str:
    """The text of the notification that starts with `text`, once it shows."""
    toast = page.locator(".notification-list-item-message", has_text=text).first
    toast.wait_for(timeout=timeout * 1000)
    return toast.inner_text().strip()


def messages(page) -> list:
    return [t.strip() for t in page.locator(".notification-list-item-message").all_inner_texts()]


# languageclient's own pop-ups, which would repeat the extension's one message in other words
CLIENT_NOISE = ("couldn't create connection", "Server initialization failed", "Connection to server got closed")


def test_bad_states_say_so(tmp_path, vsix, completer_exe):
    """One code-server session through each bad state, each a message in the window: the command
    not found, a model that does not load, the server killed; then "completer: Restart the server"
    brings ghost text back."""
    model = make_bigram_checkpoint(tmp_path / "menu.safetensors", MENU_RULES)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"this is not a checkpoint\n" * 4)
    missing = tmp_path / "nowhere" / "completer"
    settings = {"completer.command": [str(missing), "serve"], "completer.model": str(model), "completer.memory": False}
    with code_server(tmp_path, vsix, settings) as (page, proc, ws):
        said = message(page, "completer: command not found:")
        assert str(missing) in said, said
        page.locator(".statusbar-item:has(.codicon-error)", has_text="completer").wait_for(timeout=10_000)
        assert not [m for m in messages(page) if any(n in m for n in CLIENT_NOISE)], messages(page)

        bad_log = tmp_path / "bad.log"   # marks the server started with the corrupt model
        workspace_settings(ws, {"completer.command": [*completer_exe, "serve", "--log-file", str(bad_log)],
                                 "completer.model": str(corrupt)})
        said = message(page, "completer: the server did not start:")
        assert "not a safetensors checkpoint" in said and str(corrupt) in said, said
        time.sleep(1)                                   # the client kills the server after a failed start
        assert not [m for m in messages(page) if "the server exited" in m or any(n in m for n in CLIENT_NOISE)], messages(page)
        assert not wait_gone(str(bad_log))              # the failed server is not left running

        log = tmp_path / "serve.log"
        workspace_settings(ws, {"completer.command": [*completer_exe, "serve", "--log-file", str(log)],
                                 "completer.model": str(model)})
        page.locator(".statusbar-item:has(.codicon-sparkle)", has_text="menu.safetensors").wait_for(timeout=60_000)
        page.locator(".monaco-editor .view-lines").first.click()
        page.keyboard.type("import ", delay=30)
        ghost_is(page, "os")
        servers = server_processes(str(log))
        assert len(servers) == 1, servers
        os.kill(servers[0], signal.SIGKILL)              # the server dies under the editor
        said = message(page, "completer: the server exited")
        assert "Restart the server" in said, said
        page.locator(".statusbar-item:has(.codicon-error)", has_text="completer").wait_for(timeout=10_000)
        assert not server_processes(str(log))            # no restart loop behind the message
        assert not [m for m in messages(page) if any(n in m for n in CLIENT_NOISE)], messages(page)

        page.keyboard.press("Escape")
        page.keyboard.press("F1")                        # the command palette
        page.keyboard.type("completer: Restart the server", delay=10)
        page.locator(".quick-input-list .monaco-list-row", has_text="Restart the server").first.wait_for(timeout=10_000)
        page.keyboard.press("Enter")
        page.locator(".statusbar-item:has(.codicon-sparkle)", has_text="menu.safetensors").wait_for(timeout=60_000)
        page.locator(".monaco-editor .view-lines").first.click()
        page.keyboard.press("Control+End")
        page.keyboard.press("Enter")
        page.keyboard.type("import ", delay=30)
        ghost_is(page, "os")                             # ghost text is back
        assert len(server_processes(str(log))) == 1
        page.screenshot(path=str(tmp_path / "restarted.png"))
    assert not wait_gone(str(log))
