"""The project memory's cache against crafted files (issue 23): unknown or huge tensors, wrong
dtypes and shapes, rows and positions out of range, non-finite numbers, metadata that is not JSON;
empty tables; owner-only files; and text typed but never saved, which must never reach it. Each
refusal is one reason, and the memory is untouched. tests/test_sanitizers.py runs this file under
AddressSanitizer and UBSan."""
import json
import os
import struct

import numpy as np
import pytest

from test_memory_hostile import TEXT, VOCAB, Log, small, state

from completer.engine import Engine, Request
from completer.memory import Memory, _kernel
from completer.memory.cache import Cache, CacheRefused


def saved(tmp_path, m=None, hashes=None) -> Cache:
    cache = Cache(tmp_path / "c" / "k.safetensors", "model")
    cache.save(m or small(), {"a.py": "1"} if hashes is None else hashes)
    return cache


def rewrite(path, edit_header=None, edit_tensors=None):
    """Rewrite a cache file's header (JSON index) and tensors (name -> array) as a hostile tool would."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    index = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = index.pop("__metadata__")
    tensors = {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in index.items()}
    if edit_tensors:
        edit_tensors(tensors)
    header = json.loads(meta["completer"])
    if edit_header:
        header = edit_header(header) or header
    meta["completer"] = header if isinstance(header, str) else json.dumps(header)
    out, body, off = {"__metadata__": meta}, b"", 0
    for k, (dt, shape, b) in tensors.items():
        out[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        body += b
        off += len(b)
    head = json.dumps(out).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + body)


def test_empty_tables_save_and_load(tmp_path):
    cache = saved(tmp_path, small(None), {})
    fresh = small(None)
    assert cache.load(fresh, {}) and fresh.chars == 0
    tiny = small("ab\n")                                     # a 3-character project
    cache = saved(tmp_path, tiny, {"a.py": "k"})
    again = small(None)
    assert cache.load(again, {"a.py": "k"}) and again.chars == 3


def test_the_cache_is_private_and_written_atomically(tmp_path):
    cache = saved(tmp_path)
    assert oct(os.stat(cache.path).st_mode & 0o777) == oct(0o600)
    assert oct(os.stat(cache.path.parent).st_mode & 0o777) == oct(0o700)
    assert os.listdir(cache.path.parent) == [cache.path.name]      # no temporary left behind
    os.chmod(cache.path, 0o666)
    with pytest.raises(CacheRefused, match="writable by other users"):
        cache.load(small(None), {"a.py": "1"})


def put(name, dtype, array):
    def edit(t):
        t[name] = (dtype, list(array.shape), array.tobytes())
    return edit


HOSTILE = {
    "unknown tensor": (None, put("extra", "U8", np.zeros(1 << 20, np.uint8)), "unknown tensor 'extra'"),
    "wrong dtype": (None, put("uni", "F32", np.zeros(len(VOCAB), np.float32)), "is F32, not F64"),
    "wrong shape": (None, put("uni", "F64", np.zeros(3, np.float64)), "wrong shape"),
    "rows out of range": (None, put("low.rows", "U32", np.array([1 << 20], np.uint32)), "wrong shape"),
    "history too long": (None, put("hist", "U16", np.zeros(1 << 11, np.uint16)), "history is longer"),
    "metadata not JSON": (lambda h: "{not json", None, "not JSON"),
    "NaN counters": (lambda h: h.__setitem__("counters", [float("nan"), 1, 2]), None, "counters"),
    "negative counter": (lambda h: h.__setitem__("counters", [-5, 1, 2]), None, "counters"),
    "counters not numbers": (lambda h: h.__setitem__("counters", ["a", 1, 2]), None, "counters"),
}


@pytest.mark.parametrize("case", list(HOSTILE) + ["NaN weights", "confidence -1e300", "symbol 0", "unsorted"])
def test_a_hostile_cache_is_refused_with_a_reason_and_nothing_changes(tmp_path, case):
    m = small()
    cache = saved(tmp_path, m)
    if case in HOSTILE:
        edit_header, edit_tensors, reason = HOSTILE[case]
    else:
        s = state(m)
        edit_header, reason = None, "memory state refused"
        if case == "NaN weights":
            w = s["weights"].copy()
            w[:] = np.nan
            edit_tensors = put("weights", "F32", w)
        elif case == "confidence -1e300":
            h = s["mhit"].copy()
            h[0] = -1e300
            edit_tensors = put("mhit", "F64", h)
        elif case == "unsorted":
            at = np.flatnonzero(s["match0"]).astype(np.uint32)[::-1].copy()
            edit_tensors, reason = put("match0.at", "U32", at), "out of order"
        else:
            high = s["high"].reshape(-1, 2 + _kernel.HIGH_SLOTS)
            rows = np.flatnonzero(high[:, 0]).astype(np.uint32)
            data = high[rows].copy()
            data[0, 2] &= 0xffff
            data[0, 2] |= 1
            edit_tensors = put("high", "U32", data)
    rewrite(cache.path, edit_header, edit_tensors)
    fresh = small(None)
    before = fresh.kernel.state()
    with pytest.raises(CacheRefused, match=reason):
        cache.load(fresh, {"a.py": "1"})
    assert fresh.kernel.state() == before


def test_a_refused_cache_costs_one_line_and_a_fresh_read_that_rewrites_it(tmp_path, tiny_checkpoint):
    from completer.memory.project import read_project

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text(TEXT)
    first = read_project(Engine.from_checkpoint(tiny_checkpoint, memory=True), [ws], Log())
    assert first.wait(30) and first.cache.exists()
    rewrite(first.cache.path, lambda h: h.__setitem__("counters", [float("inf"), 0, 0]))
    log = Log()
    second = read_project(Engine.from_checkpoint(tiny_checkpoint, memory=True), [ws], log)
    assert second.wait(30) and not second.from_cache and second.chars == len(TEXT)
    warnings = [line for level, line in log.lines if level == "warning"]
    assert len(warnings) == 1 and "refused" in warnings[0] and "counters" in warnings[0], log.lines
    third = read_project(Engine.from_checkpoint(tiny_checkpoint, memory=True), [ws], Log())
    assert third.wait(30) and third.from_cache


def test_the_cache_never_holds_text_typed_and_not_saved(tmp_path, tiny_checkpoint):
    """A document opened and completed while the project is read (for its cache): the cache holds
    the files on disk only; the live memory learns the typed text once the cache is written."""
    from completer.memory.project import read_project

    ws = tmp_path / "ws"
    ws.mkdir()
    filler = "".join(f"def helper_{i}(x):\n    return x * {i}\n\n" for i in range(8000))   # ~300 KB
    (ws / "big.py").write_text(filler)
    secret = "password = 'hunter2_never_saved'\nx = pass"
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    project = read_project(engine, [ws], Log())
    engine.open("file:///unsaved.py", secret)
    engine.complete("file:///unsaved.py", len(secret), Request(mode="char"))
    assert not project.done.is_set(), "the read ended first: the test proves nothing"
    assert project.wait(120) and project.chars == len(filler)
    loaded = Memory(engine.vocab)
    assert Cache(project.cache.path, project.cache.identity).load(loaded, {str(ws / "big.py"): _key(filler)})
    assert loaded.chars == len(filler)                                  # the file, nothing typed
    hist = np.frombuffer(loaded.kernel.state("hist"), np.uint16)[:loaded.chars]
    assert VOCAB.encode("hunter2").astype(np.uint16).tobytes() not in hist.tobytes()
    engine.complete("file:///unsaved.py", len(secret), Request(mode="char"))
    # typed text learnt now, in whole lines (the cursor's line "x = pass" is context only)
    assert engine.memory.chars == len(filler) + secret.rfind("\n") + 1


def _key(text):
    from completer.memory.project import _key as key

    return key(text)



def test_a_huge_unknown_tensor_is_refused_before_it_is_read(tmp_path):
    """The audit's 1.5 GB extra tensor behind a valid header (a sparse file here): refused on the
    header, in well under a second, without reading it (the file is read, never mapped)."""
    import resource
    import time

    cache = saved(tmp_path)
    huge = 1_500_000_000
    raw = cache.path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    index = json.loads(raw[8:8 + n])
    end = max(v["data_offsets"][1] for k, v in index.items() if k != "__metadata__")
    index["zz_huge"] = {"dtype": "U8", "shape": [huge], "data_offsets": [end, end + huge]}
    head = json.dumps(index).encode()
    head += b" " * (-len(head) % 8)
    cache.path.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n:])
    os.truncate(cache.path, 8 + len(head) + end + huge)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with pytest.raises(CacheRefused, match="unknown tensor 'zz_huge'"):
        cache.load(small(None), {"a.py": "1"})
    assert time.perf_counter() - t < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000      # KiB
    os.truncate(cache.path, 8 + len(head) + end + 10)                                  # declared past the end
    with pytest.raises(CacheRefused, match="outside the file"):
        cache.load(small(None), {"a.py": "1"})
