"""A cache of a project's memory, so that a restart reads nothing it has read before.

    cache = Cache.for_project(model_identity, roots)   # $XDG_CACHE_HOME/completer/memory/KEY.safetensors
    cache.load(memory, hashes)   # True: the memory now holds the cached read; False: none, or stale;
                                 # CacheRefused(reason): the file is unsound (the caller logs it)
    cache.save(memory, hashes)

What it holds: the memory's tables after reading the project's files as they are on disk, and
nothing else. The project reader saves it before the memory learns anything typed (the engine
holds typed text back while `Memory.reading` is set, completer.memory.project), so text a user
typed and never saved is never written here.

The file is data only: safetensors (the kernel's tables, sparse: the buckets and positions in use)
and a JSON header (format, model identity, table sizes, counters and the content hash of every
file read). It is trusted only if all of those match what is being read now (a file changed,
added or removed, another model, other sizes: stale, False). Anything else is refused before the
memory is touched, with the reason (CacheRefused): a file not owned by the user, metadata that is
not JSON, a tensor that is missing or unknown, a dtype or shape the tables do not have (checked
on the header, before any tensor is read: an extra 1.5 GB tensor costs nothing), rows or
positions out of range or out of order, non-finite or negative counters; the kernel then checks
every value a prediction indexes or divides by (`_kernel.Memory.load_field`). The file is written
atomically and readable by its owner only (0600, in a 0700 folder): it holds what was read of the
user's code. Saving and loading hold one table at a time beside the memory's own (and the file is
read, not mapped: completer.memory.tensors).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path

import numpy as np

FORMAT = "completer-memory-2"        # 2: six match models, each key holding its 8 most recent occurrences
SPARSE = ("low", "high")                      # bucket tables: rows whose tag is set
POSITIONS = ("match0", "match1", "match2", "match3", "match4", "match5")  # position tables: entries set
DTYPES = {"uni": np.float64, "mhit": np.float64, "mtry": np.float64, "weights": np.float32, "hist": np.uint16}
SAFETENSORS_DTYPES = {"uint32": "U32", "uint16": "U16", "float32": "F32", "float64": "F64"}


class CacheRefused(Exception):
    """The cache file is unsound; the message is the one-line reason."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "completer" / "memory"


def model_identity(path) -> str:
    """The checkpoint as the cache knows it: path, size, modification time."""
    st = os.stat(path)
    return f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _real(root) -> str:
    try:
        return os.path.realpath(root)
    except (OSError, ValueError):
        return os.path.abspath(root)


class Cache:
    def __init__(self, path: Path, identity: str):
        self.path, self.identity = path, identity

    @classmethod
    def for_project(cls, identity: str, roots) -> "Cache":
        key = hashlib.blake2b("\0".join([identity, *sorted(_real(r) for r in roots)]).encode(
            "utf-8", "surrogatepass"), digest_size=12).hexdigest()
        return cls(cache_dir() / f"{key}.safetensors", identity)

    def exists(self) -> bool:
        return self.path.is_file()

    def _header(self, memory, hashes: dict) -> dict:
        return {"format": FORMAT, "model": self.identity, "sizes": memory.sizes, "vocab": memory.V,
                "files": hashes}

    # ---- writing --------------------------------------------------------------------------
    def save(self, memory, hashes: dict) -> None:
        """Write the memory's tables (atomically, 0600); an OSError is the caller's to log.

        Bounded in memory: one table is copied at a time (`state(name)`), and its sparse form is
        written in slices straight from that copy, never gathered. The safetensors header needs
        every tensor's shape first, so the tables are gone through twice: once to count the rows
        and positions in use, once to write them (nothing else writes the memory meanwhile: the
        reader saves before the engine may feed it typed text; a count that changed anyway is an
        error, and the cache is not written). With a full memory this peaked at ~170 MB above the
        tables (every sparse copy at once) and the process at 338 MB reading /; now ~35 MB above."""
        from completer.model.checkpoint import atomic_write
        from completer.memory.tensors import write

        kernel = memory.kernel
        names = list(kernel.field_sizes())
        chars = memory.chars
        shapes = {}
        for name in names:                                   # pass 1: the shapes
            a = _table(kernel, name)
            if name in SPARSE:
                n = int(np.count_nonzero(a[:, 0]))
                shapes[f"{name}.rows"], shapes[name] = (n,), (n, a.shape[1])
            elif name in POSITIONS:
                n = int(np.count_nonzero(a))
                shapes[f"{name}.at"], shapes[name] = (n,), (n,)
            else:
                shapes[name] = (min(chars, len(a)),) if name == "hist" else a.shape
            del a
        total, types, n = kernel.state("counters")
        header = dict(self._header(memory, hashes), counters=[total, types, n])
        _private_dir(self.path.parent)
        dtypes = {k: np.dtype(np.uint32) if "." in k else np.dtype(DTYPES.get(k, np.uint32)) for k in shapes}
        atomic_write(self.path, write(shapes, dtypes, {"completer": json.dumps(header)},
                                      _sparse_bytes(kernel, names, shapes)), private=True)

    # ---- reading --------------------------------------------------------------------------
    def load(self, memory, hashes: dict) -> bool:
        """Put the cached read into `memory` if the cache is there, fresh and sound. False: no
        cache, or a stale one (nothing changed). CacheRefused: an unsound file (nothing changed).

        Bounded in memory: every table is checked first (the kernel's `load_field` without
        copying), then each is copied in; either pass builds one full table at a time from its
        sparse tensors (the whole state at once had been ~100 MB beside the tables). So `memory`
        must be one that nothing else writes meanwhile (the project reader's, before it reads)."""
        from completer.memory.tensors import FormatError, TensorFile

        try:
            st = os.stat(self.path)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):
            raise CacheRefused("not a regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise CacheRefused("owned by another user")
        if st.st_mode & 0o022:
            raise CacheRefused("writable by other users")
        try:
            f = TensorFile(self.path)
        except FormatError as exc:  # a truncated or foreign file
            raise CacheRefused(f"not a cache file: {exc}") from None
        with f:
            header = _metadata(f)
            if {k: header.get(k) for k in self._header(memory, hashes)} != self._header(memory, hashes):
                return False
            counters = _counters(header.get("counters"))
            kernel = memory.kernel
            sizes = kernel.field_sizes()
            _check_names(f, sizes)
            confidences = {}
            for name, table in _tables(f, sizes):       # pass 1: every table checked, none copied
                try:
                    kernel.load_field(name, table, counters, False)
                except ValueError as exc:
                    raise CacheRefused(str(exc)) from None
                if name in ("mhit", "mtry"):
                    confidences[name] = table
            if not (confidences["mhit"] <= confidences["mtry"]).all():
                raise CacheRefused("memory state refused: a match confidence count is out of range")
            weights = kernel.get_weights()
            try:                                         # pass 2: copied in, one table at a time
                last = {k: sizes[k] for k in sorted(sizes, key=lambda k: k == "mhit")}   # after mtry
                for name, table in _tables(f, last):
                    kernel.load_field(name, table, counters)
            except Exception as exc:  # the file changed under us: the memory is emptied again
                kernel.clear()
                kernel.set_weights(np.frombuffer(weights, np.float32))
                raise CacheRefused(f"changed while it was loaded ({_one_line(exc)})") from None
        return True


def _one_line(exc) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _metadata(f) -> dict:
    try:
        header = json.loads((f.metadata() or {}).get("completer", "{}"))
    except (ValueError, RecursionError):
        raise CacheRefused("its metadata is not JSON") from None
    if not isinstance(header, dict):
        raise CacheRefused("its metadata is not a JSON object")
    return header


def _counters(raw) -> tuple:
    """(uni_total, uni_types, n): two finite numbers >= 0 and a count (the kernel checks they
    agree with the tables)."""
    if (not isinstance(raw, list) or len(raw) != 3 or any(isinstance(x, bool) for x in raw)
            or not all(isinstance(x, (int, float)) for x in raw) or not isinstance(raw[2], int)):
        raise CacheRefused("its counters are not three numbers")
    total, types, n = raw
    if not (math.isfinite(total) and math.isfinite(types) and 0 <= total and 0 <= types and 0 <= n < 2 ** 63):
        raise CacheRefused("its counters are out of range or not finite")
    return float(total), float(types), n


def _check_names(f, sizes: dict) -> None:
    """Every tensor save writes is there, with its dtype, and nothing else (checked on the header:
    an unknown tensor is never read)."""
    expected = set()
    for name in sizes:
        expected.add(name)
        if name in SPARSE:
            expected.add(f"{name}.rows")
        elif name in POSITIONS:
            expected.add(f"{name}.at")
    keys = set(f.keys())
    if keys != expected:
        extra, missing = sorted(keys - expected), sorted(expected - keys)
        raise CacheRefused(f"unknown tensor {extra[0]!r}" if extra else f"no tensor {missing[0]!r}")
    for k in keys:
        base = k.split(".")[0]
        want = "U32" if k != base else SAFETENSORS_DTYPES[np.dtype(DTYPES.get(base, np.uint32)).name]
        got = f.dtype(k)
        if got != want:
            raise CacheRefused(f"tensor {k!r} is {got}, not {want}")


def _tables(f, sizes: dict):
    """(name, full table) for every table, one at a time, from the file's tensors (each shape is
    checked on the header before the tensor is read); a lazy sequence, so that only one full
    table (and its sparse form) is in memory at a time."""
    shape = f.shape

    for name, nbytes in sizes.items():
        dtype = np.dtype(DTYPES.get(name, np.uint32))
        size = nbytes // dtype.itemsize
        if name in SPARSE:
            stride = _stride(name)
            n_rows = shape(f"{name}.rows")
            if len(n_rows) != 1 or n_rows[0] > size // stride or shape(name) != (n_rows[0], stride):
                raise CacheRefused(f"tensor {name!r} has the wrong shape")
            rows = _increasing(f.get_tensor(f"{name}.rows"), size // stride, name)
            a = np.zeros((size // stride, stride), dtype)
            a[rows] = f.get_tensor(name)
            del rows
        elif name in POSITIONS:
            n_at = shape(f"{name}.at")
            if len(n_at) != 1 or n_at[0] > size or shape(name) != n_at:
                raise CacheRefused(f"tensor {name!r} has the wrong shape")
            at = _increasing(f.get_tensor(f"{name}.at"), size, name)
            a = np.zeros(size, dtype)
            a[at] = f.get_tensor(name)
            del at
        elif name == "hist":
            n_hist = shape(name)
            if len(n_hist) != 1 or n_hist[0] > size:
                raise CacheRefused("the history is longer than the memory's")
            a = np.zeros(size, dtype)
            a[:n_hist[0]] = f.get_tensor(name)
        else:
            if shape(name) != (size,):
                raise CacheRefused(f"tensor {name!r} has the wrong shape")
            a = np.ascontiguousarray(f.get_tensor(name))
        yield name, a.reshape(-1)
        del a


def _increasing(idx: np.ndarray, bound: int, name: str) -> np.ndarray:
    """Row or position indices as save writes them: strictly increasing, below `bound`."""
    if len(idx) and (idx[-1] >= bound or (len(idx) > 1 and not (np.diff(idx.astype(np.int64)) > 0).all())):
        raise CacheRefused(f"the rows or positions of {name!r} are out of range or out of order")
    return idx


def _private_dir(path: Path) -> None:
    """The cache's folder, made readable by its owner only (0700) if it is ours."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(path)
    if stat.S_IMODE(st.st_mode) != 0o700 and (not hasattr(os, "getuid") or st.st_uid == os.getuid()):
        os.chmod(path, 0o700)


def _table(kernel, name: str) -> np.ndarray:
    """A copy of one kernel table (2-D for the bucket tables: one row per bucket)."""
    a = np.frombuffer(kernel.state(name), DTYPES.get(name, np.uint32))
    return a.reshape(-1, _stride(name)) if name in SPARSE else a


SLICE = 1 << 16     # rows or positions gathered at a time while writing


def _sparse_bytes(kernel, names, shapes):
    from completer.memory.tensors import raw

    """The tensors' bytes in the order of `shapes` (pass 2 of Cache.save), one table at a time."""
    for name in names:
        a = _table(kernel, name)
        if name in SPARSE or name in POSITIONS:
            idx = np.flatnonzero(a[:, 0] if name in SPARSE else a).astype(np.uint32)
            if len(idx) != shapes[name][0]:
                raise OSError(f"the memory changed while its cache was written ({name})")
            yield raw(idx)
            for i in range(0, len(idx), SLICE):
                yield raw(a[idx[i:i + SLICE]])
        else:
            yield raw(a[:shapes[name][0]])
        del a


def _stride(name: str) -> int:
    """Words per bucket: a tag, a total, then the slots."""
    from completer.memory import _kernel

    return 2 + (_kernel.LOW_SLOTS if name == "low" else _kernel.HIGH_SLOTS)
