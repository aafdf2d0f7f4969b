"""Finite-difference gradient check of every registered cell, built-in or plugin, in float64.

Tiny sizes (as torch-rnn's LSTM_test: N, T, D, H = 2, 3, 4, 5), 1 and 2 layers, a non-zero
incoming state and a non-zero gradient on the outgoing state (the carried-state path of
truncated BPTT), every parameter and the incoming state checked element by element.
"""
import numpy as np
import pytest

from completer.model import CharModel, ModelConfig
from completer.registry import registry

CELLS = registry.names("cell")


def test_builtin_cells_are_registered():
    assert {"rnn", "gru", "lstm"} <= set(CELLS)


def make(cell, layers, seed=0):
    model = CharModel(ModelConfig(cell=cell, vocab_size=7, embed=4, hidden=5, layers=layers),
                      seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    for k, v in model.params.items():  # non-trivial values everywhere, biases included
        v += rng.normal(0, 0.3, v.shape)
    T, B = 3, 2
    ids = rng.integers(0, 7, (T, B))
    targets = rng.integers(0, 7, (T, B))
    state = [tuple(rng.normal(0, 0.5, s.shape) for s in layer) for layer in model.zero_state(B)]
    weights = [tuple(rng.normal(0, 1.0, s.shape) for s in layer) for layer in model.zero_state(B)]
    return model, ids, targets, state, weights


def objective(model, ids, targets, state, weights):
    """Cross-entropy plus a linear term in the final state, so d(final state) is non-zero."""
    logits, final, cache = model.forward(ids, state)
    loss, dlogits = model.softmax_xent(logits, targets)
    loss += sum(float((s * w).sum()) for fs, ws in zip(final, weights) for s, w in zip(fs, ws))
    return loss, dlogits, cache


def rel_error(a, b):
    return np.abs(a - b).max() / max(1e-8, np.abs(a).max() + np.abs(b).max())


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell, layers):
    model, ids, targets, state, weights = make(cell, layers)
    _, dlogits, cache = objective(model, ids, targets, state, weights)
    grads, dstate0 = model.backward(cache, dlogits, dstate=weights)
    eps = 1e-6

    def numeric(array):
        g = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + eps
            up = objective(model, ids, targets, state, weights)[0]
            array[i] = old - eps
            down = objective(model, ids, targets, state, weights)[0]
            array[i] = old
            g[i] = (up - down) / (2 * eps)
        return g

    assert set(grads) == set(model.params)
    for name, p in model.params.items():
        err = rel_error(grads[name], numeric(p))
        assert err < 1e-6, f"{cell} x{layers}: {name} relative error {err:.2e}"
    for l, layer_state in enumerate(state):
        for k, s in enumerate(layer_state):
            err = rel_error(dstate0[l][k], numeric(s))
            assert err < 1e-6, f"{cell} x{layers}: incoming state {l}.{k} relative error {err:.2e}"


@pytest.mark.parametrize("cell", CELLS)
def test_step_matches_window_forward(cell):
    """Serving (one step at a time) computes exactly what training's window forward does."""
    model = CharModel(ModelConfig(cell=cell, vocab_size=9, embed=6, hidden=8, layers=2), seed=3)
    ids = np.random.default_rng(0).integers(0, 9, (11, 3))
    logits, final, _ = model.forward(ids, model.zero_state(3))
    state = model.zero_state(3)
    for t in range(ids.shape[0]):
        step_logits, state = model.step(ids[t], state)
        np.testing.assert_allclose(step_logits, logits[t], rtol=1e-4, atol=1e-5)
    for a, b in zip(state, final):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert logits.dtype == np.float32
