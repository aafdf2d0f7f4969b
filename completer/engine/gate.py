"""The confidence gate: the probability that a suggestion is accepted, so ghost text shows only
suggestions worth the user's attention.

    gate = Gate.load(gate_path(checkpoint))      # None when no NAME.gate.json ships beside it
    x = features(completion, search.root_mix, req)   # (F,) float64, microseconds
    completion.confidence = gate.prob(x)         # P(the suggestion is right), calibrated

The model is a logistic regression over what the engine already has when a suggestion is done
(FEATURES): the characters' log-probabilities under the mixture (mean, minimum, first), the
length, and, with the project memory, what its first prediction saw (the weight set the kernel
chose packs the longest match's length class, the n-gram's highest order seen and whether the
match agrees with the network; the mixer's inputs say which match models predict the
suggestion's first character), the mode, whether the suggestion ends at a natural boundary, and
whether the repetition guard cut it before a loop.
It is fitted offline (`completer eval ... --save-gate FILE`, see docs/gate.md) on public text the
network never trained on, with Exact Match as the label, and ships as a small JSON file beside
the checkpoint (NAME.gate.json: weights, the features' standardisation, the default threshold).

Frontends compare `confidence` with their threshold (serve's `gate` setting, the REPL's `:gate`)
for the ghost text only; a menu lists its alternatives ungated. Without a gate file every
suggestion's confidence is None and everything is shown, as before.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from completer.errors import CompleterError

FEATURES = ("mean_lp", "min_lp", "first_lp", "log_len", "memory", "match_len", "order_seen",
            "agree", "votes", "ends_closed", "ends_open", "looped", "mode_token", "mode_block", "cut", "read")
NMATCH = 6          # the kernel's match models: rows 2..7 of the mixer's inputs
NORD = 4            # the kernel's highest-order classes (s0 = (match length * NORD + order) * 2 + agree)
READ_CAP = math.log1p(2_000_000)   # "read" is clipped here: past the fitting set's range (cold to ~200k)
CLOSED = set(")]}:'\"")
OPENED = set("([{,.=+-*/%<>!&|^~@")
_REPEAT = re.compile(r"(\S.+?|.+?\S)\1\1")   # a unit of 2+ characters (not all blank), 3 times in a row


def repeats(text: str) -> bool:
    """A unit of 2 or more characters (not only spaces) repeated 3 times in a row."""
    return _REPEAT.search(text) is not None


def gate_path(checkpoint) -> Path:
    p = Path(checkpoint)
    return p.with_name(p.name.removesuffix(".safetensors") + ".gate.json")


def features(completion, root_mix, mode: str, first_id: int | None, looped: bool = False,
             read: int = 0) -> np.ndarray:
    """(F,) float64 features of one finished Completion; root_mix = Search.root_mix (the memory's
    first prediction: (packed weight sets, inputs (INPUTS, V), its lp), or None without memory);
    first_id the vocabulary id of the completion's first character (None if it is empty); looped:
    the repetition guard cut the hypothesis before a loop (completer.engine.guard); read: the
    characters the memory has read (a new project's first suggestions are worth less than the same
    scores in a project it knows: one threshold then fits both)."""
    lps = completion.char_logprobs
    text = completion.text
    n = len(lps)
    x = np.zeros(len(FEATURES))
    if n:
        x[0] = completion.logprob / n
        x[1] = min(lps)
        x[2] = lps[0]
    x[3] = math.log1p(len(text))
    if root_mix is not None:
        s, inputs, _ = root_mix
        s0 = s & 0xFF
        x[4] = 1.0
        x[5] = (s0 >> 1) // NORD / 4.0          # the longest match's length class, 0 (none) .. 1 (32+)
        x[6] = (s0 >> 1) % NORD / 3.0           # the n-gram's highest order seen, as a class 0..1
        x[7] = float(s0 & 1)                     # that match predicts the network's best character
        if first_id is not None:
            # rows 2..7 (6, V): a predicting match model's row is high at its character and low
            # elsewhere, a silent one all 0, so it predicts first_id iff that entry beats another's
            other = 1 if first_id == 0 else 0
            x[8] = float(np.count_nonzero(inputs[2:2 + NMATCH, first_id] > inputs[2:2 + NMATCH, other])) / NMATCH
    last = text.rstrip()[-1:]
    x[9] = float(last in CLOSED or (last.isalnum() and not completion.cut))
    x[10] = float(last in OPENED)
    x[11] = float(looped)
    x[12] = float(mode == "token")
    x[13] = float(mode == "block")
    x[14] = float(completion.cut)
    x[15] = min(math.log1p(read), READ_CAP) if root_mix is not None else 0.0
    return x


def shown(completions, gate, threshold: float | None) -> list:
    """The completions the ghost text may show: those the gate gives at least `threshold` (None:
    the gate's own default); everything without a gate, or for a completion without a confidence."""
    if gate is None:
        return completions
    t = gate.threshold if threshold is None else threshold
    return [c for c in completions if c.confidence is None or c.confidence >= t]


class Gate:
    """A logistic regression over standardised FEATURES; `threshold` the frontends' default."""

    def __init__(self, weights, bias: float, mean, scale, threshold: float, meta: dict | None = None):
        self.w = np.asarray(weights, np.float64)
        self.b = float(bias)
        self.mean = np.asarray(mean, np.float64)
        self.scale = np.asarray(scale, np.float64)
        self.threshold = float(threshold)
        self.meta = dict(meta or {})

    def prob(self, x: np.ndarray) -> float:
        z = float(((x - self.mean) / self.scale) @ self.w) + self.b
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def probs(self, X: np.ndarray) -> np.ndarray:
        z = ((X - self.mean) / self.scale) @ self.w + self.b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))

    # ---- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, l2: float = 1.0, threshold: float = 0.5, meta=None) -> "Gate":
        """Maximum likelihood with an L2 penalty (l2 / 2 * |w|^2, bias free), by Newton's method on
        standardised features: X (N, F), y (N,) 0/1. A constant feature gets weight 0."""
        X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
        if len(X) < 2 or y.min() == y.max():
            raise CompleterError(f"cannot fit the gate on {len(X)} suggestions with "
                                 f"{int(y.sum())} right: needs both outcomes")
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale < 1e-9] = 1.0
        Z = np.concatenate([(X - mean) / scale, np.ones((len(X), 1))], axis=1)   # (N, F + 1)
        w = np.zeros(Z.shape[1])
        reg = np.full(Z.shape[1], l2)
        reg[-1] = 0.0
        for _ in range(50):
            p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -700, 700)))
            grad = Z.T @ (p - y) + reg * w
            H = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(reg + 1e-9)
            step = np.linalg.solve(H, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(w[:-1], w[-1], mean, scale, threshold, meta)

    # ---- the file ----------------------------------------------------------------------------
    def save(self, path) -> None:
        from completer.model.checkpoint import atomic_write

        body = {"features": list(FEATURES), "weights": self.w.round(6).tolist(), "bias": round(self.b, 6),
                "mean": self.mean.round(6).tolist(), "scale": self.scale.round(6).tolist(),
                "threshold": self.threshold, **self.meta}
        lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in body.items())  # a list a line
        atomic_write(Path(path), ("{\n" + lines + "\n}\n").encode())

    @classmethod
    def load(cls, path) -> "Gate | None":
        """The gate in `path`, or None if there is no such file; a malformed one is a CompleterError."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            names = raw["features"]
            arrays = [np.asarray(raw[k], np.float64) for k in ("weights", "mean", "scale")]
            bias, threshold = float(raw["bias"]), float(raw["threshold"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise CompleterError(f"{path}: not a gate file ({type(exc).__name__})") from None
        if list(names) != list(FEATURES):
            raise CompleterError(f"{path}: the gate's features are not this version's ({', '.join(FEATURES)})")
        ok = all(a.shape == (len(FEATURES),) and np.isfinite(a).all() for a in arrays)
        if not ok or not (arrays[2] > 0).all() or not math.isfinite(bias) or not 0 <= threshold <= 1:
            raise CompleterError(f"{path}: the gate's numbers are malformed")
        meta = {k: v for k, v in raw.items() if k not in ("features", "weights", "bias", "mean", "scale", "threshold")}
        return cls(*arrays[:1], bias, arrays[1], arrays[2], threshold, meta)
