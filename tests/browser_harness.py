"""Helpers for the browser-editor tests (code-server, JupyterLab): Debian's chromium driven by
playwright-python, free ports, finding server processes, and measuring when ghost text appears.

playwright's own browser download is unreachable offline, so the tests launch Debian's chromium
(`apt-get install chromium`, which .ci/run does) by path. A missing program fails the test with
the command that installs it: these tests are the only check that the plugins work.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/lib/chromium/chromium"

# Records, in the page, the time of every key press and the time ghost text (matched by SELECTOR)
# first shows non-blank text after it, so a test reads the delay after the last keystroke.
GHOST_TIMER = """selector => {
  window.__keys = []; window.__ghost = null;
  document.addEventListener('keydown', () => { window.__keys.push(performance.now()); window.__ghost = null; }, true);
  const seen = () => [...document.querySelectorAll(selector)].some(e => e.textContent.trim());
  new MutationObserver(() => {
    if (window.__ghost === null && window.__keys.length && seen()) window.__ghost = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""
GHOST_DELAY = "() => window.__ghost === null ? null : window.__ghost - window.__keys[window.__keys.length - 1]"


def need(path: str, install: str) -> str:
    if not Path(path).exists():
        pytest.fail(f"{path} is missing: {install}", pytrace=False)
    return path


def browser(pw):
    need(CHROMIUM, "apt-get install chromium (.ci/run does)")
    return pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc, log: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout}s: {log.read_text()[-2000:]}")


def server_processes(marker: str) -> list:
    """pids of `completer serve` processes whose command line contains `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and " serve" in cmdline:
            found.append(int(pid))
    return found


def stop(proc, timeout: float = 20.0) -> int:
    """SIGTERM the program (as a service manager or Ctrl+C would stop it) and wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def kill_group(proc) -> None:
    """Whatever the test left running in the program's process group (the test's last resort)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_gone(marker: str, timeout: float = 10.0) -> list:
    end = time.monotonic() + timeout
    while server_processes(marker) and time.monotonic() < end:
        time.sleep(0.1)
    return server_processes(marker)


@contextlib.contextmanager
def served_page(cmd: list, env: dict, port: int, url: str, tmp_path: Path):
    """Start the program `cmd` (listening on `port`), open `url` in chromium and yield the page;
    a failure inside saves what the screen showed as failure.png; the program and its process
    group are ended afterwards, whatever happened."""
    log = tmp_path / "program.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    from playwright.sync_api import sync_playwright

    try:
        wait_port(port, proc, log)
        with sync_playwright() as pw:
            b = browser(pw)
            try:
                page = b.new_page(viewport={"width": 1200, "height": 800})
                page.goto(url)
                try:
                    yield page, proc
                except BaseException:
                    page.screenshot(path=str(tmp_path / "failure.png"))
                    raise
            finally:
                b.close()
    finally:
        stop(proc)
        kill_group(proc)
