"""Checkpoint I/O: safetensors tensors + JSON metadata in the same file. Data only, never pickle.

A checkpoint holds everything needed to rebuild the model without the trainer (nanoGPT's habit):
  metadata["completer"] = JSON {"format": 1, "config": ModelConfig, "vocab": [...chars],
                                "dtype": "float32"|"float16", "train": {...}, "metrics": {...}}
Loading verifies the format version, the config, the vocabulary and every tensor's name, shape
and dtype, so a truncated file, a foreign safetensors file or a lying header is refused with one
clear line (CheckpointError), never a traceback. Writing is atomic: temp file, fsync, rename.
"""
from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from completer.errors import CompleterError
from completer.model import CharModel, ModelConfig
from completer.vocab import UNK, Vocab

FORMAT = 1
KEY = "completer"
DEFAULT_NAME = "default.safetensors"
BEST, LAST = "best.safetensors", "last.safetensors"


class CheckpointError(CompleterError):
    pass


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash at any instant leaves the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
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
    return Path(str(resources.files("completer.checkpoints").joinpath(DEFAULT_NAME)))


def resolve(path=None) -> Path:
    """A checkpoint file, a run directory (its best checkpoint), or None (the shipped model)."""
    if path is None or str(path) == "":
        p = default_path()
        if not p.is_file():
            raise CheckpointError(f"the shipped model is missing ({p}); pass --model CHECKPOINT")
        return p
    p = Path(path).expanduser()
    if p.is_dir():
        for name in (BEST, LAST):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p} is a directory without {BEST} or {LAST}")
    if not p.exists():
        raise CheckpointError(f"no such checkpoint: {p}")
    return p


def read_metadata(path) -> dict:
    """The completer metadata of a checkpoint file, validated; raises CheckpointError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a checkpoint (file too short)")
            n = int.from_bytes(head, "little")
            size = path.stat().st_size
            if n <= 1 or n > min(size - 8, 100_000_000):
                raise CheckpointError(f"{path}: not a safetensors checkpoint (bad header length)")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if isinstance(exc, OSError):
            raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
        raise CheckpointError(f"{path}: not a safetensors checkpoint (unreadable header)") from None
    extra = header.get("__metadata__") if isinstance(header, dict) else None
    raw = extra.get(KEY) if isinstance(extra, dict) else None
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file, but not a completer checkpoint")
    try:
        meta = json.loads(raw)
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, this completer reads {FORMAT}")
        meta["config"] = ModelConfig(**meta["config"]).validate()
        if not all(isinstance(c, str) and len(c) == 1 for c in meta["vocab"]):
            raise ValueError("vocab")
        if len(set(meta["vocab"]) - {UNK}) != len(meta["vocab"]):  # Vocab would drop some: ids shift
            raise ValueError("vocab repeats a character or holds the unknown symbol")
        if len(meta["vocab"]) + 1 != meta["config"].vocab_size:
            raise CheckpointError(f"{path}: vocabulary of {len(meta['vocab'])} characters does not match vocab_size")
        c = meta["config"]
        # a lower bound on the weights of any cell (embed, Wx of every layer, head) at 2 bytes each
        # (float16): a lying config must not make load allocate terabytes building the model
        floor = c.vocab_size * c.embed + c.embed * c.hidden + (c.layers - 1) * c.hidden ** 2 + c.hidden * c.vocab_size
        if 2 * floor > size:
            raise CheckpointError(f"{path}: its config needs more weights than the file holds")
    except CompleterError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path}: corrupt completer metadata ({type(exc).__name__}: {exc})") from None
    return meta


def load(path=None) -> tuple[CharModel, Vocab, dict]:
    """Rebuild (model, vocab, metadata) from a checkpoint; float32 whatever the storage dtype."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = resolve(path)
    meta = read_metadata(path)
    config = meta["config"]
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({str(exc).splitlines()[0]})") from None
    model = CharModel(config, params={})
    expected = model.expected_shapes()
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise CheckpointError(f"{path}: tensors do not match a {config.cell} model "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for k, shape in expected.items():
        if tensors[k].shape != shape:
            raise CheckpointError(f"{path}: tensor {k} has shape {tensors[k].shape}, expected {shape}")
        if tensors[k].dtype not in (np.float32, np.float16):
            raise CheckpointError(f"{path}: tensor {k} has dtype {tensors[k].dtype}")
    model.params = {k: np.ascontiguousarray(tensors[k], dtype=np.float32) for k in expected}
    if not all(np.isfinite(v).all() for v in model.params.values()):
        raise CheckpointError(f"{path}: checkpoint holds non-finite weights")
    meta["path"] = str(path)
    return model, Vocab(meta["vocab"]), meta
