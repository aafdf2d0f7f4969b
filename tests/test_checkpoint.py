"""completer.model.checkpoint refuses malformed files with one CheckpointError, never another exception."""
import json
import struct
import subprocess

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
