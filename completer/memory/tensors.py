"""The project memory cache's file format, safetensors, written and read in pieces.

    write(shapes, dtypes, metadata, data) -> the file as a sequence of buffers (for atomic_write)
    with TensorFile(path) as f: f.metadata(), f.keys(), f.dtype(k), f.shape(k), f.get_tensor(k)

The layout is safetensors' (an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the bytes), so `safetensors.safe_open` reads these files
too. It is read here with plain reads (`os.pread`) instead: `safe_open` maps the file, and every
page of it a load touches stays in the process's RSS while it is open (a 153 MB cache of / took the
process to 362 MB). Reading one tensor costs its own size only, and nothing is read before the
header has been checked: dtypes known, shapes of non-negative integers whose size matches the byte
range, every range inside the file (so a header that declares 1.5 GB costs nothing).
"""
from __future__ import annotations

import json
import os
import stat

import numpy as np

DTYPES = {"U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "F32": np.float32, "F64": np.float64}
NAMES = {np.dtype(t).name: k for k, t in DTYPES.items()}
MAX_HEADER = 100 << 20      # bytes of JSON header at most (the files' hashes: ~100 bytes per file)


class FormatError(ValueError):
    """Not a safetensors file this reader accepts (the message is the one-line reason)."""


def write(shapes: dict, dtypes: dict, metadata: dict, data):
    """A safetensors file as a sequence of buffers: the header declaring each tensor of `shapes`
    (name -> shape) with its dtype (name -> numpy dtype) in order, then `data` (their bytes, in the
    same order, in as many pieces as it likes), without joining them. Raises OSError if `data`
    does not hold the bytes declared (the caller's atomic write then leaves the old file)."""
    index, offset = {"__metadata__": metadata}, 0
    for name, shape in shapes.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtypes[name].itemsize
        index[name] = {"dtype": NAMES[dtypes[name].name], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(index, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    yield len(head).to_bytes(8, "little")
    yield head
    written = 0
    for chunk in data:
        if chunk.nbytes:
            written += chunk.nbytes
            yield chunk
    if written != offset:
        raise OSError(f"the tensors hold {written} bytes, not the {offset} declared")


def raw(a: np.ndarray) -> memoryview:
    """An array's bytes (a memoryview of a view cast to "B" fails when it is empty)."""
    return memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


class TensorFile:
    def __init__(self, path):
        try:  # never blocks (a FIFO swapped in), never follows a link swapped in for the file
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise FormatError(f"cannot be opened ({exc.strerror})") from None
        try:
            self._parse()
        except BaseException:
            os.close(self.fd)
            raise

    def __enter__(self) -> "TensorFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _parse(self) -> None:
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError("not a regular file")
        size = st.st_size
        head = os.pread(self.fd, 8, 0)
        if len(head) < 8:
            raise FormatError("shorter than a safetensors header")
        n = int.from_bytes(head, "little")
        if n > min(MAX_HEADER, size - 8):
            raise FormatError("its header length is past the end of the file")
        try:
            index = json.loads(os.pread(self.fd, n, 8))
        except (ValueError, RecursionError):
            raise FormatError("its header is not JSON") from None
        if not isinstance(index, dict):
            raise FormatError("its header is not a JSON object")
        meta = index.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise FormatError("its metadata is not a map of strings")
        self._meta, self._index, base = meta, {}, 8 + n
        for name, entry in index.items():
            if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
                raise FormatError(f"tensor {name[:80]!r} has no dtype this reader knows")
            shape, offsets = entry.get("shape"), entry.get("data_offsets")
            if (not isinstance(shape, list) or len(shape) > 4
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
                raise FormatError(f"tensor {name[:80]!r} has no valid shape")
            if (not isinstance(offsets, list) or len(offsets) != 2
                    or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
                raise FormatError(f"tensor {name[:80]!r} has no valid byte range")
            dtype = np.dtype(DTYPES[entry["dtype"]])
            a, b = offsets
            if not 0 <= a <= b or base + b > size or b - a != int(np.prod(shape, dtype=object)) * dtype.itemsize:
                raise FormatError(f"tensor {name[:80]!r} has a byte range outside the file or of the wrong size")
            self._index[name] = (entry["dtype"], tuple(shape), base + a, b - a)

    def metadata(self) -> dict:
        return self._meta

    def keys(self):
        return self._index.keys()

    def dtype(self, name: str) -> str:
        return self._index[name][0]

    def shape(self, name: str) -> tuple:
        return self._index[name][1]

    def get_tensor(self, name: str) -> np.ndarray:
        """The tensor, read into a new array (its bytes only)."""
        dtype, shape, at, nbytes = self._index[name]
        out = np.empty(shape, DTYPES[dtype])
        view, done = raw(out), 0
        while done < nbytes:
            got = os.preadv(self.fd, [view[done:]], at + done)
            if got <= 0:
                raise FormatError("the file ended while a tensor was read")
            done += got
        return out
