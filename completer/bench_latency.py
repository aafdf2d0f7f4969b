"""Completion latency as an editor sees it; `completer bench` reports these figures.

measure(model_path, files) replays each file keystroke by keystroke through one Engine document:
  keystroke_ms  edit (one character typed at the cursor) + reading it (Engine.prepare)
  line_ms       a greedy line completion (up to 80 characters) at the cursor, every
                `line_every` keystrokes
  startup_ms    a fresh `python` process: import, load the model, first line completion
Percentiles are over every measured event; the machine's noise shows in p99, so quote medians
of several runs.
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
e = Engine.from_checkpoint({path!r})
e.complete_text("import os\\n\\ndef main(", Request(mode="line"))
print((time.perf_counter() - t0) * 1000)
"""


def _pct(xs, q):
    import numpy as np

    return round(float(np.percentile(xs, q)), 3) if xs else None


def startup_ms(model_path=None, runs: int = 3) -> dict:
    """Median wall time from process start to the first completion, and the import+load part
    measured inside the process."""
    walls, inside = [], []
    code = STARTUP.format(path=str(model_path) if model_path else None)
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
            max_chars: int = 80, startup_runs: int = 3, engine=None) -> dict:
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
    engine = engine or Engine.from_checkpoint(model_path)
    req = Request(mode="line", decoder="greedy", max_chars=max_chars)
    keys, lines, line_chars = [], [], []
    clock = time.perf_counter
    for k, text in enumerate(texts):
        uri = f"bench-{k}"
        engine.open(uri, "")
        for p, ch in enumerate(text):
            t0 = clock()
            engine.edit(uri, p, p, ch)
            engine.prepare(uri, p + 1)
            keys.append((clock() - t0) * 1000)
            if p % line_every == 0:
                t0 = clock()
                out = engine.complete(uri, p + 1, req)
                lines.append((clock() - t0) * 1000)
                line_chars.append(len(out[0].text) if out else 0)
        engine.close(uri)
    result = {"keystroke_ms_p50": _pct(keys, 50), "keystroke_ms_p99": _pct(keys, 99),
              "line_ms_p50": _pct(lines, 50), "line_ms_p99": _pct(lines, 99),
              "line_chars_mean": round(sum(line_chars) / max(len(line_chars), 1), 1),
              "keystrokes": len(keys), "line_completions": len(lines),
              "context": engine.context, "model": engine.describe()["path"]}
    if startup_runs:
        result.update(startup_ms(engine.meta.get("path") or model_path, startup_runs))
    return result


if __name__ == "__main__":  # python -m completer.bench_latency FILE... (the lead wires `completer bench`)
    import json

    print(json.dumps(measure(files=sys.argv[1:])))
