"""The project memory against what an audit threw at it (issue 23): misuse of the kernel, crafted
states, hostile workspaces, a REPL context that grows without end (the cache's cases are in
test_memory_cache.py). Each case is refused in one clear line (or read safely) and the memory goes
on working. tests/test_sanitizers.py runs this file under AddressSanitizer and UBSan."""
import os
import threading

import numpy as np
import pytest

from completer.engine import Engine
from completer.memory import Memory, _kernel
from completer.memory.project import Project
from completer.model.vocab import Vocab

VOCAB = Vocab([chr(c) for c in range(32, 127)] + ["\n"])
SMALL = dict(low_log2=4, high_log2=6, history_log2=10, match_log2=10)
TEXT = "def frobnicate(items):\n    return sum(item.price for item in items)\n\nfrobnicate([])\n" * 3


class Log:
    def __init__(self):
        self.lines = []

    def _add(self, level, msg, *args):
        self.lines.append((level, msg % args))

    def info(self, msg, *args):
        self._add("info", msg, *args)

    def warning(self, msg, *args):
        self._add("warning", msg, *args)

    def debug(self, msg, *args):
        self._add("debug", msg, *args)


def small(text=TEXT) -> Memory:
    m = Memory(VOCAB, **SMALL)
    if text:
        m.learn_text(text)
    return m


def uniform():
    return np.full(len(VOCAB), -np.log(len(VOCAB)), np.float32)


def state(m) -> dict:
    """The kernel's state as writable numpy arrays."""
    s = m.kernel.state()
    counters = s.pop("counters")
    out = {k: np.frombuffer(v, {"uni": np.float64, "mhit": np.float64, "mtry": np.float64,
                                "weights": np.float32, "hist": np.uint16}.get(k, np.uint32)).copy() for k, v in s.items()}
    out["counters"] = counters
    return out


# ---- the kernel ------------------------------------------------------------------------------
def test_use_before_init_raises_for_every_method():
    m = _kernel.Memory.__new__(_kernel.Memory)
    ids, f = np.zeros(3, np.int32), np.zeros(10, np.float32)
    for call in (m.prefault, m.state, lambda: m.state("low"), lambda: m.load(m.state()), m.get_weights,
                 lambda: m.set_weights(f), lambda: m.learn(ids), lambda: m.mix(ids, f, f, f),
                 lambda: m.update(0, f, f, 0), lambda: m.score(ids, 0, f, f), m.field_sizes, m.clear,
                 lambda: m.load_field("uni", f, (0.0, 0.0, 0))):
        with pytest.raises(RuntimeError, match="not initialised"):
            call()
    assert m.chars == 0


def test_a_second_init_is_refused_and_changes_nothing():
    m = small()
    before = m.kernel.state()
    lp = m.mix(VOCAB.encode("def frob"), uniform())[0]
    for args in ((len(VOCAB), 0, bytes(len(VOCAB))), (2, 0, bytes(2)), (len(VOCAB), 0, bytes([200] * len(VOCAB)))):
        with pytest.raises(RuntimeError, match="already initialised"):
            m.kernel.__init__(*args)
    assert m.kernel.state() == before
    assert np.array_equal(m.mix(VOCAB.encode("def frob"), uniform())[0], lp)


def test_a_failed_init_can_be_retried():
    m = _kernel.Memory.__new__(_kernel.Memory)
    with pytest.raises(ValueError):
        m.__init__(10, 0, bytes(10), history_log2=99)
    m.__init__(10, 0, bytes(10), **SMALL)
    m.learn(np.arange(10, dtype=np.int32))
    assert m.chars == 10


def test_class_bytes_past_7_are_refused():
    classes = bytearray(len(VOCAB))
    classes[5] = 8
    with pytest.raises(ValueError, match="class 8 of id 5"):
        _kernel.Memory(len(VOCAB), 0, bytes(classes))


def test_non_finite_inputs_are_refused_and_the_weights_stay_finite():
    m = small()
    ctx = VOCAB.encode("def frob")
    for bad in (np.nan, np.inf):
        net = uniform()
        net[3] = bad
        with pytest.raises(ValueError, match="NaN"):
            m.mix(ctx, net)
    lp, s, inputs = m.mix(ctx, uniform())
    for poison in ("inputs", "out"):
        i, o = inputs.copy(), lp.copy()
        (i.reshape(-1) if poison == "inputs" else o)[7] = np.nan
        with pytest.raises(ValueError, match="not what mix wrote"):
            m.update(s, i, o, 5)
    for w in (np.nan, np.inf, 1e30):
        weights = m.weights
        weights[0, 0] = w
        with pytest.raises(ValueError):
            m.kernel.set_weights(weights)
    with pytest.raises(ValueError):
        m.update(s & 0xffff, inputs, lp, 5)            # no row of the third table
    assert np.isfinite(m.weights).all()
    with pytest.raises(TypeError, match="int32 array|aligned"):   # a view at an odd offset
        m.kernel.learn(np.frombuffer(b"\0" * 17, np.int32, count=4, offset=1))


@pytest.mark.parametrize("case", [
    "symbol 0 with a count", "symbol past V", "bucket total", "untagged bucket", "history id >= V",
    "position past n", "NaN weight", "huge weight", "hits above tries", "confidence -1e300",
    "NaN counter", "inf counter", "negative counter", "types disagree", "NaN unigram", "wrong size"])
def test_a_crafted_state_is_refused_and_the_memory_unchanged(case):
    m = small()
    s = state(m)
    total, types, n = s["counters"]
    high = s["high"].reshape(-1, 2 + _kernel.HIGH_SLOTS)
    row = int(np.flatnonzero(high[:, 0])[0])
    slot = 2 + int(np.flatnonzero(high[row, 2:])[0])
    if case == "symbol 0 with a count":       # ngram_predict wrote p[-1]
        high[row, slot] = high[row, slot] & 0xffff
    elif case == "symbol past V":
        high[row, slot] = ((len(VOCAB) + 1) << 16) | (high[row, slot] & 0xffff)
    elif case == "bucket total":
        high[row, 1] += 1
    elif case == "untagged bucket":
        high[row, 0] = 0                       # counts in a bucket no context can find
    elif case == "history id >= V":           # verify read cls out of bounds
        s["hist"][0] = len(VOCAB)
    elif case == "position past n":
        s["match0"][0] = n + 5
    elif case == "NaN weight":
        s["weights"][3] = np.nan
    elif case == "huge weight":
        s["weights"][3] = 1e30
    elif case == "hits above tries":
        s["mhit"][0] = s["mtry"][0] + 1
    elif case == "confidence -1e300":
        s["mhit"][0] = -1e300
    elif case == "NaN counter":
        s["counters"] = (float("nan"), types, n)
    elif case == "inf counter":
        s["counters"] = (float("inf"), types, n)
    elif case == "negative counter":
        s["counters"] = (-5.0, types, n)
    elif case == "types disagree":
        s["counters"] = (total, types + 1, n)
    elif case == "NaN unigram":
        s["uni"][4] = np.nan
    elif case == "wrong size":
        s["hist"] = s["hist"][:-1]
    before = m.kernel.state()
    with pytest.raises(ValueError, match="memory state"):
        m.kernel.load(s)
    assert m.kernel.state() == before
    m.mix(VOCAB.encode("frob"), uniform())


def test_fields_load_one_at_a_time_checked_and_clear_empties():
    a, b = small(), small(None)
    s, counters = state(a), a.kernel.state("counters")
    for name in ("uni", "high", "hist", "match0"):
        b.kernel.load_field(name, s[name], counters, False)              # checked, not copied
    assert b.chars == 0
    bad = s["hist"].copy()
    bad[1] = len(VOCAB)
    with pytest.raises(ValueError, match="history holds an id"):
        b.kernel.load_field("hist", bad, counters)
    with pytest.raises(ValueError, match="no field"):
        b.kernel.load_field("extra", bad, counters)
    with pytest.raises(ValueError, match="wrong size"):
        b.kernel.load_field("hist", bad[:-1], counters)
    with pytest.raises(ValueError, match="match position"):
        b.kernel.load_field("match0", s["match0"], (counters[0], counters[1], 0))
    assert b.chars == 0
    for name in sorted(s, key=lambda k: k == "mhit"):
        if name != "counters":
            b.kernel.load_field(name, s[name], counters)
    assert b.kernel.state() == a.kernel.state()
    weights = b.weights
    b.kernel.clear()
    assert b.chars == 0 and b.kernel.state() == Memory(VOCAB, weights=weights, **SMALL).kernel.state()
    b.mix(VOCAB.encode("frob"), uniform())


def test_a_sound_state_loads_and_predicts_the_same():
    a, b = small(), small(None)
    b.kernel.load(state(a))
    for ctx in ("", "def frob", TEXT[:50]):
        assert np.array_equal(a.mix(VOCAB.encode(ctx), uniform())[0], b.mix(VOCAB.encode(ctx), uniform())[0])


# ---- the reader ------------------------------------------------------------------------------
def test_an_empty_workspace_reads_nothing_silently(tmp_path, tiny_checkpoint):
    from completer.memory.project import read_project

    for ws in (tmp_path / "empty", tmp_path / "tiny"):
        ws.mkdir()
    (tmp_path / "tiny" / "t.py").write_text("x=1")                      # 3 characters
    log = Log()
    p = read_project(Engine.from_checkpoint(tiny_checkpoint, memory=True), [tmp_path / "empty"], log)
    assert p.wait(30) and p.files == 0
    assert [level for level, _ in log.lines] in ([], ["debug"]), log.lines
    log = Log()
    p = read_project(Engine.from_checkpoint(tiny_checkpoint, memory=True), [tmp_path / "tiny"], log)
    assert p.wait(30) and p.files == 1 and p.cache.exists()
    assert not any(level == "warning" for level, _ in log.lines), log.lines


def test_links_never_leave_the_workspace(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("outside_name = 1\n")
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "a.py").write_text(TEXT)
    (ws / "to_outside").symlink_to(outside)
    (ws / "root").symlink_to("/")
    (ws / "secret_link.py").symlink_to(outside / "secret.py")
    (ws / "pkg" / "loop").symlink_to(ws)                                # inside, a loop
    (ws / "same.py").symlink_to(ws / "pkg" / "a.py")                    # inside, a duplicate
    log = Log()
    p = Project(small(None), [ws], log).start()
    assert p.wait(30) and p.files == 1 and p.chars == len(TEXT)
    summary = next(line for _, line in log.lines if "skipped" in line)
    assert "outside the folder" in summary and "symlink loop" in summary, summary


def test_the_walk_stops_at_the_cap(tmp_path, monkeypatch):
    """Files are read as the walk reaches them, and the walk stops at the cap: of 50 files, the
    five that fit are read, and the sixth (that does not) is the last one opened."""
    from completer import discovery

    for i in range(50):
        (tmp_path / f"m{i:02}.py").write_text(TEXT)
    opened = []
    real = discovery.read_source
    monkeypatch.setattr(discovery, "read_source", lambda path, *a: (opened.append(path), real(path, *a))[1])
    log = Log()
    p = Project(small(None), [tmp_path], log, max_chars=len(TEXT) * 5).start()
    assert p.wait(30) and p.files == 5 and len(opened) == 6
    assert any(level == "warning" and "at most" in line for level, line in log.lines)


def test_a_folder_whose_name_is_not_utf8_is_read(tmp_path):
    from completer.server.handlers import uri_path

    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    os.mkdir(raw)
    with open(raw + b"/m.py", "w") as f:
        f.write(TEXT)
    uri = "file://" + "".join(chr(b) if b < 128 and chr(b).isalnum() or chr(b) in "/-_." else f"%{b:02X}"
                              for b in raw)
    path = uri_path(uri)
    assert os.fsencode(path) == raw
    p = Project(small(None), [path], Log()).start()
    assert p.wait(30) and p.files == 1


@pytest.mark.parametrize("uri, reason", [
    ("file:///tmp/a%00b", "NUL"), ("file://otherhost/tmp/x.py", "another host"), ("file:x.py", "absolute")])
def test_uris_that_name_no_local_file_are_refused_with_a_reason(uri, reason):
    from completer.server.handlers import uri_path

    with pytest.raises(ValueError, match=reason):
        uri_path(uri)
    assert uri_path("file://localhost/tmp/x.py") == "/tmp/x.py" and uri_path("untitled:1") is None


def test_rereads_never_wait_for_the_read(tmp_path):
    """reread() only queues: while the worker holds the memory busy, 2,000 calls return at once."""
    (tmp_path / "a.py").write_text(TEXT)
    m = small(None)
    p = Project(m, [tmp_path], Log())
    gate = threading.Event()
    real = p._read_all
    p._read_all = lambda: (gate.wait(30), real())
    p.start()
    import time

    t = time.perf_counter()
    for i in range(2000):
        p.reread(tmp_path / "a.py")
        p.reread(tmp_path / f"new{i % 7}.py")
    assert time.perf_counter() - t < 1.0 and not p.done.is_set()
    (tmp_path / "new3.py").write_text("quux_gadget = 3\n")
    gate.set()
    assert p.wait(30) and p.files == 2 and p.chars == len(TEXT) + len("quux_gadget = 3\n")


# ---- the REPL, IPython and ptpython context ----------------------------------------------------
def test_the_repl_context_stays_bounded_and_nothing_is_read_twice(tiny_checkpoint):
    """Hostile cells (IPython's and ptpython's go through the same Session): the context keeps its
    last lines only, the engine document follows, and the memory never reads the kept part again."""
    from completer.repl.session import KEEP_CONTEXT, MAX_CONTEXT, URI, Session

    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    session = Session(engine)
    cell = "".join(f"value_{i} = compute({i})\n" for i in range(400))      # ~9 KB
    session.submit(cell)
    session.complete("x = ", 4)
    assert engine.memory.chars == len(cell)                         # the cell ("x = ", the cursor's line, is context)
    for k in range(40):                                              # ~360 KB submitted
        session.submit(cell.replace("value", f"v{k}"))
        assert len(session.context) <= MAX_CONTEXT
        session.complete("x = ", 4)
        assert engine.text(URI) == session.context + "x = "
    assert KEEP_CONTEXT <= len(session.context) <= MAX_CONTEXT and session.context.startswith("v")
    total = len(cell) + sum(len(cell.replace("value", f"v{k}")) for k in range(40))
    assert engine.memory.chars == total                              # each line read once
    session.submit("y" * 5_000_000)                                  # one huge cell: cut inside it
    assert len(session.context) <= MAX_CONTEXT
    assert session.complete("", 0) is not None and len(engine.text(URI)) <= MAX_CONTEXT
