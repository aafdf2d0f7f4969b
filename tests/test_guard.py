"""The repetition guard (completer.engine.guard): its rule on strings, and every decoder through the
engine on a network that can only loop (greedy, the samplers, beam, a plugin decoder with its own
search loop, and a plugin that builds its hypotheses without Search.extend)."""
import numpy as np
import pytest

from completer.engine import Engine, Request
from completer.engine.decoders import Decoder
from completer.engine.guard import Guard, cut_loop, has_loop
from completer.engine.search import Hyp
from completer.registry import registry

TABLE = [  # the issue's prompts and the loops that reached clients
    ("def add(a, b", "add(a, badd(a, badd(a, b"),
    ("for i in range(", "range(range(range(range("),
    ("class Foo:\n    def __init__(self, name, value", ", value, value, value, value"),
    ("if __name__ ", "__name__ __name__ __name__ "),
    ("self.assertEqual(", "self.assertEqual(self.assertEqual(self.assertEqual("),
    ("class Session:\n    def get(self, url", ", url, url, url, url, url"),
]


@pytest.mark.parametrize("context,loop", TABLE)
def test_the_issues_loops_are_cut_before_they_repeat(context, loop):
    assert has_loop(loop, context)
    cut = cut_loop(context, loop)
    assert not has_loop(cut, context) and loop.startswith(cut)
    # the first copy is the context's own: nothing of the repetition is kept
    assert cut == ""


def test_a_loop_begun_in_the_continuation_keeps_its_first_copy():
    assert cut_loop("x = ", "foo(), foo(), foo(), foo()") == "foo(),"   # the run begins at " foo(),"
    assert cut_loop("", "abababab") == "ab"


@pytest.mark.parametrize("context,text", [
    ("x = [0, 0, 0", ", 0, 0]"),                    # the context shows the repetition
    ("# ", "-" * 40),                                 # one repeated character is no unit
    ("class A:\n    def f(self):\n", "        " * 3 + "pass"),
    ("def f(self, a", "):\n        return a"),
    ("self.name = name\n        self.", "value = value"),
    ("", "ab ab"),                                    # two copies are not yet a loop
])
def test_what_is_not_a_loop_is_left_alone(context, text):
    assert not has_loop(text, context)
    assert cut_loop(context, text) == text


def test_the_guard_follows_one_character_at_a_time_and_copies_independently():
    g = Guard("z = ")
    for ch in "xy, xy, xy":
        assert g.push(ch) is None
    other = g.copy()
    assert g.push(",") == 3                 # " xy," three times (the context's blank first): "xy," kept
    assert other.n == 10 and other.push(")") is None


class CycleNet:
    """A stand-in for the engine's Net whose next character is CYCLE[chars read % len]: every
    decoder can only produce CYCLE over and over (the state is the count of characters read)."""
    CYCLE = "ab, "

    def __init__(self, vocab):
        self.ids = [vocab.id(c) for c in self.CYCLE]
        self.V = len(vocab)
        self.start = [(np.zeros((1, 1), np.float32),)]

    def step(self, ids, state):
        return [(state[0][0] + 1,)]

    def read(self, state, ids):
        return [(state[0][0] + len(ids),)]

    def logits(self, state):
        n = state[-1][0][:, 0].astype(int)                                   # (B,)
        z = np.full((len(n), self.V), -12.0, np.float32)
        z[np.arange(len(n)), [self.ids[k % len(self.ids)] for k in n]] = 8.0
        z[:, -1] = -np.inf                                                   # UNK
        return z

    def logprobs(self, state):
        z = self.logits(state)
        return z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)


@pytest.fixture()
def looping(tiny_checkpoint):
    engine = Engine.from_checkpoint(tiny_checkpoint)
    engine.net = CycleNet(engine.vocab)
    return engine


CONTEXT = "def f(x):\n    return "     # 22 characters: the cycle's phase there is 22 % 4 = 2


@pytest.mark.parametrize("decoder,extra", [
    ("greedy", {}), ("temperature", {"temperature": 0.7, "n": 3}), ("top-k", {"top_k": 3, "n": 3}),
    ("top-p", {"top_p": 0.9, "n": 3}), ("beam", {"beam": 4, "n": 3}),
])
@pytest.mark.parametrize("mode", ["line", "block", "free"])
def test_no_decoder_lets_a_loop_through(looping, decoder, extra, mode):
    out = looping.complete_text(CONTEXT, Request(mode=mode, decoder=decoder, max_chars=60, seed=1, **extra))
    assert out, "the first copy of the unit is still a suggestion"
    cycle = CycleNet.CYCLE * 20
    for c in out:
        assert not has_loop(c.text, CONTEXT), c.text
        if decoder != "beam":   # cut after one copy of the unit, not left to run to max_chars
            assert len(c.text) < 8 and any(cycle[k:].startswith(c.text) for k in range(4)), c.text
    # (beam prunes the looping hypotheses: what remains takes the network's unlikely detours)


def test_a_plugin_decoder_with_its_own_search_loop_is_guarded(looping):
    class Lookahead(Decoder):
        """A plugin search: extends every live hypothesis by its two best characters, keeps one."""
        name = "lookahead"
        deterministic = True

        def decode(self, search, req, rng):
            hyp = search.root()
            while not hyp.done:
                search.check()
                lp = search.logprobs([hyp])[0]
                best = [search.extend(hyp, int(i), lp[i]) for i in np.argsort(-lp)[:2]]
                hyp = max(best, key=lambda h: h.score)
            return [hyp]

    registry.register("decoder", "lookahead", Lookahead)
    try:
        (c,) = looping.complete_text(CONTEXT, Request(mode="line", decoder="lookahead", max_chars=60))
        assert not has_loop(c.text, CONTEXT) and len(c.text) == 4 and c.text in CycleNet.CYCLE * 3
    finally:
        registry.unregister("decoder", "lookahead")


def test_hypotheses_made_without_extend_are_checked_once_finished(looping):
    class Handmade(Decoder):
        """A plugin that builds its answer itself: the engine's last line of defence cuts it."""
        name = "handmade"
        deterministic = True

        def decode(self, search, req, rng):
            ids = [looping.vocab.id(c) for c in "foo(), foo(), foo(), foo()"]
            root = search.root()
            return [Hyp(ids, [-0.1] * len(ids), -0.1 * len(ids), root.state, root.stopper, keep=len(ids))]

    registry.register("decoder", "handmade", Handmade)
    try:
        (c,) = looping.complete_text("x = ", Request(mode="line", decoder="handmade"))
        assert c.text == "foo(),"
    finally:
        registry.unregister("decoder", "handmade")
