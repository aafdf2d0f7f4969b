"""Behaviour that needs a model that predicts: a tiny LSTM trained here, in a few seconds, on a
repetitive Python pattern, then the stop rules, post-processing and decoders on top of it."""
import numpy as np
import pytest

from completer.engine import Engine, Request
from completer.model.network import CharModel, ModelConfig
from completer.model.vocab import Vocab

NAMES = ["alpha", "beta", "gamma", "delta"]
PATTERN = "".join(f"def {n}(x):\n    return g(x, [1, 2])\n\n" for n in NAMES)


def train_tiny(text, steps=150, hidden=32, seed=0):
    """Adam on random windows of `text`: enough for the model to learn the pattern by heart."""
    vocab = Vocab([chr(c) for c in range(32, 127)] + ["\n"])
    model = CharModel(ModelConfig(cell="lstm", vocab_size=len(vocab), embed=16, hidden=hidden), seed=seed)
    data = vocab.encode(text * 20)
    rng = np.random.default_rng(seed)
    m = {k: np.zeros_like(v) for k, v in model.params.items()}
    v2 = {k: np.zeros_like(v) for k, v in model.params.items()}
    T, B, lr = 32, 8, 0.03
    for t in range(1, steps + 1):
        starts = rng.integers(0, len(data) - T - 1, B)
        ids = np.stack([data[s:s + T] for s in starts], axis=1)          # (T, B)
        tgt = np.stack([data[s + 1:s + T + 1] for s in starts], axis=1)
        loss, grads, _ = model.loss_and_grads(ids, tgt, model.zero_state(B))
        for k, g in grads.items():
            g = np.clip(g, -5, 5)
            m[k] = 0.9 * m[k] + 0.1 * g
            v2[k] = 0.999 * v2[k] + 0.001 * g * g
            model.params[k] -= lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v2[k] / (1 - 0.999 ** t)) + 1e-8)
    return model, vocab, loss


@pytest.fixture(scope="module")
def trained():
    model, vocab, loss = train_tiny(PATTERN)
    assert loss < 0.3, f"the tiny model did not learn the pattern (loss {loss:.3f} nats)"
    return Engine(model, vocab, {"path": None}, context=256)


CTX = PATTERN * 3


def test_line_mode_completes_the_line(trained):
    (c,) = trained.complete_text(CTX + "def beta(x):\n    return g(", Request(mode="line"))
    assert c.text == "x, [1, 2])"
    assert c.prob > 0.5


def test_token_mode_stops_at_the_end_of_the_identifier(trained):
    (c,) = trained.complete_text(CTX + "def gam", Request(mode="token"))
    assert c.text == "ma"
    (c,) = trained.complete_text(CTX + "def gamma(x):\n    ret", Request(mode="token"))
    assert c.text == "urn"


def test_char_mode_gives_one_character(trained):
    (c,) = trained.complete_text(CTX + "def delta(x):\n    return g(x, [1", Request(mode="char"))
    assert c.text == ","
    assert len(c.char_logprobs) == 1


def test_block_mode_stops_at_the_blank_line(trained):
    (c,) = trained.complete_text(CTX + "def alpha(x):", Request(mode="block", max_chars=400))
    assert c.text == "\n    return g(x, [1, 2])"


def test_block_mode_stops_where_indentation_returns(trained):
    # from inside the body, the block ends before a line back at the body's level or below
    (c,) = trained.complete_text(CTX + "def alpha(x):\n    return g(x,", Request(mode="block", max_chars=400))
    assert c.text == " [1, 2])"


def test_never_closes_what_nothing_opened(trained):
    # the pattern always closes "])" here, but this prefix opened neither
    out = trained.complete_text(CTX + "def beta(x):\n    return g, x, 1, 2", Request(mode="line"))
    assert all(")" not in c.text and "]" not in c.text for c in out)
    out = trained.complete_text(CTX + "def beta(x):\n    return g(x, 1, 2", Request(mode="line"))
    assert all("]" not in c.text for c in out)


def test_stops_before_closers_the_suffix_holds(trained):
    prefix = CTX + "def beta(x):\n    return g(x, [1"
    (alone,) = trained.complete_text(prefix, Request(mode="line"))
    assert alone.text == ", 2])"
    (c,) = trained.complete_text(prefix, Request(mode="line"), suffix="])\n\n")
    assert c.text == ", 2"
    assert len(c.char_logprobs) == 3


def test_no_suggestion_inside_an_identifier(trained):
    assert trained.complete_text(CTX + "def bet", Request(mode="line"), suffix="a(x):\n") == []
    trained.open("doc", CTX + "def beta(x):\n")
    assert trained.complete("doc", len(CTX) + 6, Request(mode="line")) == []   # "def be|ta"
    assert trained.complete("doc", len(CTX) + 4, Request(mode="token"))        # "def |beta": fine


def test_no_trailing_whitespace(trained):
    prefix = CTX + "def alpha(x):"
    raw = trained.complete_text(prefix, Request(mode="free", max_chars=5))
    assert raw[0].text == "\n    "                              # what the model says
    assert trained.complete_text(prefix, Request(mode="block", max_chars=5)) == []   # whitespace only
    (c,) = trained.complete_text(prefix, Request(mode="block", max_chars=6))
    assert c.text == "\n    r"


def test_min_prob_hides_weak_suggestions(trained):
    prefix = CTX + "def beta(x):\n    return g("
    (c,) = trained.complete_text(prefix, Request(mode="line"))
    assert trained.complete_text(prefix, Request(mode="line", min_prob=min(1.0, c.prob * 1.01))) == []


def test_beam_returns_the_n_best_distinct(trained):
    out = trained.complete_text(CTX + "def ", Request(mode="token", decoder="beam", beam=6, n=4))
    texts = [c.text for c in out]
    assert len(texts) == len(set(texts)) >= 3
    assert set(texts) <= set(NAMES)
    assert [c.logprob for c in out] == sorted((c.logprob for c in out), reverse=True)


def test_sampling_is_reproducible_with_a_seed(trained):
    prefix = CTX + "def "
    for dec in ("temperature", "top-k", "top-p"):
        req = Request(mode="line", decoder=dec, temperature=3.0, n=5, seed=7)
        a, b = trained.complete_text(prefix, req), trained.complete_text(prefix, req)
        assert a == b
        other = trained.complete_text(prefix, Request(mode="line", decoder=dec, temperature=3.0, n=5, seed=8))
        assert [c.text for c in a] != [c.text for c in other]


def test_decoding_never_touches_the_document_state(trained):
    trained.open("s", CTX + "def gamma(x):\n    return g(")
    p = len(trained.text("s"))
    trained.prepare("s", p)
    before = [tuple(a.copy() for a in s) for s in trained._docs["s"].heads[trained.block_start(p)][1]]
    trained.complete("s", p, Request(mode="block", max_chars=200, decoder="beam", n=3))
    after = trained._docs["s"].heads[trained.block_start(p)][1]
    for a, b in zip(before, after):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
