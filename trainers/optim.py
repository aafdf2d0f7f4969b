"""Optimizers (Adam, SGD with momentum, Adagrad), global-norm clipping and the learning-rate schedule.

An optimizer updates a flat dict of float32 parameters in place from a dict of gradients. Its
state is a dict of named float32 arrays (`slots`) plus a step count, so it saves to safetensors
next to the checkpoint and resumes exactly.

Two options every optimizer shares:
- weight_decay: decoupled (AdamW, Loshchilov & Hutter 2019): p -= lr * wd * p after the update,
  on the weight matrices only (not biases, not the embedding);
- ema: an exponential moving average of the parameters (slot "avg"), with the usual warm-up
  min(ema, (1 + t) / (10 + t)) so that early averages are not dominated by the initialisation.
  Averaged weights generalise better than the last iterate on a small corpus; the trainer
  validates and saves them.
"""
from __future__ import annotations

import math

import numpy as np

from completer.errors import CompleterError

DEFAULT_LR = {"adam": 2e-3, "sgd": 0.05, "adagrad": 0.05}


class Optimizer:
    slot_names: tuple = ()

    def __init__(self, params: dict, weight_decay: float = 0.0, ema: float = 0.0):
        self.t, self.weight_decay, self.ema = 0, weight_decay, ema
        self.slots = {s: {k: np.zeros_like(v) for k, v in params.items()} for s in self.slot_names}
        if ema:
            self.slots["avg"] = {k: v.copy() for k, v in params.items()}
        self.decayed = {k for k, v in params.items() if v.ndim == 2 and k != "embed"}

    def step(self, params: dict, grads: dict, lr: float) -> None:
        self.t += 1
        for k, p in params.items():
            self.update(k, p, grads[k], np.float32(lr))
            if self.weight_decay and k in self.decayed:
                p *= np.float32(1 - lr * self.weight_decay)
        if self.ema:
            w = np.float32(1 - min(self.ema, (1 + self.t) / (10 + self.t)))
            for k, a in self.slots["avg"].items():
                a += w * (params[k] - a)

    @property
    def averaged(self) -> dict | None:
        """The averaged parameters (ema on), else None."""
        return self.slots.get("avg")

    def update(self, k, p, g, lr):
        raise NotImplementedError

    # ---- resume ----
    def state_tensors(self) -> dict:
        return {f"opt.{s}.{k}": v for s, d in self.slots.items() for k, v in d.items()}

    def load_state_tensors(self, tensors: dict, t: int) -> None:
        for s, d in self.slots.items():
            for k, v in d.items():
                src = tensors.get(f"opt.{s}.{k}")
                if src is None or src.shape != v.shape:
                    raise CompleterError(f"resume state lacks optimizer slot {s}.{k} of shape {v.shape}")
                d[k] = np.ascontiguousarray(src, dtype=np.float32)
        self.t = int(t)


class Adam(Optimizer):
    slot_names = ("m", "v")
    b1, b2, eps = 0.9, 0.999, 1e-8

    def update(self, k, p, g, lr):
        m, v = self.slots["m"][k], self.slots["v"][k]
        m *= self.b1
        m += (1 - self.b1) * g
        v *= self.b2
        v += (1 - self.b2) * (g * g)
        # bias correction folded into the step size (Kingma & Ba, section 2)
        a = np.float32(lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t))
        denom = np.sqrt(v)
        denom += np.float32(self.eps)
        p -= a * m / denom


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum 0.9."""
    slot_names = ("momentum",)
    mu = 0.9

    def update(self, k, p, g, lr):
        buf = self.slots["momentum"][k]
        buf *= self.mu
        buf += g
        p -= lr * buf


class Adagrad(Optimizer):
    slot_names = ("sum_sq",)
    eps = 1e-8

    def update(self, k, p, g, lr):
        s = self.slots["sum_sq"][k]
        s += g * g
        denom = np.sqrt(s)
        denom += np.float32(self.eps)
        p -= lr * g / denom


OPTIMIZERS = {"adam": Adam, "sgd": SGD, "adagrad": Adagrad}


def make(name: str, params: dict, weight_decay: float = 0.0, ema: float = 0.0) -> Optimizer:
    if name not in OPTIMIZERS:
        raise CompleterError(f"unknown optimizer {name!r}; available: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, weight_decay, ema)


def clip_global_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients so their joint L2 norm is at most max_norm (0 = off); returns the norm before."""
    norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values()))
    if max_norm > 0 and norm > max_norm:
        scale = np.float32(max_norm / (norm + 1e-6))
        for g in grads.values():
            g *= scale
    return norm


def learning_rate(step: int, base: float, warmup: int, total: int | None, final_fraction: float = 0.1) -> float:
    """Learning rate for 0-based `step`: linear warm-up over `warmup` steps, then a cosine decay
    to `final_fraction * base` at `total` steps (constant after warm-up when total is unknown,
    i.e. a --minutes budget)."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    if not total or total <= warmup:
        return base
    progress = min(1.0, (step - warmup) / (total - warmup))
    return base * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))
