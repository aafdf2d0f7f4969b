"""Corpus discovery, the file-level split, stream batching, optimizers, schedule and validation bpc.

`make_repo` (also used by tests/test_train*.py) builds a small synthetic repository holding a
learnable pattern plus every kind of file the walker must skip."""
import math
import os
from pathlib import Path

import numpy as np
import pytest

from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig
from completer_trainers import corpus, optim
from completer_trainers.batching import Streams
from completer_trainers.validation import evaluate_bpc


def make_repo(root: Path, n_files: int = 6, extra: str = "") -> Path:
    """Learnable Python-like files, plus junk that discovery must skip."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        lines = [f"def f{j}(x):\n    return x + {j % 3}\n\n" for j in range(12 + 3 * i)]
        (root / "pkg").mkdir(exist_ok=True)
        (root / "pkg" / f"mod{i}.py").write_text("".join(lines) + extra)
    (root / "binary.py").write_bytes(b"import os\n\0\0\x01binary")
    (root / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (root / "empty.py").write_text("")
    (root / "notes.txt").write_text("not python\n")
    os.symlink(".", root / "loop")                                   # a symlink loop
    for d in (".git", ".hidden", "node_modules", "build", "venv2", "src/site-packages"):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "x.py").write_text("print('skip me')\n")
    (root / "venv2" / "pyvenv.cfg").write_text("home = /usr\n")
    return root


def test_discover_skips_junk_and_counts_reasons(tmp_path):
    c = corpus.discover(make_repo(tmp_path / "r"))
    assert [f.path for f in c.files] == [f"pkg/mod{i}.py" for i in range(6)]
    assert {r: len(v) for r, v in c.skipped.items()} == {"binary": 1, "not UTF-8": 1, "empty": 1}
    assert c.skipped["not UTF-8"] == ["latin1.py"]
    dirs = {r: sorted(v) for r, v in c.skipped_dirs.items()}
    assert dirs["hidden"] == [".git", ".hidden"]
    assert dirs["symlink loop"] == ["loop"]
    assert dirs["virtualenv"] == ["venv2"]
    assert dirs["node_modules"] == ["node_modules"] and dirs["build/dist"] == ["build"]
    assert dirs["site-packages"] == ["src/site-packages"]
    assert "3 files (1 binary, 1 empty, 1 not UTF-8)" in c.skip_summary()
    assert c.chars == sum(len(f.text) for f in c.files)


def test_discover_include_size_limit_and_newlines(tmp_path):
    r = make_repo(tmp_path / "r")
    (r / "big.py").write_text("x = 1\n" * 1000)
    (r / "crlf.py").write_bytes(b"a = 1\r\nb = 2\r\n")
    c = corpus.discover(r, include=["*.txt"], max_bytes=5000)
    paths = [f.path for f in c.files]
    assert "notes.txt" in paths and "big.py" not in paths
    assert c.skipped["too large"] == ["big.py"]
    assert next(f for f in c.files if f.path == "crlf.py").text == "a = 1\nb = 2\n"


def test_discover_bad_roots(tmp_path):
    with pytest.raises(CompleterError, match="no such directory"):
        corpus.discover(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(CompleterError, match="not a directory"):
        corpus.discover(tmp_path / "f")


def test_split_whole_files_deterministic_with_heldout(tmp_path):
    files = corpus.discover(make_repo(tmp_path / "r", n_files=12)).files
    train, val, held = corpus.split(files, 0.2, seed=3, heldout=["pkg/mod0.py", "./pkg/mod1.py"])
    assert [f.path for f in held] == ["pkg/mod0.py", "pkg/mod1.py"]
    names = [f.path for f in train + val + held]
    assert sorted(names) == sorted(f.path for f in files) and len(set(names)) == len(names)
    assert 1 <= len(val) < 10
    again = corpus.split(files, 0.2, seed=3, heldout=["pkg/mod0.py", "pkg/mod1.py"])
    assert [f.path for f in again[1]] == [f.path for f in val]
    others = {tuple(f.path for f in corpus.split(files, 0.2, seed=s)[1]) for s in range(8)}
    assert len(others) > 1  # the seed decides
    # a tiny fraction still gives one validation file; 0 means none: train on every file
    t0, v0, _ = corpus.split(files[:2], 0.01, seed=0)
    assert len(t0) == 1 and len(v0) == 1
    t0, v0, h0 = corpus.split(files, 0.0, seed=0, heldout=["pkg/mod0.py"])
    assert v0 == [] and len(t0) == len(files) - 1 and len(h0) == 1
    # named validation files, kept out of training
    t1, v1, _ = corpus.split(files, 0.2, seed=0, heldout=["pkg/mod0.py"], val_paths=["pkg/mod2.py", "pkg/mod3.py"])
    assert [f.path for f in v1] == ["pkg/mod2.py", "pkg/mod3.py"] and len(t1) == len(files) - 3
    with pytest.raises(CompleterError, match="--val-files nope.py"):
        corpus.split(files, 0.1, 0, val_paths=["nope.py"])
    with pytest.raises(CompleterError, match="both to --heldout and to --val-files"):
        corpus.split(files, 0.1, 0, heldout=["pkg/mod2.py"], val_paths=["pkg/mod2.py"])
    with pytest.raises(CompleterError, match="--heldout nope.py"):
        corpus.split(files, 0.1, 0, heldout=["nope.py"])
    with pytest.raises(CompleterError, match="at least 2 usable files"):
        corpus.split(files[:1], 0.1, 0)


def test_digest_changes_with_text_and_split(tmp_path):
    files = corpus.discover(make_repo(tmp_path / "r")).files
    a = corpus.digest(files[:4], files[4:])
    assert a == corpus.digest(files[:4], files[4:])
    assert a != corpus.digest(files[:3], files[3:])
    files[0].text += "#"
    assert a != corpus.digest(files[:4], files[4:])


def test_streams_are_contiguous_rows_and_wrap():
    docs = [np.arange(0, 50, dtype=np.int32), np.arange(50, 103, dtype=np.int32)]
    s = Streams(docs, batch=2, seq=10, seed=0)
    assert s.L == 51 and s.windows_per_epoch == 5
    rows = s.rows(0)
    seen = []
    for k in range(5):
        x, y, reset = s.next()
        assert x.shape == (10, 2) and reset == (k == 0)
        assert np.array_equal(x, rows[:, k * 10:k * 10 + 10].T)
        assert np.array_equal(y[:-1], x[1:])                         # targets: inputs shifted by one
        seen.append(x)
    assert s.position() == {"epoch": 1, "window": 0}
    x, y, reset = s.next()
    assert reset
    s2 = Streams(docs, batch=2, seq=10, seed=0)
    s2.seek({"epoch": 1, "window": 1})
    assert np.array_equal(s2.next()[0], s.next()[0])
    with pytest.raises(CompleterError, match="too small"):
        Streams(docs, batch=20, seq=10)


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_optimizers_minimise_a_quadratic(name):
    rng = np.random.default_rng(0)
    target = rng.standard_normal(20).astype(np.float32)
    params = {"w": np.zeros(20, np.float32)}
    opt = optim.make(name, params)
    for _ in range(300):
        opt.step(params, {"w": params["w"] - target}, 0.5 if name == "adagrad" else 0.05)
    assert params["w"].dtype == np.float32
    assert np.abs(params["w"] - target).max() < 0.1
    assert set(opt.state_tensors()) == {f"opt.{s}.w" for s in opt.slot_names}


def test_clip_and_schedule():
    g = {"a": np.full(4, 3.0, np.float32), "b": np.full(1, 4.0, np.float32)}
    norm = optim.clip_global_norm(g, 1.0)
    assert norm == pytest.approx(math.sqrt(4 * 9 + 16))
    assert math.sqrt(sum((v ** 2).sum() for v in g.values())) == pytest.approx(1.0, rel=1e-4)
    assert optim.clip_global_norm(g, 0) == pytest.approx(1.0, rel=1e-4)  # 0 = off
    lrs = [optim.learning_rate(t, 1.0, 10, 110) for t in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert optim.learning_rate(1000, 1.0, 10, None) == 1.0


def test_validation_bpc_equals_one_window_forward():
    """Chunked evaluation with carried state equals one forward over the whole row."""
    model = CharModel(ModelConfig("gru", 11, 4, 8, 2), seed=1)
    ids = np.random.default_rng(0).integers(0, 11, 301).astype(np.int32)
    chunked = evaluate_bpc(model, ids, batch=1, seq=37)
    logits, _, _ = model.forward(ids[:-1, None], model.zero_state(1))
    loss, _ = model.softmax_xent(logits, ids[1:, None])
    assert chunked == pytest.approx(loss / math.log(2), rel=1e-5)
