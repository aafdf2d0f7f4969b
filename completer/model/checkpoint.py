"""Checkpoint I/O: safetensors tensors + JSON metadata in the same file. Data only, never pickle.

A checkpoint holds everything needed to rebuild the model without the trainer (nanoGPT's habit):
  metadata["completer"] = JSON {"format": 1, "config": ModelConfig, "vocab": [...chars],
                                "dtype": "float32"|"float16", "train": {...}, "metrics": {...}}
Loading verifies the format version, the config, the vocabulary and every tensor's name, shape,
dtype and byte range on the header alone (the expected shapes come from the cells' shape rules,
never from building the model), so a truncated file, a foreign safetensors file, a lying config, a
FIFO or a dtype NumPy lacks (BF16, F8_*) is refused with one clear line (CheckpointError) before a
single weight is allocated, never a traceback, hang or huge allocation. Writing is atomic: temp file, fsync, rename.
"""
from __future__ import annotations

import json
import math
import os
import signal
import stat
from pathlib import Path

import numpy as np

from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig, weight_count
from completer.model.vocab import UNK, Vocab

FORMAT = 1
KEY = "completer"
DEFAULT_NAME = "default.safetensors"
BEST, LAST = "best.safetensors", "last.safetensors"
DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}  # safetensors' names; data is little-endian


class CheckpointError(CompleterError):
    pass


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}


def atomic_write(path: Path, data, private: bool = False) -> None:
    """Write `data` (bytes, or an iterable of buffers written in turn, so that a large file need
    not be one bytes object first) to `path` so that a crash at any instant leaves the old file
    or the new one. private: the file stays readable by its owner only (0600, as mkstemp makes
    it), as the project memory's cache (it holds what was read of the user's files).

    The stop signals are held back while the temporary file exists (delivered right after), so a
    second Ctrl-C or SIGTERM during a save neither tears it nor leaves the temporary behind."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        _write_replace(Path(path), data, private)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    _sync_dir(Path(path))


def _write_replace(path: Path, data, private: bool = False) -> None:
    import tempfile  # (imported here: only writers need it, and it costs a start 8 ms)

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            for chunk in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _sync_dir(path: Path) -> None:
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(path, model: CharModel, vocab: Vocab, train: dict | None = None, metrics: dict | None = None,
         dtype: str = "float32") -> Path:
    from safetensors.numpy import save as st_save

    meta = {"format": FORMAT, "config": model.config.as_dict(), "vocab": vocab.chars, "dtype": dtype,
            "train": train or {}, "metrics": metrics or {}}
    tensors = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in model.params.items()}
    data = st_save(tensors, metadata={KEY: json.dumps(meta)})
    atomic_write(Path(path), data)
    return Path(path)


def default_path() -> Path:
    import completer.checkpoints as shipped  # a folder beside this module (importlib.resources costs 7 ms)

    return Path(shipped.__file__).parent / DEFAULT_NAME


def named(name: str) -> Path | None:
    """checkpoints/NAME.safetensors shipped in the package, for a bare NAME (no folder, no suffix)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or Path(name).suffix:
        return None
    p = default_path().parent / f"{name}.safetensors"
    return p if p.is_file() else None


def shipped_names() -> list[str]:
    """The names `--model NAME` accepts: the package's checkpoints."""
    return sorted(p.name.removesuffix(".safetensors") for p in default_path().parent.glob("*.safetensors"))


def resolve(path=None) -> Path:
    """A checkpoint file, a run directory (its best checkpoint), the name of a checkpoint shipped in
    the package's checkpoints folder (`requests`), or None (the shipped default model)."""
    if path is None or str(path) == "":
        p = default_path()
        if not p.is_file():
            raise CheckpointError(f"the shipped model is missing ({p}); pass --model CHECKPOINT")
        return p
    p = Path(path).expanduser()
    if not p.exists() and named(str(path)) is not None:  # `--model requests`: a shipped checkpoint by name
        return named(str(path))
    if p.is_dir():
        for name in (BEST, LAST):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p} is a directory without {BEST} or {LAST}")
    if not p.exists():
        raise CheckpointError(f"no such checkpoint: {p} (shipped by name: {', '.join(shipped_names())})")
    if not p.is_file():  # a FIFO or a device would block the first read forever
        raise CheckpointError(f"{p}: not a regular file")
    return p


def _open(path: Path):
    """(binary file, size) of a regular file. O_NONBLOCK makes opening a FIFO return at once
    (a plain open waits for a writer) so that fstat can refuse it: no race with resolve's check."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), st.st_size


def _json(raw, what: str, path: Path):
    try:
        return json.loads(raw)
    except RecursionError:  # json's C scanner gives up on ~1,000 levels of nesting
        raise CheckpointError(f"{path}: {what} is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: {what} is not valid JSON") from None


def _read(path: Path, whole: bool) -> tuple[dict, int, int, bytes | None]:
    """(safetensors header, data start offset, file size, the whole file if asked) of one read."""
    f, size = _open(path)
    with f:
        try:
            data = f.read(size + 1) if whole else f.read(8)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
        if len(data) < 8:
            raise CheckpointError(f"{path}: not a checkpoint (file too short)")
        if whole and len(data) != size:
            raise CheckpointError(f"{path}: the file changed while it was read")
        n = int.from_bytes(data[:8], "little")
        if n <= 1 or n > min(size - 8, 100_000_000):
            raise CheckpointError(f"{path}: not a safetensors checkpoint (bad header length)")
        raw = data[8:8 + n] if whole else f.read(n)
    header = _json(raw, "the safetensors header", path)
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors checkpoint (its header is not an object)")
    return header, 8 + n, size, data if whole else None


def _check_tensors(path: Path, header: dict, data_bytes: int, config: ModelConfig) -> dict:
    """{name: (numpy dtype, shape, begin, end)} of the header's tensors, each of the config's
    shape and a supported dtype, together covering the data exactly: all checked on the header
    alone, so a lie is refused before a byte of weights is allocated."""
    entries = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(e, dict) and isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in e["shape"])
                and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in e["data_offsets"])):
            raise CheckpointError(f"{path}: corrupt safetensors header (entry of tensor {name!r:.60})")
        if e["dtype"] not in DTYPES:
            raise CheckpointError(f"{path}: unsupported dtype {e['dtype']:.20} in tensor {name:.60} "
                                  f"(completer reads {' and '.join(DTYPES)})")
        entries[name] = (DTYPES[e["dtype"]], tuple(e["shape"]), *e["data_offsets"])
    n_tensors, weights = weight_count(config)
    if 2 * weights > data_bytes:  # float16, the smallest storage
        raise CheckpointError(f"{path}: its config needs more weights than the file holds")
    if n_tensors != len(entries):
        raise CheckpointError(f"{path}: {len(entries)} tensors, a {config.cell} model of "
                              f"{config.layers} layers has {n_tensors}")
    expected = CharModel(config, params={}).expected_shapes()
    if set(entries) != set(expected):
        missing, extra = sorted(set(expected) - set(entries)), sorted(set(entries) - set(expected))
        raise CheckpointError(f"{path}: tensors do not match a {config.cell} model "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    end = 0
    for name, (dtype, shape, begin, stop) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if shape != expected[name]:
            raise CheckpointError(f"{path}: tensor {name} has shape {shape}, expected {expected[name]}")
        if begin != end or stop - begin != math.prod(shape) * np.dtype(dtype).itemsize:
            raise CheckpointError(f"{path}: corrupt safetensors header (offsets of tensor {name})")
        end = stop
    if end != data_bytes:
        raise CheckpointError(f"{path}: the file holds {data_bytes} bytes of tensors, its header {end}"
                              f" (truncated or padded)")
    return entries


def _inspect(path, whole: bool = False) -> tuple[dict, dict, int, bytes | None]:
    """(metadata, tensor entries, data start, file bytes if whole): everything validated."""
    path = Path(path)
    header, start, size, data = _read(path, whole)
    extra = header.get("__metadata__")
    raw = extra.get(KEY) if isinstance(extra, dict) else None
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file, but not a completer checkpoint")
    meta = _json(raw, "the completer metadata", path)
    try:
        if not isinstance(meta, dict):
            raise ValueError("not an object")
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r:.40}, this completer reads {FORMAT}")
        if not isinstance(meta.get("config"), dict):
            raise ValueError("config is not an object")
        meta["config"] = ModelConfig(**meta["config"]).validate()
        if not all(isinstance(c, str) and len(c) == 1 for c in meta["vocab"]):
            raise ValueError("vocab")
        if len(set(meta["vocab"]) - {UNK}) != len(meta["vocab"]):  # Vocab would drop some: ids shift
            raise ValueError("vocab repeats a character or holds the unknown symbol")
        if len(meta["vocab"]) + 1 != meta["config"].vocab_size:
            raise CheckpointError(f"{path}: vocabulary of {len(meta['vocab'])} characters does not match vocab_size")
    except CheckpointError:
        raise
    except CompleterError as exc:  # a bad config value, or a cell that is not registered
        raise CheckpointError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path}: corrupt completer metadata ({type(exc).__name__}: {exc})"[:300]) from None
    return meta, _check_tensors(path, header, size - start, meta["config"]), start, data


def read_metadata(path) -> dict:
    """The completer metadata of a checkpoint file, validated with every tensor entry of its
    header (reads the header only); raises CheckpointError."""
    return _inspect(path)[0]


def load(path=None) -> tuple[CharModel, Vocab, dict]:
    """Rebuild (model, vocab, metadata) from a checkpoint; float32 whatever the storage dtype.
    The tensors are read from the same single read of the file whose header was checked."""
    path = resolve(path)
    meta, entries, start, data = _inspect(path, whole=True)
    config = meta["config"]
    model = CharModel(config, params={})
    model.params = {k: np.frombuffer(data, dtype, math.prod(shape), start + begin).reshape(shape).astype(np.float32)
                    for k, (dtype, shape, begin, _) in entries.items()}
    model.params = {k: model.params[k] for k in model.expected_shapes()}  # init_params's order
    if not all(np.isfinite(v).all() for v in model.params.values()):
        raise CheckpointError(f"{path}: checkpoint holds non-finite weights")
    meta["path"] = str(path)
    return model, Vocab(meta["vocab"]), meta
