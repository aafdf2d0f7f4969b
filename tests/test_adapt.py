"""Dynamic evaluation: SGD steps on text already read, clipping, and reset."""
import numpy as np
import pytest

from completer.engine.adaptation import Adapter
from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig


def tiny(seed=0):
    return CharModel(ModelConfig(cell="lstm", vocab_size=6, embed=4, hidden=8), seed=seed)


def window(T=16):
    ids = np.array([0, 1, 2, 3, 4] * 8)[:T + 1]
    return ids[:-1, None], ids[1:, None]


def test_learning_lowers_the_loss_of_what_was_read_and_reset_restores():
    model = tiny()
    before = {k: v.copy() for k, v in model.params.items()}
    adapter = Adapter(model, lr=2.0, clip=5.0)
    x, y = window()
    first, _ = adapter.learn(x, y, model.zero_state(1))
    expected, _, _ = tiny().loss_and_grads(x, y, tiny().zero_state(1))
    assert first == pytest.approx(expected)           # the loss is read before the step
    for _ in range(30):
        last, _ = adapter.learn(x, y, model.zero_state(1))
    assert last < first - 0.3
    assert adapter.steps == 31
    adapter.reset()
    assert adapter.steps == 0
    assert all(np.array_equal(model.params[k], v) for k, v in before.items())


def test_step_is_sgd_with_global_norm_clipping():
    model = tiny()
    p0 = {k: v.copy() for k, v in model.params.items()}
    grads = {"head.b": np.full(6, 2.0, np.float32), "embed": np.zeros((6, 4), np.float32)}
    norm = Adapter(model, lr=0.1, clip=1.0).apply(grads)
    assert norm == pytest.approx(np.sqrt(6 * 4.0))
    np.testing.assert_allclose(model.params["head.b"], p0["head.b"] - 0.1 * 2.0 / norm, rtol=1e-6)
    np.testing.assert_array_equal(model.params["embed"], p0["embed"])
    small = {"head.b": np.full(6, 0.01, np.float32)}
    Adapter(model, lr=0.1, clip=1.0).apply(small)      # under the clip: plain SGD
    np.testing.assert_allclose(model.params["head.b"], p0["head.b"] - 0.1 * 2.0 / norm - 0.001, rtol=1e-6)


def test_bad_settings_are_refused():
    with pytest.raises(CompleterError):
        Adapter(tiny(), lr=0.0)
