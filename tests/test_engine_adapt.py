"""The engine's opt-in adaptation: typed text teaches the workspace's weights, which carry from
document to document; the shipped weights are never written."""
import threading

import numpy as np
import pytest

from completer.model import checkpoint
from completer.engine.adaptation import WINDOW
from completer.engine import Engine, Request
from completer.errors import CompleterError

HEAD = "import os\n\n\ndef main(path):\n    return os.path.join(path, 'x')\n\n\n"
LINE = "qzv_total = qzv_total + qzv_step\n"   # a novel name the untrained model cannot know
PROBE = "qzv_total = qzv_"                    # the name's next character: 't'
TYPED = LINE * 24                             # 816 characters: 6 windows of 128


def shipped(path):
    model, _, _ = checkpoint.load(path)
    return model.params


def engine_for(path, adapt=True, lr=1.0):
    return Engine.from_checkpoint(path, context=128, adapt=adapt, adapt_lr=lr)


def type_text(engine, uri, text, at=None):
    """Type text one character at a time at `at` (default: the end), as an editor reports it."""
    p = len(engine.text(uri)) if at is None else at
    for ch in text:
        engine.edit(uri, p, p, ch)
        p += 1


def prob_next(engine, uri, ch):
    """The document's probability that `ch` comes next at its end."""
    n = len(engine.text(uri))
    req = Request(mode="char", decoder="beam", beam=100, n=100)
    return next((c.prob for c in engine.complete(uri, n, req) if c.text == ch), 0.0)


def same_params(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_typing_a_new_name_raises_its_probability_across_the_workspace(tiny_checkpoint):
    engine, static = engine_for(tiny_checkpoint), engine_for(tiny_checkpoint, adapt=False)
    engine.open("a", HEAD)
    type_text(engine, "a", TYPED + PROBE)
    assert engine.wait_adaptation(timeout=60)
    assert engine.adapt_steps("a") == (len(TYPED + PROBE)) // WINDOW == 6
    static.open("a", engine.text("a"))
    before = prob_next(static, "a", "t")
    after = prob_next(engine, "a", "t")
    assert after > 4 * before, (before, after)   # measured: 0.010 -> 0.062
    # another file of the workspace, opened after the typing, is served by the learnt weights too
    engine.close("a")
    engine.open("b", HEAD + PROBE)
    static.open("b", HEAD + PROBE)
    assert engine.adapt_steps("b") == 6
    assert prob_next(engine, "b", "t") > 2 * prob_next(static, "b", "t")
    assert same_params(engine.model.params, shipped(tiny_checkpoint))  # the shipped weights untouched


def test_off_is_the_engine_as_before(tiny_checkpoint):
    engine, fresh = engine_for(tiny_checkpoint, adapt=False), engine_for(tiny_checkpoint, adapt=False)
    engine.open("a", HEAD)
    type_text(engine, "a", TYPED)
    assert engine.wait_adaptation(timeout=1) and engine.adapt_steps("a") == 0
    assert not engine._adapted and not engine._learning  # no bookkeeping, no thread
    req = Request(mode="line", max_chars=30)
    for p in (len(HEAD), len(HEAD) + 300, len(engine.text("a"))):
        assert engine.complete("a", p, req) == fresh.complete_text(engine.text("a")[:p], req, suffix=engine.text("a")[p:])


def _adapted_engine(path):
    engine = engine_for(path)
    engine.open("a", HEAD)
    type_text(engine, "a", TYPED)
    assert engine.wait_adaptation(timeout=60) and engine.adapt_steps("a") > 0
    return engine


@pytest.mark.parametrize("how", ["reset", "switch off"])
def test_reset_and_off_restore_the_shipped_weights_exactly(tiny_checkpoint, how):
    engine, fresh = _adapted_engine(tiny_checkpoint), engine_for(tiny_checkpoint, adapt=False)
    text = engine.text("a")
    req = Request(mode="line", max_chars=30)
    adapted = engine.complete("a", len(text), req)
    assert adapted != fresh.complete_text(text, req)   # else this test could not fail
    if how == "reset":
        engine.reset_adaptation("a")
    else:
        engine.set_adapt(False)
    assert engine.adapt_steps("a") == 0
    for p in (len(HEAD) + 200, len(text)):
        assert engine.complete("a", p, req) == fresh.complete_text(text[:p], req, suffix=text[p:])
    # the text already there is not learnt again: only new typing counts
    type_text(engine, "a", LINE)
    assert engine.wait_adaptation(timeout=60) and engine.adapt_steps("a") == 0


def test_suggestions_are_never_learnt_from(tiny_checkpoint):
    engine = _adapted_engine(tiny_checkpoint)
    steps, learner = engine.adapt_steps("a"), engine._learner.learner
    weights = {k: v.copy() for k, v in learner.params.items()}
    n = len(engine.text("a"))
    first = [engine.complete("a", n, Request(mode=m, max_chars=60)) for m in ("line", "block", "token")]
    for _ in range(10):
        again = [engine.complete("a", n, Request(mode=m, max_chars=60)) for m in ("line", "block", "token")]
        engine.complete("a", n, Request(mode="line", decoder="temperature", n=5, seed=1))
        assert again == first
    assert engine.wait_adaptation(timeout=60)
    assert engine.adapt_steps("a") == steps
    assert same_params(learner.params, weights)


def test_one_step_per_window_of_growth_at_the_typing_point(tiny_checkpoint):
    engine = engine_for(tiny_checkpoint)
    engine.open("a", HEAD + HEAD)
    type_text(engine, "a", "x" * (WINDOW - 1), at=len(HEAD))     # typing in the middle counts
    assert engine.wait_adaptation(timeout=60) and engine.adapt_steps("a") == 0
    type_text(engine, "a", "y", at=len(HEAD) + WINDOW - 1)
    assert engine.wait_adaptation(timeout=60) and engine.adapt_steps("a") == 1
    ad = engine._adapted["a"]
    assert ad.at == len(HEAD) + WINDOW and ad.mark == len(engine.text("a"))
    # deleting then retyping the same characters is growth again; a full-text change finds the
    # end of the edit (where the common suffix starts)
    text = engine.text("a")
    engine.change("a", text[:10] + "z" * WINDOW + text[10:])
    assert ad.at == 10 + WINDOW
    assert engine.wait_adaptation(timeout=60) and engine.adapt_steps("a") == 2


def test_bad_learning_rate_and_threads(tiny_checkpoint):
    engine = engine_for(tiny_checkpoint)
    for lr in (0, -1.0, float("nan"), True, "1"):
        with pytest.raises(CompleterError):
            engine.set_adapt(True, lr)
    engine.open("a", HEAD)
    errors = []

    def asker():
        try:
            for _ in range(40):
                engine.complete("a", len(engine.text("a")), Request(mode="line", max_chars=20))
        except Exception as exc:  # noqa: BLE001 - any failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=asker) for _ in range(2)]
    for t in threads:
        t.start()
    type_text(engine, "a", TYPED)
    for t in threads:
        t.join()
    assert engine.wait_adaptation(timeout=60) and not errors
    assert engine.adapt_steps("a") == len(TYPED) // WINDOW
