"""Shared fixtures: tiny checkpoints made in the test session (never the shipped model, unless a
test is about the shipped model)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from completer.model import checkpoint
from completer.model.network import CharModel, ModelConfig
from completer.model.vocab import Vocab

PYTHON_CHARS = [chr(c) for c in range(32, 127)] + ["\n", "\t"]


def make_checkpoint(path: Path, cell="lstm", hidden=16, layers=1, embed=8, seed=0) -> Path:
    vocab = Vocab(PYTHON_CHARS)
    model = CharModel(ModelConfig(cell=cell, vocab_size=len(vocab), embed=embed, hidden=hidden,
                                  layers=layers), seed=seed)
    return checkpoint.save(path, model, vocab)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised small LSTM over printable ASCII: fast, deterministic, untrained."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def completer_exe() -> list:
    """The command that runs the installed CLI (as a user would), for subprocess tests."""
    exe = Path(sys.executable).with_name("completer")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "completer"]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """The project memory's cache (and anything else under XDG_CACHE_HOME) stays in the test's
    own folder, for this process and the servers and REPLs it starts."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
