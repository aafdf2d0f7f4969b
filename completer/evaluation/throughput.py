"""Training throughput: characters/second of one full training step, in float32.

A step is what the trainer does per window: forward, softmax cross-entropy, backward (BPTT),
global-norm gradient clipping to 5, Adam update (the trainer's, completer_trainers.optim). The setup matches `shared/bench/torch_reference.py
throughput` (random ids over a 100-symbol vocabulary, batch 32, window 128, embedding 64, state
carried across windows, median step time after a warm-up) so the two figures compare directly.

  measure(configs, steps=20, warmup=3) -> {"train_chars_per_s": {name: chars/s}, ...}
  phases(config) -> median milliseconds per phase of one step (where the time goes)
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig

DEFAULT_CONFIGS = ["lstm-512x1", "lstm-256x1", "gru-256x1", "rnn-256x1"]
BATCH, WINDOW, EMBED, VOCAB = 32, 128, 64, 100
LR, CLIP = 2e-3, 5.0


def parse_config(name: str) -> tuple:
    """'lstm-512x1' -> ('lstm', 512, 1)."""
    try:
        cell, rest = name.split("-")
        hidden, layers = (int(v) for v in rest.split("x"))
    except ValueError:
        raise CompleterError(f"bad config {name!r}: expected CELL-HIDDENxLAYERS, e.g. lstm-512x1") from None
    return cell, hidden, layers


def validate_config(name: str) -> tuple:
    """Parse and check a config name (cell registered, sizes possible) before any measuring."""
    from completer.registry import registry

    cell, hidden, layers = parse_config(name)
    registry.get("cell", cell)
    ModelConfig(cell=cell, vocab_size=VOCAB, embed=EMBED, hidden=hidden, layers=layers).validate()
    return cell, hidden, layers


def make_optimizer(model):
    """The trainer's own Adam and clipping (completer_trainers.optim): the bench times a real step.
    Returns step(grads) -> None."""
    from completer_trainers.optim import Adam, clip_global_norm

    adam = Adam(model.params)

    def step(grads):
        clip_global_norm(grads, CLIP)
        adam.step(model.params, grads, LR)
    return step


def make(name: str, seed: int = 0):
    cell, hidden, layers = parse_config(name)
    model = CharModel(ModelConfig(cell=cell, vocab_size=VOCAB, embed=EMBED, hidden=hidden, layers=layers),
                      seed=seed)
    return model


def batches(n: int, seed: int = 0):
    """n windows of (ids, targets), each (T, B), from one random stream per batch row."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, VOCAB, size=(BATCH, n * WINDOW + 1)).astype(np.int32)
    for i in range(n):
        chunk = data[:, i * WINDOW:(i + 1) * WINDOW + 1].T          # (T + 1, B)
        yield np.ascontiguousarray(chunk[:-1]), np.ascontiguousarray(chunk[1:])


def time_config(name: str, steps: int = 20, warmup: int = 3) -> float:
    """Median seconds of one training step of config `name`."""
    model = make(name)
    state, opt_step, times = model.zero_state(BATCH), make_optimizer(model), []
    for i, (ids, targets) in enumerate(batches(warmup + steps)):
        t0 = time.perf_counter()
        _, grads, state = model.loss_and_grads(ids, targets, state)
        opt_step(grads)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(configs=DEFAULT_CONFIGS, steps: int = 20, warmup: int = 3) -> dict:
    """Training throughput per config, in characters/second (median step)."""
    for name in configs:
        validate_config(name)
    rates = {name: round(BATCH * WINDOW / time_config(name, steps, warmup)) for name in configs}
    # OpenBLAS uses every core unless told otherwise; under contention from other processes its
    # per-step synchronisation is what suffers first, so the figure depends on this setting
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or os.cpu_count()
    return {"train_chars_per_s": rates, "batch": BATCH, "window": WINDOW, "embed": EMBED,
            "vocab": VOCAB, "dtype": "float32", "steps": steps, "blas_threads": int(threads)}


def _timed(fn, bucket: list):
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        bucket.append(time.perf_counter() - t0)
        return out
    return wrapper


def phases(name: str, steps: int = 20, warmup: int = 3) -> dict:
    """Median milliseconds per step spent in each phase of a training step of config `name`.

    cell_forward / cell_backward: the cells' window passes (recurrent products + gate math; the
    backward includes the window's recurrent weight gradient). Of those, `recurrent_products`
    and `weight_grad_product` time the same matrix products alone, so the rest of the cell time
    is elementwise work and Python. `head_and_input` is everything else in forward and backward
    (table gather, output projection, its gradients, the table scatter); `softmax_xent` and
    `optimizer` (clip + Adam) are timed on their own."""
    model = make(name)
    t = {k: [] for k in ("cell_forward", "cell_backward", "softmax_xent", "forward", "backward", "optimizer")}
    for cell in model.cells:
        cell.forward = _timed(cell.forward, t["cell_forward"])
        cell.backward = _timed(cell.backward, t["cell_backward"])
    model.softmax_xent = _timed(model.softmax_xent, t["softmax_xent"])
    fwd, bwd = _timed(model.forward, t["forward"]), _timed(model.backward, t["backward"])
    state, opt_step, L = model.zero_state(BATCH), make_optimizer(model), len(model.cells)
    per_step = {k: [] for k in ("cell_forward", "cell_backward", "softmax_xent", "head_and_input", "optimizer")}
    for i, (ids, targets) in enumerate(batches(warmup + steps)):
        logits, state, cache = fwd(ids, state)
        _, dlogits = model.softmax_xent(logits, targets)
        grads, _ = bwd(cache, dlogits)
        t0 = time.perf_counter()
        opt_step(grads)
        t["optimizer"].append(time.perf_counter() - t0)
        if i >= warmup:
            cf, cb = sum(t["cell_forward"][-L:]), sum(t["cell_backward"][-L:])
            per_step["cell_forward"].append(cf)
            per_step["cell_backward"].append(cb)
            per_step["softmax_xent"].append(t["softmax_xent"][-1])
            per_step["head_and_input"].append(t["forward"][-1] - cf + t["backward"][-1] - cb)
            per_step["optimizer"].append(t["optimizer"][-1])
    out = {k: 1e3 * statistics.median(v) for k, v in per_step.items()}
    # the bare products of the cells, same shapes, same count
    rng = np.random.default_rng(0)
    H, GH = model.config.hidden, model.cells[0].gates * model.config.hidden
    W = rng.standard_normal((H, GH)).astype(np.float32)
    WT = np.ascontiguousarray(W.T)
    h, a = rng.standard_normal((BATCH, H)).astype(np.float32), rng.standard_normal((BATCH, GH)).astype(np.float32)
    o1, o2 = np.empty((BATCH, GH), np.float32), np.empty((BATCH, H), np.float32)
    hs = rng.standard_normal((H, WINDOW * BATCH)).astype(np.float32)
    acts = rng.standard_normal((WINDOW * BATCH, GH)).astype(np.float32)
    rec, wg = [], []
    for _ in range(max(3, steps // 4)):
        t0 = time.perf_counter()
        for _ in range(WINDOW * L):
            np.matmul(h, W, out=o1)
            np.matmul(a, WT, out=o2)
        rec.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(L):
            hs @ acts
        wg.append(time.perf_counter() - t0)
    out["recurrent_products"] = 1e3 * statistics.median(rec)
    out["weight_grad_product"] = 1e3 * statistics.median(wg)
    out["total"] = sum(out[k] for k in per_step)
    return {k: round(v, 1) for k, v in out.items()}
