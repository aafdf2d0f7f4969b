"""The loss curve of a run: train and validation bits per character against characters seen.

Reads RUN/metrics.jsonl and writes RUN/loss.png with matplotlib, an optional extra
(`pip install 'completer[plot]'`); without it, `plot_run` says so instead of drawing.
"""
from __future__ import annotations

import json
from pathlib import Path

from completer.errors import CompleterError

METRICS, PLOT = "metrics.jsonl", "loss.png"
MISSING = "matplotlib is not installed; pip install 'completer[plot]' to draw loss curves"


def read_metrics(run_dir) -> tuple[list, list]:
    """(train records, val records) of a run directory's metrics log."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise CompleterError(f"{run_dir}: no {METRICS} (not a training run directory?)")
    train, val = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        if rec.get("kind") == "train" and rec.get("train_bpc") is not None:
            train.append(rec)
        elif rec.get("kind") == "val":
            val.append(rec)
    return train, val


def plot_run(run_dir, out=None) -> tuple[Path | None, str | None]:
    """(path of the PNG, None), or (None, why it was not drawn)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, MISSING
    train, val = read_metrics(run_dir)
    if not train and not val:
        return None, "no metrics recorded yet"
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        ax.plot([r["chars"] for r in train], [r["train_bpc"] for r in train], label="train", lw=1)
    if val:
        ax.plot([r["chars"] for r in val], [r["val_bpc"] for r in val], "o-", label="validation", ms=3)
    ax.set_xlabel("characters seen")
    ax.set_ylabel("bits per character")
    ax.set_title(f"completer training: {Path(run_dir).resolve().name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out) if out else Path(run_dir) / PLOT
    fig.savefig(out)
    plt.close(fig)
    return out, None
