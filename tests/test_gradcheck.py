"""Finite-difference gradient check of every registered cell, built-in or plugin, in float64.

Tiny sizes (as torch-rnn's LSTM_test: N, T, D, H = 2, 3, 4, 5), 1 and 2 layers, a non-zero
incoming state and a non-zero gradient on the outgoing state (the carried-state path of
truncated BPTT), every parameter and the incoming state checked element by element.
"""
import numpy as np
import pytest

from completer.model.network import CharModel, ModelConfig
from completer.registry import registry

CELLS = registry.names("cell")


def test_builtin_cells_are_registered():
    assert {"rnn", "gru", "lstm"} <= set(CELLS)


def make(cell, layers, seed=0, **config):
    model = CharModel(ModelConfig(cell=cell, vocab_size=7, embed=4, hidden=5, layers=layers, **config),
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


def objective(model, ids, targets, state, weights, masks_seed=None):
    """Cross-entropy plus a linear term in the final state, so d(final state) is non-zero.
    masks_seed: train-time dropout and weight drop, the same masks at every call."""
    rng = None if masks_seed is None else np.random.default_rng(masks_seed)
    logits, final, cache = model.forward(ids, state, dropout_rng=rng)
    loss, dlogits = model.softmax_xent(logits, targets)
    loss += sum(float((s * w).sum()) for fs, ws in zip(final, weights) for s, w in zip(fs, ws))
    return loss, dlogits, cache


def rel_error(a, b):
    return np.abs(a - b).max() / max(1e-8, np.abs(a).max() + np.abs(b).max())


@pytest.mark.parametrize("layers,regularised", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell, layers, regularised):
    """regularised: dropout and weight drop on, with fixed masks (the gradient of what training
    optimises, masks included)."""
    model, ids, targets, state, weights = make(cell, layers, **(
        {"dropout": 0.3, "weight_drop": 0.4} if regularised else {}))
    masks_seed = 5 if regularised else None
    _, dlogits, cache = objective(model, ids, targets, state, weights, masks_seed)
    grads, dstate0 = model.backward(cache, dlogits, dstate=weights)
    eps = 1e-6

    def numeric(array):
        g = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + eps
            up = objective(model, ids, targets, state, weights, masks_seed)[0]
            array[i] = old - eps
            down = objective(model, ids, targets, state, weights, masks_seed)[0]
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


def test_weight_drop_masks_recurrent_weights_only():
    """Weight drop zeroes a share of the recurrent matrices during training and nothing else;
    without a dropout_rng (validation, serving) the model is deterministic and unmasked."""
    model, ids, targets, state, _ = make("lstm", 1, weight_drop=0.5)
    _, _, cache = model.forward(ids, state, dropout_rng=np.random.default_rng(0))
    _, _, mask, p, wmasks = cache[1][0]
    assert set(wmasks) == {"Wh"} and mask is None
    dropped = (wmasks["Wh"] == 0).mean()
    assert 0.3 < dropped < 0.7 and np.all(wmasks["Wh"][wmasks["Wh"] != 0] == 2.0)
    assert p["Wx"] is model.params["layers.0.Wx"]
    plain = model.forward(ids, state)[0]
    np.testing.assert_array_equal(plain, model.forward(ids, state)[0])
    assert not np.allclose(plain, model.forward(ids, state, dropout_rng=np.random.default_rng(0))[0])


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
