"""The options of a training run: their defaults, the budget, and how --resume combines the given
options with the saved ones. None in a given option means "not given" (so --resume can tell)."""
from __future__ import annotations

import math

from completer.errors import CompleterError
from completer_trainers import corpus as corpus_mod
from completer_trainers import optim

# Defaults of every option; None in `options` means "not given" (so --resume can tell).
DEFAULTS = dict(cell="lstm", hidden=256, layers=1, embed=64, dropout=0.0, weight_drop=0.0,
                batch=32, seq=128, lr=None, optimizer="adam", clip=5.0, warmup=None, weight_decay=0.0, ema=0.0,
                seed=0, val_fraction=0.1, val_files=[], val_every=100, val_chars=250_000, patience=10,
                log_every=10, include=[], heldout=[], max_file_bytes=corpus_mod.MAX_FILE_BYTES,
                vocab_size=None, min_count=1)
BUDGET_KEYS = ("steps", "epochs", "minutes")
DEFAULT_EPOCHS = 20

def resolve(given: dict, saved: dict | None) -> dict:
    """The run's options: the given ones over the defaults (a new run) or over the saved ones
(--resume, where a given option that differs is refused); one budget; checked."""
    budget = {k: given.get(k) for k in BUDGET_KEYS if given.get(k) is not None}
    if len(budget) > 1:
        raise CompleterError(f"--{' and --'.join(budget)} are contradictory: give one budget")
    if saved is None:
        opts = {k: (given.get(k) if given.get(k) is not None else v) for k, v in DEFAULTS.items()}
    else:
        for k, v in given.items():
            if k in BUDGET_KEYS or v is None or k not in saved:
                continue
            if v != saved[k]:
                raise CompleterError(f"--{k.replace('_', '-')} {v} contradicts the run being resumed "
                                     f"({k} {saved[k]}); drop it, or start a new run with --force")
        opts = {k: saved.get(k, v) for k, v in DEFAULTS.items()}
        if not budget:
            budget = {k: saved[k] for k in BUDGET_KEYS if saved.get(k) is not None}
    if not budget:
        budget = {"epochs": DEFAULT_EPOCHS}
    opts.update({k: budget.get(k) for k in BUDGET_KEYS})
    if opts["lr"] is None:
        opts["lr"] = optim.DEFAULT_LR[opts["optimizer"]]
    for key, low in (("batch", 1), ("seq", 1), ("val_every", 1), ("val_chars", 2), ("log_every", 1)):
        if not isinstance(opts[key], int) or opts[key] < low:
            raise CompleterError(f"--{key.replace('_', '-')} must be a whole number >= {low}, got {opts[key]!r}")
    if not (opts["lr"] > 0 and math.isfinite(opts["lr"])):
        raise CompleterError(f"--lr must be a positive number, got {opts['lr']!r}")
    if opts["optimizer"] not in optim.OPTIMIZERS:
        raise CompleterError(f"unknown optimizer {opts['optimizer']!r}; available: {', '.join(optim.OPTIMIZERS)}")
    if opts["vocab_size"] is not None and (not isinstance(opts["vocab_size"], int) or opts["vocab_size"] < 2):
        raise CompleterError(f"--vocab-size must be a whole number >= 2 (one character and the unknown "
                             f"symbol), got {opts['vocab_size']!r}")
    if not isinstance(opts["min_count"], int) or opts["min_count"] < 1:
        raise CompleterError(f"--min-count must be a whole number >= 1, got {opts['min_count']!r}")
    for key in ("val_fraction", "weight_drop", "ema"):
        if not 0 <= opts[key] < 1:
            raise CompleterError(f"--{key.replace('_', '-')} must be in [0, 1), got {opts[key]!r}")
    if not (opts["weight_decay"] >= 0 and math.isfinite(opts["weight_decay"])):
        raise CompleterError(f"--weight-decay must be a number >= 0, got {opts['weight_decay']!r}")
    return opts
