"""Keystroke latency of `completer serve` over real pipes, for `completer bench`.

`measure(model_path)` starts `completer serve` as a subprocess, opens a 2,000-line Python
document, then types characters one at a time in its middle. For each keystroke it times the
interval from writing the `didChange` (one inserted character, incremental sync) to reading the
`inlineCompletion` answer at the new cursor, as an editor would see it. Returns p50/p99 in ms.

The server logs (debug) each answer its typing budget cut short; `cut` is their share.
`busy(n)` runs n CPU-bound processes beside it (`completer bench --load N`), as a build or a
browser would on a developer's machine; the figure under load is how the BLAS thread policy
(completer/blas.py) was chosen.

`PipeClient` is a minimal synchronous LSP client over a subprocess's pipes (also used by tests).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from completer.server.framing import LspReader, LspWriter


class PipeClient:
    def __init__(self, command: list, stderr=subprocess.DEVNULL):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        self.reader, self.writer = LspReader(self.proc.stdout), LspWriter(self.proc.stdin)
        self.next_id = 0

    def send(self, msg: dict) -> None:
        self.writer.send(json.dumps(msg).encode())

    def notify(self, method: str, params: dict) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict | None = None) -> dict:
        """Send a request and return its whole response message (notifications are skipped)."""
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}})
        return self.wait(self.next_id)

    def wait(self, id_) -> dict:
        while True:
            body = self.reader.read()
            if not isinstance(body, bytes):
                raise RuntimeError(f"server sent no answer to request {id_} ({body!r})")
            msg = json.loads(body)
            if msg.get("id") == id_ and "method" not in msg:
                return msg

    def close(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            try:
                self.request("shutdown")
                self.notify("exit", {})
            except (OSError, RuntimeError):
                pass
        self.proc.stdin.close()
        rc = self.proc.wait(timeout)
        self.proc.stdout.close()
        return rc


@contextlib.contextmanager
def busy(n: int):
    """n processes that spin on a core each until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.3 if n else 0)  # let them reach the scheduler before the measurement starts
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def document(lines: int = 2000) -> str:
    """A real Python document of `lines` lines: completer's own sources, repeated."""
    source = "".join(p.read_text(encoding="utf-8") for p in sorted(Path(__file__).parents[1].rglob("*.py")))
    src_lines = source.splitlines(keepends=True)
    return "".join(src_lines[i % len(src_lines)] for i in range(lines))


def measure(model_path=None, keystrokes: int = 300, warmup: int = 20, lines: int = 2000,
            command: list | None = None, load: int = 0, settings: dict | None = None) -> dict:
    """p50/p99 (ms) of didChange(one character) -> inlineCompletion response on a `lines`-line file,
    with `load` CPU-bound processes running beside the server; `loadavg` is the 1-minute load
    average at the end (what else ran on the machine)."""
    with busy(load):
        result = _measure(model_path, keystrokes, warmup, lines, command, settings)
    return dict(result, load=load, loadavg=os.getloadavg()[0])


def _measure(model_path, keystrokes, warmup, lines, command, settings=None) -> dict:
    import tempfile

    log = tempfile.NamedTemporaryFile(prefix="completer-bench-", suffix=".log", delete=False)
    log.close()
    command = [*(command or [sys.executable, "-m", "completer", "serve"]), "--log-level", "debug",
               "--log-file", log.name]
    if model_path is not None:
        command = [*command, "--model", str(model_path)]
    try:
        result = _replay(command, keystrokes, warmup, lines, settings or {})
        with open(log.name, encoding="utf-8", errors="replace") as f:
            cuts = sum("cut by the budget" in line for line in f)
    finally:
        os.unlink(log.name)
    # the share of answers the typing budget cut short (warm-up included: the log has no ids)
    return dict(result, cut=round(cuts / (keystrokes + warmup), 3))


def _replay(command, keystrokes, warmup, lines, settings) -> dict:
    text = document(lines)
    all_lines = text.splitlines(keepends=True)
    typed = "".join(all_lines[lines // 4: lines // 4 + 60])  # text to type, from elsewhere in the file
    client = PipeClient(command)
    try:
        init = client.request("initialize", {"capabilities": {}, "processId": None,
                                             "initializationOptions": settings})
        if "error" in init:
            raise RuntimeError(f"initialize failed: {init['error']['message']}")
        client.notify("initialized", {})
        uri = "file:///bench/document.py"
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 0,
                                                                "text": text}})
        line, char, times = lines // 2, 0, []
        for k in range(warmup + keystrokes):
            ch = typed[k % len(typed)]
            here = {"line": line, "character": char}
            start = time.perf_counter()
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": k + 1},
                                                     "contentChanges": [{"range": {"start": here, "end": here},
                                                                         "text": ch}]})
            line, char = (line + 1, 0) if ch == "\n" else (line, char + len(ch.encode("utf-16-le")) // 2)
            answer = client.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": line, "character": char},
                "context": {"triggerKind": 2}})
            elapsed = time.perf_counter() - start
            if "error" in answer:
                raise RuntimeError(f"inlineCompletion failed: {answer['error']['message']}")
            if k >= warmup:
                times.append(elapsed * 1000)
    finally:
        client.close()
    ms = np.array(times)
    return {"keystrokes": len(times), "lines": lines, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}
