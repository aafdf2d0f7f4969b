"""A cache of a project's memory, so that a restart reads nothing it has read before.

    cache = Cache.for_project(model_identity, roots)       # $XDG_CACHE_HOME/completer/memory/KEY.safetensors
    state = cache.load(memory, hashes)                      # True if the memory now holds the cached read
    cache.save(memory, hashes)

The file is data only: safetensors (the kernel's tables, sparse: the buckets and positions in use)
and a JSON header (format, model identity, table sizes, and the content hash of every file read).
It is trusted only if all of those match what is being read now (a file changed, added or removed,
another model, other sizes: stale), and only after every table's shape has been checked; anything
else (a truncated, corrupt or foreign file) is a miss, and the caller reads the project again and
writes the cache anew.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

FORMAT = "completer-memory-2"        # 2: six match models, each key holding its 8 most recent occurrences
SPARSE = ("low", "high")                      # bucket tables: rows whose tag is set
POSITIONS = ("match0", "match1", "match2", "match3", "match4", "match5")  # position tables: entries set


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "completer" / "memory"


def model_identity(path) -> str:
    """The checkpoint as the cache knows it: path, size, modification time."""
    st = os.stat(path)
    return f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"


class Cache:
    def __init__(self, path: Path, identity: str):
        self.path, self.identity = path, identity

    @classmethod
    def for_project(cls, identity: str, roots) -> "Cache":
        key = hashlib.blake2b("\0".join([identity, *sorted(str(Path(r).resolve()) for r in roots)]).encode(
            "utf-8", "surrogatepass"), digest_size=12).hexdigest()
        return cls(cache_dir() / f"{key}.safetensors", identity)

    def _header(self, memory, hashes: dict) -> dict:
        return {"format": FORMAT, "model": self.identity, "sizes": memory.sizes, "vocab": memory.V,
                "files": hashes}

    def save(self, memory, hashes: dict) -> None:
        """Write the memory's tables (atomically); an OSError is the caller's to log.

        Each table's copy is dropped once its sparse form is made, and the file is written
        tensor by tensor (`_safetensors`), never as one bytes object: with a 10 MB project read,
        the save had peaked at 600 MB of RSS (the copy, the sparse tensors and safetensors' blob)."""
        from completer.model.checkpoint import atomic_write

        state = memory.kernel.state()
        counters = state.pop("counters")
        tensors = {}
        for name in list(state):
            view = state.pop(name)
            a = np.frombuffer(view, _dtype(name))
            if name in SPARSE:
                a = a.reshape(-1, _stride(name))
                rows = np.flatnonzero(a[:, 0]).astype(np.uint32)
                tensors[f"{name}.rows"], tensors[name] = rows, a[rows]
            elif name in POSITIONS:
                at = np.flatnonzero(a).astype(np.uint32)
                tensors[f"{name}.at"], tensors[name] = at, a[at]
            elif name == "hist":
                tensors[name] = a[:min(memory.chars, len(a))].copy()
            else:
                tensors[name] = a.copy()
            del a, view
        header = dict(self._header(memory, hashes), counters=list(counters))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, _safetensors(tensors, {"completer": json.dumps(header)}))

    def load(self, memory, hashes: dict) -> bool:
        """Put the cached read into `memory` if the cache is fresh and sound; False otherwise (a miss:
        nothing of the memory was changed)."""
        from safetensors import safe_open

        if not self.path.is_file():
            return False
        with safe_open(str(self.path), framework="numpy") as f:
            header = json.loads((f.metadata() or {}).get("completer", "{}"))
            if not isinstance(header, dict) or {k: header.get(k) for k in self._header(memory, hashes)} != \
                    self._header(memory, hashes):
                return False
            stored = {k: f.get_tensor(k) for k in f.keys()}
        current = memory.kernel.state()
        full = {}
        for name, view in current.items():
            if name == "counters":
                continue
            size = len(view) // np.dtype(_dtype(name)).itemsize
            a = np.zeros(size, _dtype(name))
            got = stored[name]
            if got.dtype != a.dtype:
                return False
            if name in SPARSE:
                a = a.reshape(-1, _stride(name))
                rows = stored[f"{name}.rows"]
                if got.shape != (len(rows), a.shape[1]) or (len(rows) and rows.max() >= len(a)):
                    return False
                a[rows] = got
            elif name in POSITIONS:
                at = stored[f"{name}.at"]
                if got.shape != at.shape or (len(at) and at.max() >= size):
                    return False
                a[at] = got
            elif name == "hist":
                if got.ndim != 1 or len(got) > size:
                    return False
                a[:len(got)] = got
            elif got.shape != a.shape:
                return False
            else:
                a = got
            full[name] = np.ascontiguousarray(a).reshape(-1)
        total, types, n = header["counters"]
        full["counters"] = (float(total), float(types), int(n))
        memory.kernel.load(full)
        return True


SAFETENSORS_DTYPES = {"uint32": "U32", "uint16": "U16", "float32": "F32", "float64": "F64"}


def _safetensors(tensors: dict, metadata: dict):
    """The safetensors file of `tensors` (1-D or 2-D C-contiguous arrays) as a sequence of
    buffers: the 8-byte header length, the JSON header (padded to 8 bytes), then each tensor's
    bytes in turn, as `safetensors.numpy.save` lays them out, without joining them."""
    index, offset = {"__metadata__": metadata}, 0
    for name, a in tensors.items():
        index[name] = {"dtype": SAFETENSORS_DTYPES[a.dtype.name], "shape": list(a.shape),
                       "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    head = json.dumps(index, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    yield len(head).to_bytes(8, "little")
    yield head
    for a in tensors.values():
        yield memoryview(np.ascontiguousarray(a)).cast("B")


def _dtype(name: str):
    return {"uni": np.float64, "mhit": np.float64, "mtry": np.float64, "weights": np.float32,
            "hist": np.uint16}.get(name, np.uint32)


def _stride(name: str) -> int:
    """Words per bucket: a tag, a total, then the slots."""
    from completer.memory import _kernel

    return 2 + (_kernel.LOW_SLOTS if name == "low" else _kernel.HIGH_SLOTS)
