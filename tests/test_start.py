"""Every text is read from the start state (completer.model.start), not the zero state: the state
the trainer's streams are in where a file begins."""
import numpy as np

from completer.engine import Engine
from completer.model import checkpoint
from completer.model.start import PRIMER, repeat, start_state

OPENINGS = ["def add(a, b):\n    return a + b\n", "import os\nimport sys\n", "class Foo:\n    def __init__(self):\n",
            "for i in range(10):\n    print(i)\n", "if __name__ == \"__main__\":\n    main()\n"]


def _bits(model, vocab, text, state):
    ids = vocab.encode(text).astype(np.int64)[:, None]                    # (T, 1)
    logits, _, _ = model.forward(ids[:-1], state)                          # (T - 1, 1, V)
    z = logits[:, 0] - logits[:, 0].max(axis=1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -lp[np.arange(len(ids) - 1), ids[1:, 0]].sum() / np.log(2)


def test_the_engine_reads_from_the_start_state(tiny_checkpoint):
    engine = Engine.from_checkpoint(tiny_checkpoint)
    expected = engine.net.read(engine.model.zero_state(1), engine.vocab.encode(PRIMER))
    for got, want in zip(engine.net.start, expected):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert any(np.abs(h).max() > 0 for s in engine.net.start for h in s)   # not the zero state
    rows = repeat(engine.net.start, 3)
    assert all(h.shape[0] == 3 and np.array_equal(h[0], h[2]) for s in rows for h in s)


def test_a_new_texts_first_characters_cost_fewer_bits_from_the_start_state():
    """The shipped model: where a user starts (a new file, the REPL's first line)."""
    model, vocab, _ = checkpoint.load(None)
    zero = sum(_bits(model, vocab, t, model.zero_state(1)) for t in OPENINGS)
    start = sum(_bits(model, vocab, t, start_state(model, vocab)) for t in OPENINGS)
    n = sum(len(t) - 1 for t in OPENINGS)
    print(f"\nfirst characters: {zero / n:.3f} bits per character from zeros, {start / n:.3f} from the start state")
    assert start < 0.9 * zero
