"""Fuzzing the memory's kernel and its cache loader (hypothesis): whatever the calls, arrays,
states or cache files, the kernel and the loader either work or raise their one clear error, and
the memory still predicts a distribution afterwards. Run under AddressSanitizer and UBSan by
tests/test_sanitizers.py, where an out-of-bounds access is a failure even when it does not crash.
FUZZ_EXAMPLES (environment) sets the examples per test (default 60)."""
import json
import os
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from completer.memory import Memory, _kernel
from completer.memory.cache import Cache, CacheRefused
from completer.model.vocab import Vocab

VOCAB = Vocab([chr(c) for c in range(32, 127)] + ["\n"])
V = len(VOCAB)
SMALL = dict(low_log2=3, high_log2=4, history_log2=8, match_log2=8)
TEXT = "def frob(items):\n    return sum(i.price for i in items)\n\nfrob([])\nx = frob(y)\n" * 2
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
DTYPES = {"uni": np.float64, "mhit": np.float64, "mtry": np.float64, "weights": np.float32, "hist": np.uint16}
FIELDS = ["uni", "low", "high", "hist", "match0", "match1", "match2", "match3", "match4", "match5",
          "mhit", "mtry", "weights"]


def learnt() -> Memory:
    m = Memory(VOCAB, **SMALL)
    m.learn_text(TEXT)
    return m


def still_predicts(m: Memory) -> None:
    """After anything: a learn and a mixture that is a distribution."""
    m.learn_text("frob(")
    lp, s, inputs = m.mix(VOCAB.encode("x = fro"), np.full(V, -np.log(V), np.float32))
    assert abs(np.exp(lp.astype(np.float64)).sum() - 1) < 1e-4
    m.update(s, inputs, lp, VOCAB.id("b"))


ARRAYS = st.one_of(
    st.lists(st.integers(-3, V + 3), max_size=80).map(lambda x: np.array(x, np.int32)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=3 * V).map(
        lambda x: np.array(x, np.float32)),
    st.integers(0, 9 * V).map(lambda n: np.random.default_rng(n).normal(size=n).astype(np.float32)),
    st.sampled_from([np.zeros(V, np.float64), np.zeros(8 * V, np.float32), np.zeros(V, np.float32),
                     np.full(V, -np.inf, np.float32), b"abc", bytearray(12), None, 3, "x"]),
)


@FUZZ
@given(calls=st.lists(st.tuples(st.sampled_from(["learn", "mix", "update", "score", "set_weights", "state",
                                                 "load"]),
                                st.lists(st.one_of(ARRAYS, st.integers(-2, 2 ** 25)), max_size=5)),
                      max_size=8))
def test_any_calls_through_the_kernel_api(calls):
    m = learnt()
    k = m.kernel
    for name, args in calls:
        try:
            if name == "load":
                k.load(dict(zip(FIELDS + ["counters"], args)))
            elif name == "state":
                k.state(*[a for a in args if isinstance(a, str)][:1])
            else:
                getattr(k, name)(*args)
        except (ValueError, TypeError, KeyError, OverflowError, BufferError):
            pass
    still_predicts(m)


def state_of(m: Memory) -> dict:
    s = m.kernel.state()
    counters = s.pop("counters")
    out = {k: np.frombuffer(v, DTYPES.get(k, np.uint32)).copy() for k, v in s.items()}
    out["counters"] = counters
    return out


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(FIELDS), st.integers(0, 2 ** 20), st.integers(0, 2 ** 32 - 1)),
                      min_size=1, max_size=6),
       counters=st.one_of(st.none(), st.tuples(st.floats(), st.floats(), st.integers(0, 2 ** 64 - 1))))
def test_a_mutated_state_is_loaded_or_refused_never_trusted_blindly(edits, counters):
    m, target = learnt(), Memory(VOCAB, **SMALL)
    s = state_of(m)
    for name, where, value in edits:
        a = s[name]
        raw = a.view(np.uint8)
        i = where % len(raw)
        raw[i] = value & 0xff
        if name in ("low", "high") and value & 0x100:          # a whole slot word, symbol 0 included
            w = a.view(np.uint32)
            w[(where // 4) % len(w)] = value & 0xffff if value & 0x200 else value
    if counters is not None:
        s["counters"] = counters
    before = target.kernel.state()
    try:
        target.kernel.load(s)
    except (ValueError, OverflowError):
        assert target.kernel.state() == before                 # refused: nothing changed
    still_predicts(target)


def cache_file(tmp, m: Memory) -> Cache:
    cache = Cache(tmp / "k.safetensors", "model")
    cache.save(m, {"a.py": "k"})
    return cache


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 2 ** 24), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 2 ** 24)),
       header=st.one_of(st.none(), st.dictionaries(st.sampled_from(["counters", "format", "vocab", "sizes", "files"]),
                                                   st.one_of(st.integers(), st.floats(), st.text(max_size=5),
                                                             st.lists(st.floats(), max_size=4)), max_size=2)),
       extra=st.one_of(st.none(), st.tuples(st.sampled_from(["U8", "U32", "F64", "I64", "BF16"]),
                                            st.lists(st.integers(0, 70), min_size=1, max_size=3))))
def test_a_crafted_cache_file_is_loaded_or_refused(tmp_path_factory, flips, cut, header, extra):
    tmp = tmp_path_factory.mktemp("fuzz")
    cache = cache_file(tmp, learnt())
    raw = bytearray(cache.path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    if header is not None or extra is not None:
        index = json.loads(raw[8:8 + n])
        meta = json.loads(index["__metadata__"]["completer"])
        meta.update(header or {})
        index["__metadata__"]["completer"] = json.dumps(meta)
        body = bytes(raw[8 + n:])
        if extra is not None:
            dtype, shape = extra
            size = int(np.prod(shape)) * {"U8": 1, "U32": 4, "F64": 8, "I64": 8, "BF16": 2}[dtype]
            index["zz_extra"] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + size]}
            body += b"\x07" * size
        head = json.dumps(index).encode()
        head += b" " * (-len(head) % 8)
        raw = bytearray(struct.pack("<Q", len(head)) + head + body)
        n = len(head)
    for where, value in flips:                                  # bytes of the tensors' data
        if len(raw) > 8 + n:
            raw[8 + n + where % (len(raw) - 8 - n)] = value
    if cut is not None:
        raw = raw[:cut % (len(raw) + 1)]
    cache.path.write_bytes(bytes(raw))
    m = Memory(VOCAB, **SMALL)
    before = m.kernel.state()
    try:
        loaded = cache.load(m, {"a.py": "k"})
    except CacheRefused as exc:
        assert str(exc) and "\n" not in str(exc)
        loaded = False
    if not loaded:
        assert m.kernel.state() == before
    still_predicts(m)


def test_the_fuzzers_reach_both_outcomes():
    """The mutations are not all refused: a sound state and an untouched cache load."""
    m = learnt()
    target = Memory(VOCAB, **SMALL)
    target.kernel.load(state_of(m))
    assert target.chars == m.chars and _kernel.Memory is type(target.kernel)
