"""The project memory: its kernel's contract, the mixture in the engine, the project reader."""
import threading

import numpy as np
import pytest

from completer.engine import Engine, Request
from completer.memory import Memory
from completer.memory.project import Project
from completer.memory.store import INPUTS, SETS, load_weights, save_weights
from completer.errors import CompleterError
from completer.model.vocab import Vocab

NAME = "frobnicate_widget_total"
DEFINES = f"def {NAME}(items):\n    return sum(item.price for item in items)\n\n\nprint({NAME}([]))\n"
TYPING = "import os\n\n\ndef main(order):\n    total = frob"


class Log:
    def __init__(self):
        self.lines = []

    def info(self, msg, *args):
        self.lines.append(msg % args)

    warning = info


@pytest.fixture(scope="module")
def shipped():
    """The shipped model: the memory has to beat what a trained network already knows."""
    return Engine.from_checkpoint()


def test_a_name_defined_in_another_file_is_completed_with_memory_and_not_without(shipped, tmp_path):
    (tmp_path / "widgets.py").write_text(DEFINES)
    shipped.set_memory(False)
    without = shipped.complete_text(TYPING, Request(mode="line"))
    shipped.set_memory(True)
    try:
        project = Project(shipped.memory, [tmp_path], Log()).start()
        assert project.wait(30) and project.files == 1
        with_memory = shipped.complete_text(TYPING, Request(mode="line"))
    finally:
        shipped.set_memory(False)
    assert with_memory and with_memory[0].text.startswith(NAME[4:]), with_memory
    assert not any(NAME[4:] in c.text for c in without), without


def test_memory_off_is_the_network_exactly(tiny_checkpoint):
    plain = Engine.from_checkpoint(tiny_checkpoint)
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    engine.memory.learn_text(DEFINES * 3)
    req = Request(mode="line", max_chars=20, decoder="beam", n=3)
    assert engine.complete_text(TYPING, req) != plain.complete_text(TYPING, req)  # else this could not fail
    engine.set_memory(False)
    assert engine.memory is None
    for prefix in (TYPING, "x = 1\n", ""):
        for dec in ("greedy", "beam"):
            r = Request(mode="line", max_chars=20, decoder=dec, n=3)
            assert engine.complete_text(prefix, r) == plain.complete_text(prefix, r)


def test_the_mixture_is_a_distribution_that_never_offers_unk(shipped):
    memory = Memory(shipped.vocab)
    memory.learn_text(DEFINES * 2)
    net = shipped.net.logprobs(shipped.net.start)[0]
    for ctx in ("", "f", "def frob", DEFINES[:-3], "\x00\u2603 unknown"):
        lp, s, inputs = memory.mix(shipped.vocab.encode(ctx), net)
        assert lp.dtype == np.float32 and lp.shape == (len(shipped.vocab),)
        assert np.exp(lp.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)
        assert lp[shipped.vocab.unk] == -np.inf and 0 <= s >> 16 < SETS and inputs.shape == (INPUTS, len(shipped.vocab))


def test_logits_or_log_probabilities_mix_the_same(shipped):
    """The engine may pass the network's logits (unnormalised) instead of its log-probabilities:
    the kernel normalises its network row, so neither the mixture nor what the mixer learns moves."""
    memories = [Memory(shipped.vocab), Memory(shipped.vocab)]
    net = shipped.net.logprobs(shipped.net.start)[0]
    text = DEFINES + TYPING
    ids = shipped.vocab.encode(text)
    for m in memories:
        m.learn_text(DEFINES)
    for t in range(len(DEFINES), len(text)):
        (a, sa, ia), (b, sb, ib) = memories[0].mix(ids[:t], net), memories[1].mix(ids[:t], net + 3.7)
        unk = shipped.vocab.unk
        assert sa == sb and a[unk] == b[unk] == -np.inf and np.abs(np.delete(a, unk) - np.delete(b, unk)).max() < 1e-5
        memories[0].update(sa, ia, a, ids[t])
        memories[1].update(sb, ib, b, ids[t])
    assert np.abs(memories[0].weights - memories[1].weights).max() < 1e-5
    assert np.abs(memories[0].weights - Memory(shipped.vocab).weights).max() > 1e-3   # it did learn


def test_match_models_weigh_the_earlier_occurrences_by_how_far_back_they_agree(shipped):
    """The identifier model follows the occurrence of its key whose context agrees the furthest
    back, not merely the latest; the short match model follows the latest (rows 2 and 4 of inputs)."""
    vocab = shipped.vocab
    memory = Memory(vocab)
    memory.learn_text("    return session_setting\n\n\ny = session.get(url)\n")
    uniform = np.full(len(vocab), -np.log(len(vocab)), np.float32)
    _, _, inputs = memory.mix(vocab.encode("def f():\n    return session"), uniform)
    short, ident = (vocab.char(int(np.argmax(inputs[j]))) for j in (2, 4))
    assert (short, ident) == (".", "_")


def test_the_word_models_key_begins_where_an_identifier_begins(shipped):
    """The two-word model (inputs row 7) keys "a.get(" on whole identifiers, so "ba.get(y)" is not
    an occurrence of it; the short match model (row 2) sees only characters and follows "ba.get(y)"."""
    vocab = shipped.vocab
    memory = Memory(vocab)
    memory.learn_text("a.get(x)\nba.get(y)\n")
    uniform = np.full(len(vocab), -np.log(len(vocab)), np.float32)
    _, _, inputs = memory.mix(vocab.encode("q = a.get("), uniform)
    assert [vocab.char(int(np.argmax(inputs[j]))) for j in (2, 7)] == ["y", "x"]


def test_every_decoder_predicts_through_the_mixture(shipped):
    """A name the network cannot know, read by the memory, shows up whatever the decoder."""
    shipped.set_memory(True)
    try:
        shipped.memory.learn_text(DEFINES * 4)
        for dec in ("greedy", "beam", "temperature", "top-k", "top-p"):
            req = Request(mode="token", decoder=dec, n=3, seed=0, temperature=0.3)
            got = shipped.complete_text("x = frob", req)
            assert any(c.text.startswith("nicate") for c in got), (dec, got)
    finally:
        shipped.set_memory(False)


def test_generated_text_is_never_counted(tiny_checkpoint):
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    engine.complete_text(TYPING, Request(mode="line", max_chars=40))
    read = engine.memory.chars
    assert read == TYPING.rfind("\n") + 1                        # the prefix's whole lines, as typed
    for _ in range(3):                                           # the same prefix again: nothing new
        engine.complete_text(TYPING, Request(mode="block", max_chars=200, decoder="beam", n=3))
    assert engine.memory.chars == read


def test_documents_feed_the_memory_as_typed(tiny_checkpoint):
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    engine.open("a", "abc\ndef\n")
    engine.complete("a", 4, Request(mode="char"))
    assert engine.memory.chars == 4                              # text before the cursor only
    engine.complete("a", 6, Request(mode="char"))
    assert engine.memory.chars == 4                              # not the cursor's line: "de" is context
    engine.edit("a", 8, 8, "ghi")
    engine.complete("a", 11, Request(mode="char"))
    assert engine.memory.chars == 8                              # "def\n", once its newline ended it
    engine.edit("a", 2, 3, "X")                                  # an edit before what was read
    engine.complete("a", 3, Request(mode="char"))
    assert engine.memory.chars == 8                              # the mark moves back to 2; line 0 unread
    engine.complete("a", 11, Request(mode="char"))
    assert engine.memory.chars == 14                             # read again from the edit on: 2..8
    engine.open("b", DEFINES, read=True)                         # a project file as read from disk
    engine.complete("b", len(DEFINES), Request(mode="char"))
    assert engine.memory.chars == 14


def test_the_tables_stay_bounded_however_much_is_read(tiny_checkpoint):
    vocab = Vocab([chr(c) for c in range(32, 127)] + ["\n"])
    memory = Memory(vocab, low_log2=4, high_log2=6, history_log2=10, match_log2=12)
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdef_ (),\n"), 50_000)) + DEFINES
    memory.learn_text(text)                                      # 50x the history, 100x the buckets
    assert memory.chars == len(text)
    lp, _, _ = memory.mix(vocab.encode("def frob"), np.full(len(vocab), -np.log(len(vocab)), np.float32))
    assert np.isfinite(lp[:-1]).all() and np.exp(lp.astype(np.float64)).sum() == pytest.approx(1, abs=1e-5)
    assert vocab.char(int(np.argmax(lp))) == "n"                 # the recent text is still matched
    with pytest.raises(ValueError):
        memory.kernel.learn(np.array([len(vocab)], np.int32))   # an id past the vocabulary
    with pytest.raises(ValueError):
        Memory(vocab, high_log2=40)


def test_reading_while_completing_from_another_thread(tiny_checkpoint, tmp_path):
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    for i in range(20):
        (tmp_path / f"m{i}.py").write_text(DEFINES.replace("frob", f"frob{i}") * 20)
    project = Project(engine.memory, [tmp_path], Log()).start()
    errors = []

    def typing():
        try:
            for k in range(200):
                engine.complete_text(TYPING + str(k), Request(mode="line", max_chars=10))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    t = threading.Thread(target=typing)
    t.start()
    t.join(120)
    assert project.wait(60) and not errors and project.files == 20


def test_a_background_read_pauses_while_a_prediction_runs(tiny_checkpoint, monkeypatch):
    """Predictions first: the project reader's learn waits between chunks while a completion
    runs (each of a line's mix calls waited for a chunk of the read: 70-90 ms keystrokes), but at
    most PAUSE seconds a chunk, so a frontend that completes without a break never stops it."""
    from completer.memory import store

    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    memory = engine.memory
    ids = engine.vocab.encode(DEFINES * 20)                    # ~2,000 characters: 8 chunks
    monkeypatch.setattr(store, "PAUSE", 30.0)                 # (a loaded machine's delays are no pause)
    with memory.predicting():
        memory.learn(ids[:300])                              # the engine's own feeding never waits
        assert memory.chars == 300
        reader = threading.Thread(target=memory.learn, args=(ids,), kwargs={"background": True})
        reader.start()
        reader.join(0.3)
        assert memory.chars == 300 and reader.is_alive()     # paused before its first chunk
        with memory.predicting():                            # nested completions: still paused
            pass
        reader.join(0.2)
        assert memory.chars == 300
    reader.join(5)
    assert not reader.is_alive() and memory.chars == 300 + len(ids)
    monkeypatch.setattr(store, "PAUSE", 0.01)
    with memory.predicting():                                # held throughout: PAUSE a chunk, then on
        t = threading.Thread(target=memory.learn, args=(ids,), kwargs={"background": True})
        t.start()
        t.join(5)
        assert not t.is_alive() and memory.chars == 300 + 2 * len(ids)
    assert engine.complete_text(TYPING, Request(mode="line", max_chars=10)) is not None
    assert memory._predicting == 0                          # complete_text took and gave back its turn


def test_project_skips_what_training_skips_and_rereads_changes(tiny_checkpoint, tmp_path):
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    (tmp_path / "a.py").write_text(DEFINES)
    (tmp_path / "bin.py").write_bytes(b"\x00\x01binary")
    (tmp_path / "latin.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.py").write_text("secret = 1\n")
    log = Log()
    project = Project(engine.memory, [tmp_path], log).start()
    assert project.wait(30) and project.files == 1 and project.chars == len(DEFINES)
    assert "binary" in log.lines[0] and "not UTF-8" in log.lines[0] and "hidden" in log.lines[0]
    assert project.knows(DEFINES) and not project.knows(DEFINES + " ")
    (tmp_path / "a.py").write_text(DEFINES + "frobnicate_more = 2\n")
    project.reread(tmp_path / "a.py")                                       # queued, read by the worker
    assert project.wait(30) and project.chars == len(DEFINES) + len("frobnicate_more = 2\n")  # only what changed
    project.reread(tmp_path / "a.py")                                       # unchanged: nothing
    assert project.wait(30) and project.chars == len(DEFINES) + len("frobnicate_more = 2\n")
    project.reread(tmp_path / "gone.py")
    assert project.wait(30) and "not read again" in log.lines[-1]


def test_a_vanishing_workspace_is_logged_and_completion_goes_on(tiny_checkpoint, tmp_path):
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    log = Log()
    project = Project(engine.memory, [tmp_path / "missing"], log).start()
    assert project.wait(30) and project.files == 0 and "reading stopped" in log.lines[-1]
    assert engine.complete_text("x = ", Request(mode="line", max_chars=5)) is not None


def test_starting_weights_round_trip_and_bad_files(tmp_path, tiny_checkpoint):
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    w = np.random.default_rng(0).normal(size=(SETS, INPUTS)).astype(np.float32)
    save_weights(tmp_path / "m.mixer.json", w, {"fitted_on": ["x.py"]})
    assert np.allclose(load_weights(tmp_path / "m.mixer.json"), w, atol=1e-5)
    assert load_weights(tmp_path / "none.json") is None
    for bad in ("{", '{"weights": [[1, 2]]}', '{"weights": "x"}', "[" * 5000 + "]" * 5000):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(CompleterError):
            load_weights(tmp_path / "bad.json")
    assert engine.memory.weights.shape == (SETS, INPUTS)


def _mix(engine, text):
    return engine.memory.mix(engine.vocab.encode(text), engine.net.logprobs(engine.net.start)[0])[0]


def test_cache_round_trip_stale_and_corrupt(tiny_checkpoint, tmp_path):
    from completer.memory.project import read_project

    (tmp_path / "a.py").write_text(DEFINES)
    (tmp_path / "b.py").write_text(DEFINES.replace("frob", "grob") * 3)
    first = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    p1 = read_project(first, [tmp_path], Log())
    assert p1.wait(30) and not p1.from_cache and p1.cache.path.is_file()

    second = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    p2 = read_project(second, [tmp_path], Log())
    assert p2.wait(30) and p2.from_cache and p2.files == 2 and second.memory.chars == first.memory.chars
    for ctx in ("def frob", "x = grobnicate_w", DEFINES[:40]):
        assert np.array_equal(_mix(first, ctx), _mix(second, ctx))
    assert p2.knows(DEFINES)

    (tmp_path / "a.py").write_text(DEFINES + "more = 1\n")          # stale: a file changed
    third = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    p3 = read_project(third, [tmp_path], Log())
    assert p3.wait(30) and not p3.from_cache and third.memory.chars == first.memory.chars + 9

    for garbage in (b"\x00" * 10, b"\xff" * 5000, p1.cache.path.read_bytes()[:300]):
        p1.cache.path.write_bytes(garbage)                           # corrupt: read again, one line
        log = Log()
        fourth = Engine.from_checkpoint(tiny_checkpoint, memory=True)
        p4 = read_project(fourth, [tmp_path], log)
        assert p4.wait(30) and not p4.from_cache and fourth.memory.chars == third.memory.chars
        assert sum("refused" in line for line in log.lines) == 1, log.lines
    again = read_project(Engine.from_checkpoint(tiny_checkpoint, memory=True), [tmp_path], Log())
    assert again.wait(30) and again.from_cache                       # the cache was written anew
