"""Decoders: the built-ins' choices on known distributions, beam search on a known tree, and a
plugin decoder registered for real through the registry."""
import numpy as np
import pytest

from completer.engine.decoders import Beam, Decoder, Greedy, Temperature, TopK, TopP
from completer.engine import Engine, Request
from completer.registry import registry

LP = np.log(np.array([0.5, 0.3, 0.15, 0.05]))


def draws(dec, req, k=4000, seed=0):
    rng = np.random.default_rng(seed)
    return np.bincount([dec.choose(LP, req, rng) for _ in range(k)], minlength=4) / k


def test_builtins_are_registered_by_name():
    for name, cls in [("greedy", Greedy), ("temperature", Temperature), ("top-k", TopK),
                      ("top-p", TopP), ("beam", Beam)]:
        assert registry.get("decoder", name) is cls


def test_greedy_and_zero_temperature_take_the_argmax():
    assert Greedy().choose(LP, Request(), None) == 0
    assert Temperature().choose(LP, Request(temperature=0.0), np.random.default_rng(0)) == 0


def test_temperature_follows_the_distribution():
    f = draws(Temperature(), Request(temperature=1.0))
    np.testing.assert_allclose(f, np.exp(LP), atol=0.03)
    sharp = draws(Temperature(), Request(temperature=0.25))
    assert sharp[0] > 0.85


def test_top_k_and_top_p_cut_the_tail():
    f = draws(TopK(), Request(top_k=2))
    assert f[2] == f[3] == 0
    np.testing.assert_allclose(f[:2], [0.5 / 0.8, 0.3 / 0.8], atol=0.03)
    f = draws(TopP(), Request(top_p=0.7))     # 0.5 + 0.3 reaches 0.7: the two first
    assert f[2] == f[3] == 0 and f[1] > 0.25
    f = draws(TopP(), Request(top_p=0.4))
    assert f[0] == 1.0


class TreeSearch:
    """A fake Search over a fixed table: next-char log-probs depend on the text so far; a
    hypothesis ends after 2 characters."""
    def __init__(self, table):
        self.table = table

    class H:
        def __init__(self, text, score, lps):
            self.text, self.score, self.lps, self.done = text, score, lps, len(text) == 2

    def root(self):
        return self.H("", 0.0, [])

    def check(self):
        pass

    def logprobs(self, hyps):
        return np.log(np.array([self.table[h.text] for h in hyps]))

    def extend(self, h, i, lp):
        return self.H(h.text + "ab"[i], h.score + lp, h.lps + [lp])


def test_beam_finds_what_greedy_misses():
    # greedy takes "a" (0.6) then at best 0.5: 0.30; "b" (0.4) then 0.9 gives 0.36
    table = {"": [0.6, 0.4], "a": [0.5, 0.5], "b": [0.9, 0.1]}
    best = Beam().decode(TreeSearch(table), Request(beam=2, n=1), None)[0]   # best first
    assert best.text == "ba"
    (g,) = Greedy().decode(TreeSearch(table), Request(), None)
    assert g.text in ("aa", "ab")
    out = Beam().decode(TreeSearch(table), Request(beam=4, n=3), None)
    assert [h.text for h in out[:3]] == ["ba", "aa", "ab"] or [h.text for h in out[:3]] == ["ba", "ab", "aa"]
    np.testing.assert_allclose(out[0].score, np.log(0.36))


def test_a_plugin_decoder_is_found_by_name(tiny_checkpoint):
    class AlwaysFirst(Decoder):
        """Picks character id 0 whatever the model says."""
        name = "always-first"

        def choose(self, lp, req, rng):
            return 0

    engine = Engine.from_checkpoint(tiny_checkpoint)
    registry.register("decoder", "always-first", AlwaysFirst)
    try:
        (c,) = engine.complete_text("x = ", Request(decoder="always-first", mode="free", max_chars=5))
        assert c.text == engine.vocab.char(0) * 5
    finally:
        registry.unregister("decoder", "always-first")
    with pytest.raises(Exception, match="unknown decoder"):
        engine.complete_text("x = ", Request(decoder="always-first"))


def test_a_broken_plugin_decoder_is_reported_by_name_not_a_traceback(tiny_checkpoint):
    from completer.errors import CompleterError

    class Raises(Decoder):
        name = "raises"

        def choose(self, lp, req, rng):
            raise ZeroDivisionError("plugin bug")

    def not_a_decoder():
        return None

    engine = Engine.from_checkpoint(tiny_checkpoint)
    registry.register("decoder", "raises", Raises)
    registry.register("decoder", "not-a-decoder", not_a_decoder)
    try:
        with pytest.raises(CompleterError, match="decoder 'raises' failed: ZeroDivisionError"):
            engine.complete_text("x = ", Request(decoder="raises"))
        with pytest.raises(CompleterError, match="'not-a-decoder' is not a completer.engine.decoders.Decoder"):
            engine.complete_text("x = ", Request(decoder="not-a-decoder"))
        assert engine.complete_text("x = ", Request(decoder="greedy", mode="free", max_chars=3))
    finally:
        registry.unregister("decoder", "raises")
        registry.unregister("decoder", "not-a-decoder")


def test_a_vanishing_temperature_is_the_argmax():
    rng = np.random.default_rng(0)
    assert all(Temperature().choose(LP, Request(temperature=1e-320), rng) == 0 for _ in range(50))
