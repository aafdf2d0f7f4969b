"""The character model: embedding -> L stacked cells -> linear head -> softmax.

Shapes: T steps, B streams, V vocabulary, E embedding, H hidden, G*H a cell's input projection.
Parameters live in one flat dict of float32 arrays named as in the checkpoint:
  embed (V, E); layers.{l}.Wx (D, G*H), layers.{l}.b (G*H,), layers.{l}.<recurrent>; head.W (H, V), head.b (V,)

The first layer's input projection is a gather from a (V, G*H) table, embed @ Wx + b, built once
per window: for V ~ 100 characters that is far cheaper than the (T*B, E) @ (E, G*H) product.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from completer.cells.base import Pool
from completer.errors import CompleterError
from completer.registry import registry


@dataclass(frozen=True)
class ModelConfig:
    cell: str = "lstm"
    vocab_size: int = 100
    embed: int = 64
    hidden: int = 512
    layers: int = 1
    dropout: float = 0.0
    weight_drop: float = 0.0  # DropConnect on the recurrent matrices (training only)

    def validate(self) -> "ModelConfig":
        if not isinstance(self.cell, str) or not self.cell:
            raise CompleterError(f"cell must be a name (a string), got {self.cell!r:.60}")
        for field, low in (("vocab_size", 2), ("embed", 1), ("hidden", 1), ("layers", 1)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise CompleterError(f"{field} must be an integer >= {low}, got {getattr(self, field)!r}")
        for field in ("dropout", "weight_drop"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise CompleterError(f"{field} must be in [0, 1), got {getattr(self, field)!r}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def cell_class(config: ModelConfig):
    return registry.get("cell", config.cell)


def weight_count(config: ModelConfig) -> tuple[int, int]:
    """(tensors, weights) of a model of this config, computed from two cells whatever the number
    of layers (so a config claiming 10**9 layers is refused before a single cell is built)."""
    config.validate()
    cell_cls = cell_class(config)
    first = cell_cls(config.embed, config.hidden).param_shapes()
    rest = cell_cls(config.hidden, config.hidden).param_shapes() if config.layers > 1 else {}
    size = lambda shapes: sum(math.prod(s) for s in shapes.values())
    weights = (config.vocab_size * config.embed + size(first) + (config.layers - 1) * size(rest)
               + (config.hidden + 1) * config.vocab_size)
    return 3 + len(first) * config.layers, weights


class CharModel:
    def __init__(self, config: ModelConfig, params: dict | None = None, seed: int = 0, dtype=np.float32):
        self.config = config.validate()
        cell_cls = cell_class(config)
        dims = [config.embed] + [config.hidden] * config.layers
        self.cells = [cell_cls(dims[l], config.hidden) for l in range(config.layers)]
        self.params = params if params is not None else self.init_params(seed, dtype)

    # ---- parameters -----------------------------------------------------------------------
    def init_params(self, seed: int, dtype=np.float32, rng=None) -> dict:
        rng = np.random.default_rng(seed) if rng is None else rng
        c = self.config
        # N(0, 1) as torch.nn.Embedding: with 0.1 the input barely reaches the gates at first and
        # training on requests was ~1.5x slower to reach the same loss (measured, docs/model.md)
        p = {"embed": rng.standard_normal((c.vocab_size, c.embed)).astype(dtype)}
        for l, cell in enumerate(self.cells):
            for k, v in cell.init_params(rng, dtype).items():
                p[f"layers.{l}.{k}"] = v
        bound = 1.0 / np.sqrt(c.hidden)
        p["head.W"] = rng.uniform(-bound, bound, (c.hidden, c.vocab_size)).astype(dtype)
        p["head.b"] = np.zeros(c.vocab_size, dtype)
        return p

    def expected_shapes(self) -> dict:
        """Shapes every checkpoint of this config must have, in init_params's order, without
        allocating a single weight (Cell.param_shapes): a lying config costs nothing to check."""
        c = self.config
        shapes = {"embed": (c.vocab_size, c.embed)}
        for l, cell in enumerate(self.cells):
            shapes.update((f"layers.{l}.{k}", s) for k, s in cell.param_shapes().items())
        return dict(shapes, **{"head.W": (c.hidden, c.vocab_size), "head.b": (c.vocab_size,)})

    def layer_params(self, l: int) -> dict:
        prefix = f"layers.{l}."
        return {k[len(prefix):]: v for k, v in self.params.items() if k.startswith(prefix)}

    @property
    def dtype(self):
        return self.params["embed"].dtype

    def zero_state(self, B: int = 1) -> list:
        return [cell.zero_state(B, self.dtype) for cell in self.cells]

    def input_table(self) -> np.ndarray:
        """(V, G*H): the first layer's input projection of every character."""
        p0 = self.layer_params(0)
        return self.params["embed"] @ p0["Wx"] + p0["b"]

    # ---- serving: one step --------------------------------------------------------------
    def step(self, ids, state, table=None):
        """ids (B,) -> logits (B, V), new state. `table` = input_table(), cached by the caller."""
        table = self.input_table() if table is None else table
        xp, new_state = table[ids], []
        for l, cell in enumerate(self.cells):
            p = self.layer_params(l)
            if l:
                xp = h @ p["Wx"] + p["b"]
            s = cell.step(p, xp, state[l])
            new_state.append(s)
            h = s[0]
        return h @ self.params["head.W"] + self.params["head.b"], new_state

    # ---- a window: forward, loss, backward ----------------------------------------------
    def forward(self, ids, state, dropout_rng=None, table=None, streams=None):
        """ids (T, B) -> logits (T, B, V), final state, cache for backward.
        `table` = input_table(), for a caller reading many short windows with the same weights.
        `streams` = (lo, hi, B_all) when these B = hi - lo streams are columns lo:hi of a batch of
        B_all (data-parallel training): dropout masks are drawn for all B_all streams and sliced, so
        each shard uses exactly the masks one process training the whole batch would draw.

        Regularisation, only when a dropout_rng is given (training): dropout (inverted) on each
        layer's output, i.e. between layers and before the head; and weight drop (DropConnect,
        as AWD-LSTM, Merity et al. 2017) on each layer's recurrent matrices, one mask per window
        shared by every step, which regularises the recurrence itself rather than its outputs."""
        T, B = ids.shape
        drop = self.config.dropout if dropout_rng is not None else 0.0
        wdrop = self.config.weight_drop if dropout_rng is not None else 0.0
        xp_buf = self._gather(self.input_table() if table is None else table, ids)
        xp = xp_buf["xp"]                                           # (T, B, G*H)
        layer_caches, final, x = [], [], None
        for l, cell in enumerate(self.cells):
            p, wmasks = self.layer_params(l), {}
            if wdrop:
                for k, w in p.items():
                    if w.ndim == 2 and k != "Wx":                   # the recurrent matrices
                        wmasks[k] = (dropout_rng.random(w.shape, dtype=np.float32) >= wdrop) / w.dtype.type(1 - wdrop)
                p = dict(p, **{k: p[k] * m for k, m in wmasks.items()})
            if l:
                xp = (x.reshape(T * B, -1) @ p["Wx"]).reshape(T, B, -1) + p["b"]
            hs, s, cache = cell.forward(p, xp, state[l])            # hs (T, B, H)
            final.append(s)
            mask = None
            if drop:
                if streams is None:
                    u = dropout_rng.random(hs.shape)
                else:
                    lo, hi, B_all = streams
                    u = dropout_rng.random((T, B_all) + hs.shape[2:])[:, lo:hi]
                mask = (u >= drop).astype(hs.dtype) / (1.0 - drop)
                hs = hs * mask
            layer_caches.append((x, cache, mask, p, wmasks))
            x = hs
        logits = (x.reshape(T * B, -1) @ self.params["head.W"] + self.params["head.b"]).reshape(T, B, -1)
        return logits, final, (ids, layer_caches, x, xp_buf)

    def _gather(self, table, ids):
        """table[ids] into a recycled buffer (give it back with _pool.give once used): a fresh
        (T, B, G*H) array every window (33 MB for LSTM-512) costs more in page faults than the copy."""
        pool = self.__dict__.setdefault("_pool", Pool())
        buf = pool.take(ids.shape + (table.dtype,), {"xp": ids.shape + table.shape[1:]}, table.dtype)
        # mode="clip" skips take's bounds-checked buffered path (ids come from the vocabulary)
        np.take(table, ids, axis=0, out=buf["xp"], mode="clip")
        return buf

    @staticmethod
    def softmax_xent(logits, targets):
        """Mean cross-entropy (nats) and its gradient w.r.t. logits (T, B, V)."""
        V = logits.shape[-1]
        z = logits.reshape(-1, V)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        e /= e.sum(axis=1, keepdims=True)                           # (N, V) probabilities
        t = targets.reshape(-1)
        N = t.shape[0]
        loss = -np.log(np.maximum(e[np.arange(N), t], 1e-30)).mean()
        e[np.arange(N), t] -= 1.0
        e /= N
        return float(loss), e.reshape(logits.shape)

    def backward(self, cache, dlogits, dstate=None):
        """Gradients of every parameter, and of the incoming state, from dlogits (T, B, V)."""
        ids, layer_caches, x, xp_buf = cache
        T, B, V = dlogits.shape
        dl = dlogits.reshape(T * B, V)
        grads = {"head.W": x.reshape(T * B, -1).T @ dl, "head.b": dl.sum(axis=0)}
        dx = (dl @ self.params["head.W"].T).reshape(T, B, -1)       # (T, B, H)
        dstate0 = [None] * len(self.cells)
        for l in reversed(range(len(self.cells))):
            cell = self.cells[l]
            x_in, cell_cache, mask, p, wmasks = layer_caches[l]         # p: as forward used them
            if mask is not None:
                dx = dx * mask
            ds = dstate[l] if dstate is not None else cell.zero_state(B, dx.dtype)
            dxp, g, dstate0[l] = cell.backward(p, cell_cache, dx, ds)   # dxp (T, B, G*H)
            dxp2 = dxp.reshape(T * B, -1)                          # (T*B, G*H)
            for k, v in g.items():
                grads[f"layers.{l}.{k}"] = v * wmasks[k] if k in wmasks else v
            if l:
                grads[f"layers.{l}.b"] = dxp2.sum(axis=0)
                grads[f"layers.{l}.Wx"] = x_in.reshape(T * B, -1).T @ dxp2
                dx = (dxp2 @ p["Wx"].T).reshape(T, B, -1)
            else:
                # the gather from the table, reversed: sum dxp's rows per character as one
                # (V, T*B) one-hot @ (T*B, G*H) product (np.add.at is ~3x slower), then
                # through table = embed @ Wx + b
                V = self.config.vocab_size
                onehot = np.zeros((V, T * B), dxp2.dtype)
                onehot[ids.reshape(-1), np.arange(T * B)] = 1.0
                dtable = onehot @ dxp2                              # (V, G*H)
                grads["layers.0.b"] = dtable.sum(axis=0)
                grads["layers.0.Wx"] = self.params["embed"].T @ dtable
                grads["embed"] = dtable @ p["Wx"].T
            cell.release(cell_cache)                                # dxp used: recycle the buffers
        self._pool.give(xp_buf)  # the first layer's xp: a cell may have kept it in its cache
        return grads, dstate0

    def loss_and_grads(self, ids, targets, state, dropout_rng=None, streams=None):
        """One window of truncated BPTT: mean loss (nats), grads, final state (to carry on).
        `streams`: see forward (a data-parallel shard of a larger batch)."""
        logits, final, cache = self.forward(ids, state, dropout_rng, streams=streams)
        loss, dlogits = self.softmax_xent(logits, targets)
        grads, _ = self.backward(cache, dlogits)
        return loss, grads, final

    def n_params(self) -> int:
        return sum(v.size for v in self.params.values())
