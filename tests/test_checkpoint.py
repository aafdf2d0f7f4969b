"""completer.model.checkpoint refuses malformed files with one CheckpointError, never another exception."""
import json
import struct
import subprocess
import sys

from pathlib import Path
import pytest

from completer.model import checkpoint
from completer.model.checkpoint import CheckpointError

CONFIG = {"cell": "lstm", "vocab_size": 3, "embed": 2, "hidden": 2, "layers": 1, "dropout": 0.0}


def header_only(obj) -> bytes:
    head = json.dumps(obj).encode()
    return struct.pack("<Q", len(head)) + head


def meta(**changes) -> dict:
    return {"__metadata__": {"completer": json.dumps(dict({"format": 1, "config": CONFIG, "vocab": ["a", "b"],
                                                          "dtype": "float32"}, **changes))}}


@pytest.mark.parametrize("content, message", [
    (header_only({"__metadata__": [1]}), "not a completer checkpoint"),
    (header_only({"__metadata__": None}), "not a completer checkpoint"),
    (header_only(meta(vocab=["a", "a"])), "repeats a character"),
    (header_only(meta(config=dict(CONFIG, hidden=10**12))), "more weights than the file holds"),
    (header_only(meta(config=dict(CONFIG, layers=10**9))), "more weights than the file holds"),
])
def test_malformed_header_is_one_checkpoint_error(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)


def test_cli_reports_a_malformed_header_in_one_line(completer_exe, tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(header_only({"__metadata__": "x"}))
    r = subprocess.run(completer_exe + ["complete", "--model", str(path)], input="x", capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"completer complete: error: {path}: a safetensors file, but not "
                                             "a completer checkpoint"]


def test_a_real_checkpoint_still_loads(tiny_checkpoint):
    model, vocab, meta_ = checkpoint.load(tiny_checkpoint)
    assert len(vocab) == model.config.vocab_size and meta_["path"] == str(tiny_checkpoint)


def test_named_checkpoints_resolve_from_the_package_folder(tmp_path, monkeypatch, capsys):
    """`--model NAME` finds checkpoints/NAME.safetensors shipped in the package (e.g. `requests`);
    a path that exists wins over a name, and an unknown name lists the shipped ones."""
    from conftest import make_checkpoint
    shipped = tmp_path / "pkg"
    shipped.mkdir()
    make_checkpoint(shipped / "default.safetensors", seed=1)
    make_checkpoint(shipped / "other.safetensors", seed=2)
    monkeypatch.setattr(checkpoint, "default_path", lambda: shipped / "default.safetensors")
    assert checkpoint.resolve("other") == shipped / "other.safetensors"
    assert checkpoint.resolve("default") == shipped / "default.safetensors"
    monkeypatch.chdir(tmp_path)
    make_checkpoint(tmp_path / "other", seed=3)                 # a file in the working folder wins
    assert checkpoint.resolve("other") == Path("other")
    for bad in ("nothing", "../pkg/other", "other.safetensors2"):
        with pytest.raises(checkpoint.CheckpointError, match="shipped by name: default, other"):
            checkpoint.resolve(bad)
    p = subprocess.run([sys.executable, "-m", "completer", "complete", "--model", "nothing"], input="def f(",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no such checkpoint: nothing" in p.stderr
