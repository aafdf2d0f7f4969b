"""Completion latency as an editor sees it; `completer bench` reports these figures.

measure(model_path, files) replays each file keystroke by keystroke through one Engine document:
  keystroke_ms  edit (one character typed at the cursor) + reading it (Engine.prepare; what
                the frontends defer to the pause after it, Engine.idle, is timed apart);
                keystroke_cpu_ms is the same in thread CPU time: wall minus the time the OS gave
                the CPU to other processes (on a shared machine that is what fills p99)
  idle_ms       that pause's work: the next block's read step, and the memory reading the line
                a newline finished (a fresh memory's tables fault their pages in meanwhile)
  line_ms       a greedy line completion (up to 80 characters) at the cursor, every
                `line_every` keystrokes
  startup_ms    a fresh `python` process: import, load the model, first line completion
All with the project memory on (as every frontend runs), unless memory=False: it reads the
replayed text as typed (no project), so the figures include its per-character cost.
Percentiles are over every measured event; the machine's noise shows in p99, so quote medians
of several runs.

context_bpc(model_path, files, widths) measures bits per character on `files` as the engine reads
them with context W (see completer.engine), which is how its default was chosen.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from completer.errors import CompleterError

STARTUP = """\
import time; t0 = time.perf_counter()
from completer.engine import Engine, Request
e = Engine.from_checkpoint({path!r}, memory={memory!r})
e.complete_text("import os\\n\\ndef main(", Request(mode="line"))
print((time.perf_counter() - t0) * 1000)
"""


def _pct(xs, q):
    import numpy as np

    return round(float(np.percentile(xs, q)), 3) if xs else None


def startup_ms(model_path=None, runs: int = 3, memory: bool = True) -> dict:
    """Median wall time from process start to the first completion, and the import+load part
    measured inside the process."""
    walls, inside = [], []
    code = STARTUP.format(path=str(model_path) if model_path else None, memory=memory)
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        walls.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            raise CompleterError(f"startup run failed: {r.stderr.strip().splitlines()[-1:]}")
        inside.append(float(r.stdout.strip()))
    walls.sort(), inside.sort()
    return {"startup_ms": round(walls[len(walls) // 2], 1), "startup_in_process_ms": round(inside[len(inside) // 2], 1)}


def measure(model_path=None, files=None, chars_per_file: int = 3000, line_every: int = 10,
            max_chars: int = 80, startup_runs: int = 3, engine=None, memory: bool = True) -> dict:
    """Replay `files` (paths) keystroke by keystroke; the latency figures in milliseconds."""
    from completer.engine import Engine, Request

    if not files:
        raise CompleterError("latency needs Python files to replay")
    texts = []
    for f in files:
        try:
            texts.append(Path(f).read_text(encoding="utf-8", errors="replace")[:chars_per_file])
        except OSError as exc:
            raise CompleterError(f"cannot read {f}: {exc.strerror or exc}") from None
    engine = engine or Engine.from_checkpoint(model_path, memory=memory)
    req = Request(mode="line", decoder="greedy", max_chars=max_chars)
    keys, keys_cpu, idles, lines, line_chars = [], [], [], [], []
    clock, cpu = time.perf_counter, time.thread_time
    for k, text in enumerate(texts):
        uri = f"bench-{k}"
        engine.open(uri, "")
        for p, ch in enumerate(text):
            t0, c0 = clock(), cpu()
            engine.edit(uri, p, p, ch)
            engine.prepare(uri, p + 1)
            keys.append((clock() - t0) * 1000)
            keys_cpu.append((cpu() - c0) * 1000)
            t0 = clock()
            engine.idle()  # what the frontends do while the user pauses between keys
            idles.append((clock() - t0) * 1000)
            if p % line_every == 0:
                t0 = clock()
                out = engine.complete(uri, p + 1, req)
                lines.append((clock() - t0) * 1000)
                line_chars.append(len(out[0].text) if out else 0)
        engine.close(uri)
    result = {"keystroke_ms_p50": _pct(keys, 50), "keystroke_ms_p99": _pct(keys, 99),
              "keystroke_cpu_ms_p50": _pct(keys_cpu, 50), "keystroke_cpu_ms_p99": _pct(keys_cpu, 99),
              "idle_ms_p50": _pct(idles, 50), "idle_ms_p99": _pct(idles, 99),
              "line_ms_p50": _pct(lines, 50), "line_ms_p99": _pct(lines, 99),
              "line_chars_mean": round(sum(line_chars) / max(len(line_chars), 1), 1),
              "keystrokes": len(keys), "line_completions": len(lines),
              "context": engine.context, "model": engine.describe()["path"]}
    if startup_runs:
        result.update(startup_ms(engine.meta.get("path") or model_path, startup_runs, memory=engine.memory is not None))
    return result


def context_bpc(model_path=None, files=(), widths=(64, 128, 256, 512, 1024, 2048), chars_per_file=None) -> dict:
    """Bits per character of `files` read with each context W, and with the whole file ("full").

    With context W (block S = W // 2) the character at p is predicted from a zero state read over
    text[max(0, (p // S - 1) * S):p]: block k's characters share the read that starts at
    (k - 1) * S, so each block is one stream of 2S steps, all streams batched."""
    import numpy as np

    from completer.model import checkpoint
    from completer.model.start import repeat, start_state

    model, vocab, _ = checkpoint.load(model_path)
    texts = [Path(f).read_text(encoding="utf-8", errors="replace")[:chars_per_file] for f in files]
    out, start = {}, start_state(model, vocab)

    def nats(logits, targets):                                  # summed -log p over (T, B)
        z = logits - logits.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=-1))
        return float((lse - np.take_along_axis(z, targets[..., None], -1)[..., 0]).sum())

    total = sum(len(t) - 1 for t in texts)
    for W in widths:
        S, loss = W // 2, 0.0
        for text in texts:
            ids = vocab.encode(text)
            N = len(ids)
            K = max(1, -(-N // S) - 1)                           # streams: blocks 1..K (block 0 rides on 1)
            for b0 in range(0, K, 64):                          # 64 streams at a time: bounded memory
                ks = range(b0 + 1, min(K, b0 + 64) + 1)
                T = 2 * S
                x = np.zeros((T, len(ks)), np.int32)
                y = np.zeros((T, len(ks)), np.int32)
                m = np.zeros((T, len(ks)), bool)
                for j, k in enumerate(ks):
                    a = (k - 1) * S
                    seg = ids[a:a + T + 1]
                    x[:len(seg) - 1, j], y[:len(seg) - 1, j] = seg[:-1], seg[1:]
                    first = 1 if k == 1 else k * S                # the first position this stream scores
                    m[first - 1 - a:len(seg) - 1, j] = True
                logits, _, _ = model.forward(x, repeat(start, len(ks)))
                z = logits[m]                                   # (n, V) the scored positions
                loss += nats(z, y[m])
        out[W] = round(float(loss / total / np.log(2)), 4)
    loss = 0.0
    for text in texts:                                          # the whole file, state carried
        ids, state = vocab.encode(text), start
        for a in range(0, len(ids) - 1, 1024):
            seg = ids[a:a + 1025]
            logits, state, _ = model.forward(seg[:-1, None], state)
            loss += nats(logits, seg[1:, None])
    out["full"] = round(float(loss / total / np.log(2)), 4)
    return out


if __name__ == "__main__":  # python -m completer.evaluation.latency FILE... (the lead wires `completer bench`)
    import json

    print(json.dumps(measure(files=sys.argv[1:])))
