"""The engine contract: documents, incremental states, bounded context, bad input, threads."""
import threading

import numpy as np
import pytest

from completer.engine import CancelToken, Cancelled, Completion, Engine, Request
from completer.errors import CompleterError

SRC = ("import os\n\n\ndef load(path):\n    with open(path) as f:\n        return f.read()\n\n\n"
       "class Session:\n    def __init__(self, url):\n        self.url = url\n") * 20


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return Engine.from_checkpoint(tiny_checkpoint, context=128)


def test_describe_and_completion_fields(engine, tiny_checkpoint):
    d = engine.describe()
    assert {"cell", "hidden", "layers", "embed", "params", "path", "vocab_size"} <= set(d)
    assert d["cell"] == "lstm" and d["hidden"] == 16 and d["path"] == str(tiny_checkpoint)
    (c,) = engine.complete_text("def f(x):\n    return ", Request(mode="line", max_chars=10))
    assert isinstance(c, Completion) and 0 < len(c.text) <= 10
    assert len(c.char_logprobs) == len(c.text)
    assert c.logprob == pytest.approx(sum(c.char_logprobs))
    assert c.prob == pytest.approx(np.exp(c.logprob))


def test_document_edits_track_text(engine):
    engine.open("u", "abc")
    engine.edit("u", 1, 2, "XY")
    engine.edit("u", 4, 4, "!")
    assert engine.text("u") == "aXYc!"
    engine.change("u", "new")
    assert engine.text("u") == "new"
    engine.close("u")
    with pytest.raises(CompleterError):
        engine.text("u")


def _state_now(engine, uri, p):
    engine.prepare(uri, p)
    doc = engine._docs[uri]
    return doc.heads[engine.block_start(p)][1]


@pytest.mark.parametrize("p", [0, 1, 63, 64, 65, 200, 255, 256, 300, len(SRC)])
def test_complete_equals_complete_text_whatever_the_history(engine, p):
    """The state at p depends on the text only: a cold read, a read after typing the text one
    character at a time, and a read after an edit in the middle all agree."""
    req = Request(mode="line", max_chars=20)
    cold = engine.complete_text(SRC[:p], req, suffix=SRC[p:])
    engine.open("typed", "")
    for i in range(p):
        engine.edit("typed", i, i, SRC[i])
        engine.prepare("typed", i + 1)
    assert engine.text("typed") == SRC[:p]
    engine.open("edited", SRC)
    engine.prepare("edited", len(SRC))
    engine.edit("edited", p // 2, p // 2 + 3, "zzz")
    engine.prepare("edited", len(SRC))
    engine.edit("edited", p // 2, p // 2 + 3, SRC[p // 2:p // 2 + 3])
    for uri in ("typed", "edited"):
        s_doc = _state_now(engine, uri, p)
        engine._scratch.set_text(SRC[:p])
        s_ref = engine._state_at(engine._scratch, p)
        for a, b in zip(s_doc, s_ref):
            for x, y in zip(a, b):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        # "typed" holds only SRC[:p]: nothing after the cursor
        assert engine.complete(uri, p, req) == (cold if uri == "edited" else engine.complete_text(SRC[:p], req))


def test_edit_keeps_states_before_it(engine):
    engine.open("k", SRC)
    engine.prepare("k", 620)  # reads from 512 (context 128)
    doc = engine._docs["k"]
    before = {k for k in doc.saved if k[1] <= 550}
    assert before and any(k[1] > 550 for k in doc.saved)
    engine.edit("k", 550, 551, "#")
    assert before <= set(doc.saved) and all(k[1] <= 550 for k in doc.saved)


def test_bounded_context_makes_a_10mb_document_fast(engine):
    import time

    big = "x = 1\n" * (10_000_000 // 6)
    t = time.perf_counter()
    engine.open("big", big)
    out = engine.complete("big", len(big), Request(mode="line", max_chars=5))
    engine.edit("big", len(big) // 2, len(big) // 2, "y")
    engine.complete("big", len(big) // 2 + 1, Request(mode="char"))
    assert time.perf_counter() - t < 5.0
    assert isinstance(out, list)
    engine.close("big")


@pytest.mark.parametrize("bad", [dict(mode="para"), dict(temperature=-0.5), dict(top_p=0.0),
                                 dict(n=0), dict(max_chars=0), dict(beam=0), dict(min_prob=2.0),
                                 dict(temperature=float("nan")), dict(seed=-1), dict(top_k="3")])
def test_bad_requests_raise_completer_error(engine, bad):
    with pytest.raises(CompleterError):
        engine.complete_text("x = ", Request(**bad))


def test_bad_cursor_and_unknown_decoder(engine):
    engine.open("d", "abc")
    for off in (-1, 4, 1.5, None):
        with pytest.raises(CompleterError):
            engine.complete("d", off, Request())
    with pytest.raises(CompleterError, match="unknown decoder"):
        engine.complete("d", 3, Request(decoder="no-such"))
    with pytest.raises(CompleterError):
        engine.complete("not-open", 0, Request())
    with pytest.raises(CompleterError):
        engine.edit("d", 2, 10, "x")


def test_empty_document_and_unknown_characters(engine):
    engine.open("e", "")
    out = engine.complete("e", 0, Request(mode="line", max_chars=5))
    assert all(isinstance(c, Completion) for c in out)
    # characters outside the vocabulary read as UNK, and UNK is never suggested
    out = engine.complete_text("s = 'héllo wörld ✓ 𝄞' + ", Request(mode="line", max_chars=40, n=3,
                                                                     decoder="temperature", seed=0))
    assert all("\ufffd" not in c.text for c in out)


def test_cancel(engine):
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        engine.complete_text("x = ", Request(mode="line"), cancel=tok)


def test_cancel_between_characters_leaves_the_document_usable(engine):
    class CancelAfter(CancelToken):
        """Cancelled from the k-th check on: as if the user typed while the request decoded."""
        def __init__(self, k):
            super().__init__()
            self.k = k

        @property
        def cancelled(self):
            self.k -= 1
            return self.k < 0

    engine.open("c", SRC)
    tok = CancelAfter(5)
    with pytest.raises(Cancelled):
        engine.complete("c", 300, Request(mode="free", max_chars=200), cancel=tok)
    assert tok.k == -1   # checked once per character, stopped at the first cancelled check
    assert engine.complete("c", 300, Request(mode="line")) == engine.complete_text(SRC[:300], Request(mode="line"),
                                                                                  suffix=SRC[300:])


def test_threads_share_an_engine(engine):
    engine.open("t", SRC)
    req = Request(mode="line", max_chars=15)
    expected = {p: engine.complete_text(SRC[:p], req, suffix=SRC[p:]) for p in (100, 300, 700)}
    errors = []

    def worker(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(20):
                p = int(rng.choice(list(expected)))
                assert engine.complete("t", p, req) == expected[p]
        except Exception as exc:  # reported below
            errors.append(exc)

    def typist():
        for i in range(200):
            engine.open(f"typing-{i % 3}", SRC[:i])
            engine.prepare(f"typing-{i % 3}", i)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(3)] + [threading.Thread(target=typist)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_budget_returns_the_continuation_so_far_cut_at_a_token_boundary(engine, monkeypatch):
    import time

    full = engine.complete_text(SRC[:300], Request(mode="free", max_chars=60))[0]
    assert not full.cut
    # a clock that advances 1 ms per reading: the k-th character is checked k ms after the request
    # came; the budget of 10.5 ms stops at the 10th check (one more 1 ms character would pass it)
    now = [1000.0]

    def clock():
        now[0] += 0.001
        return now[0]

    monkeypatch.setattr(time, "perf_counter", clock)
    out = engine.complete_text(SRC[:300], Request(mode="free", max_chars=60, budget_ms=10.5))
    monkeypatch.undo()
    expected = full.text[:9]
    while expected and (expected[-1].isalnum() or expected[-1] == "_"):
        expected = expected[:-1]   # never a half-written name
    if not expected:  # no token boundary yet: it went on to the first one
        k = next(k for k in range(10, len(full.text) + 1) if not (full.text[k - 1].isalnum() or full.text[k - 1] == "_"))
        expected = full.text[:k]
    assert [c.text for c in out] == [expected] and out[0].cut
    assert out[0].char_logprobs == full.char_logprobs[:len(expected)]
    # a budget that is not reached changes nothing
    roomy = engine.complete_text(SRC[:300], Request(mode="free", max_chars=60, budget_ms=600_000))[0]
    assert (roomy.text, roomy.cut) == (full.text, False)


@pytest.mark.parametrize("bad", [-1, "10", float("inf"), True])
def test_bad_budget_is_refused(engine, bad):
    with pytest.raises(CompleterError, match="budget_ms"):
        engine.complete_text("x = ", Request(budget_ms=bad))


def test_a_keystroke_reads_one_step_and_idle_catches_the_next_blocks_read_up(tiny_checkpoint):
    """prepare reads the cursor's own read; the read the next block starts from waits for idle(),
    so typing across block boundaries (with pauses) stays one step per character, and the states,
    hence the completions, are those of the text alone."""
    engine = Engine.from_checkpoint(tiny_checkpoint, context=32)     # blocks of 16 characters
    read = []
    net_read = engine.net.read
    engine.net.read = lambda state, ids: read.append(len(ids)) or net_read(state, ids)
    engine.open("k", "")
    for p, ch in enumerate(SRC[:120]):
        engine.edit("k", p, p, ch)
        read.clear()
        engine.prepare("k", p + 1)
        assert read == [1], (p, read)        # one step on the way to the suggestion
        read.clear()
        engine.idle()
        assert sum(read) <= 1, (p, read)     # and at most one more while the user pauses
    assert engine.complete("k", 120, Request(mode="line")) == engine.complete_text(SRC[:120], Request(mode="line"))
    # no pause at all: crossing into a block reads what the next block's read missed (a window)
    engine.open("n", "")
    for p, ch in enumerate(SRC[:120]):
        engine.edit("n", p, p, ch)
        engine.prepare("n", p + 1)
    assert engine.complete("n", 120, Request(mode="line")) == engine.complete_text(SRC[:120], Request(mode="line"))


def test_a_finished_line_is_the_memorys_to_read_in_the_pause(tiny_checkpoint):
    """A keystroke's prepare reads the network only; the memory reads the line the keystroke
    finished in the next pause (idle) or at the next completion, and reads it once: the same
    suggestions as reading it at once."""
    text = "import os\nimport sys\nimport re\nim"
    eager = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    eager.open("e", text)
    req = Request(mode="line", max_chars=20)
    want = eager.complete("e", len(text), req)
    lazy = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    lazy.open("k", "")
    for p, ch in enumerate(text):
        lazy.edit("k", p, p, ch)
        lazy.prepare("k", p + 1)
        if ch == "\n":
            assert lazy.memory.chars < p + 1         # not read on the keystroke...
            lazy.idle()
            assert lazy.memory.chars == p + 1        # ...but in the pause after it
    lazy.idle()
    assert lazy.memory.chars == text.rindex("\n") + 1  # the cursor's line is context, never history
    assert lazy.complete("k", len(text), req) == want
    assert lazy.memory.chars == eager.memory.chars
    # no pause at all: the completion reads what is due; an edit before it moves the mark back
    fast = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    fast.open("f", "")
    fast.edit("f", 0, 0, text + "x\n")
    fast.edit("f", len(text), len(text) + 2, "")
    assert fast.complete("f", len(text), req) == want
    assert fast.memory.chars == eager.memory.chars
