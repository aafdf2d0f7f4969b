"""Hostile checkpoints, written byte by byte here (no project code builds them): a lying config,
dtypes NumPy lacks, deep JSON, a list for the cell name, a FIFO. Each is one clear line and exit 2
from the CLI (-32602 from the server's `model` setting): no traceback, no hang, no big allocation."""
import json
import os
import re
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

from test_server_raw import INIT, msg, parse_frames, serve

from completer.model import checkpoint
from completer.cells.lstm import LSTM
from completer.model.checkpoint import CheckpointError
from completer.model.network import CharModel, ModelConfig, weight_count
from completer.registry import registry

VOCAB = ["a", "b"]                     # + the unknown symbol: V = 3
CONFIG = {"cell": "lstm", "vocab_size": 3, "embed": 2, "hidden": 2, "layers": 1, "dropout": 0.0}


def lstm_shapes(config):
    V, E, H = config["vocab_size"], config["embed"], config["hidden"]
    return {"embed": [V, E], "layers.0.Wx": [E, 4 * H], "layers.0.b": [4 * H], "layers.0.Wh": [H, 4 * H],
            "head.W": [H, V], "head.b": [V]}


def write(path, config=CONFIG, shapes=None, dtype="F32", itemsize=4, metadata=None, header_extra=None, pad=0):
    """A safetensors file by hand: 8-byte little-endian header length, JSON header, zero weights."""
    shapes = lstm_shapes(CONFIG) if shapes is None else shapes
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = itemsize
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    meta = {"format": 1, "config": config, "vocab": VOCAB, "dtype": "float32", "train": {"note": "x" * pad}}
    header["__metadata__"] = {"completer": metadata if metadata is not None else json.dumps(meta)}
    head = json.dumps(dict(header, **(header_extra or {}))).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + bytes(offset))
    return path


def test_a_hand_made_checkpoint_loads(tmp_path):
    model, vocab, _ = checkpoint.load(write(tmp_path / "ok.safetensors"))
    assert model.params["layers.0.Wh"].shape == (2, 8) and len(vocab) == 3


def deep(n):
    return "[" * n + "]" * n


HOSTILE = {
    "bf16": (dict(dtype="BF16", itemsize=2), "unsupported dtype BF16 in tensor embed"),
    "f8": (dict(dtype="F8_E4M3", itemsize=1), "unsupported dtype F8_E4M3 in tensor embed"),
    "cell list": (dict(config=dict(CONFIG, cell=["lstm"])), "cell must be a name \\(a string\\)"),
    "cell object": (dict(config=dict(CONFIG, cell={"a": 1})), "cell must be a name \\(a string\\)"),
    "deep metadata": (dict(metadata=deep(100_000)), "the completer metadata is nested too deeply"),
    # 60 kB of metadata pass a size floor that leaves the recurrent matrix (400 MB) out
    "recurrent matrix lies": (dict(config=dict(CONFIG, hidden=5000), pad=60_000), "more weights than the file holds"),
    "shape lies": (dict(shapes=dict(lstm_shapes(CONFIG), **{"layers.0.Wh": [2, 9]})),
                   r"tensor layers.0.Wh has shape \(2, 9\), expected \(2, 8\)"),
    "offsets lie": (dict(header_extra={"head.b": {"dtype": "F32", "shape": [3], "data_offsets": [192, 10**12]}}),
                    "corrupt safetensors header"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_checkpoint_is_one_checkpoint_error(tmp_path, case):
    kwargs, message = HOSTILE[case]
    path = write(tmp_path / "bad.safetensors", **kwargs)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read_metadata(path)


def test_deeply_nested_header_is_one_line(tmp_path):
    path = tmp_path / "deep.safetensors"
    head = ('{"__metadata__": {"completer": "{}"}, "x": ' + deep(100_000) + "}").encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head)
    with pytest.raises(CheckpointError, match="the safetensors header is nested too deeply"):
        checkpoint.load(path)


def test_a_lying_config_allocates_nothing(tmp_path):
    """hidden 5000 in a 60 kB file: the LSTM's recurrent matrix alone would be 400 MB."""
    path = write(tmp_path / "liar.safetensors", config=dict(CONFIG, hidden=5000), pad=60_000)
    code = ("import resource, sys\nfrom completer.model import checkpoint\n"
            "try:\n    checkpoint.load(sys.argv[1])\nexcept checkpoint.CheckpointError as e:\n    print(e)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    message, peak_mb = r.stdout.strip().splitlines()
    assert "more weights than the file holds" in message and r.stderr == ""
    assert int(peak_mb) < 200, f"peak RSS {peak_mb} MB while refusing a lying config"


@pytest.mark.parametrize("case", ["bf16", "cell list", "deep metadata", "recurrent matrix lies"])
def test_cli_says_one_line_and_exits_2(completer_exe, tmp_path, case):
    kwargs, message = HOSTILE[case]
    path = write(tmp_path / "bad.safetensors", **kwargs)
    r = subprocess.run(completer_exe + ["complete", "--model", str(path)], input="x", capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and re.search(message, r.stderr)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "model.safetensors"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", [["complete"], ["eval", "{py}"], ["serve"]])
def test_a_fifo_checkpoint_is_refused_not_waited_on(completer_exe, tmp_path, fifo, command):
    py = tmp_path / "a.py"
    py.write_text("x = 1\n")
    args = [a.format(py=py) for a in command]
    r = subprocess.run(completer_exe + [*args, "--model", str(fifo)], input="x", capture_output=True,
                       text=True, timeout=60)  # before: blocked in open() forever
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"completer {command[0]}: error: {fifo}: not a regular file"]


def test_a_fifo_as_the_model_setting_is_32602(completer_exe, tiny_checkpoint, fifo):
    data = (msg(5, "initialize", {"capabilities": {}, "initializationOptions": {"model": str(fifo)}})
            + INIT + msg(1, params={"text": "import "}))
    rc, out, err = serve(completer_exe, data, "--model", str(tiny_checkpoint), timeout=60)
    by_id = {m["id"]: m for m in parse_frames(out)}
    assert by_id[5]["error"] == {"code": -32602, "message": f"{fifo}: not a regular file"}
    assert rc == 0 and by_id[1]["result"]["completions"]


def test_open_refuses_a_fifo_even_past_resolve(fifo):
    """The check is on the opened file (fstat), not only on the path: no race with a swap."""
    def unblock():  # should the open wait for a writer (the bug), be that writer after 10 s
        if not done.wait(10):
            os.close(os.open(fifo, os.O_WRONLY))
    done = threading.Event()
    threading.Thread(target=unblock, daemon=True).start()
    try:
        with pytest.raises(CheckpointError, match="not a regular file"):
            checkpoint.read_metadata(fifo)
    finally:
        done.set()


class Flat(LSTM):
    """A cell whose shapes are not affine in (D, H): its recurrent matrix stored flat (H*H*4,)."""
    name = "flat-test"

    def init_params(self, rng, dtype=np.float32):
        p = super().init_params(rng, dtype)
        p["Wh"] = p["Wh"].reshape(-1)
        return p


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "flat-test"])
def test_expected_shapes_are_init_params_shapes_without_building_them(cell):
    registry.register("cell", "flat-test", Flat)
    try:
        config = ModelConfig(cell=cell, vocab_size=11, embed=3, hidden=6, layers=3)
        model = CharModel(config, seed=0)
        assert model.expected_shapes() == {k: v.shape for k, v in model.params.items()}
        assert weight_count(config) == (len(model.params), model.n_params())
        assert (registry.get("cell", cell).shape_rule() is None) == (cell == "flat-test")
    finally:
        registry.unregister("cell", "flat-test")
