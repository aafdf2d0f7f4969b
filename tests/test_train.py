"""`completer train` end to end at tiny sizes: learning, resume bit-exactness, signals, --init, plot."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from completer.model import checkpoint
from completer.cli import main
from completer.registry import registry
from completer_trainers import plot as plot_mod
from completer_trainers.loop import Run
from test_corpus import make_repo

TINY = ["--hidden", "16", "--embed", "8", "--batch", "4", "--seq", "16", "--val-every", "10", "--log-every", "5"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("repo") / "r")


def train(repo, out, *extra, capsys=None):
    rc = main(["train", str(repo), "--out", str(out), *TINY, *extra])
    if capsys is not None:
        return rc, capsys.readouterr()
    return rc


def records(run, kind):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(l)["kind"] == kind]


@pytest.fixture
def extra_cell():
    """A cell registered at run time, as a plugin would be: any registered cell trains."""
    rnn = registry.get("cell", "rnn")
    registry.register("cell", "test-rnn", type("TestRNN", (rnn,), {}))
    yield "test-rnn"
    registry.unregister("cell", "test-rnn")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "extra"])
def test_loss_falls_on_a_learnable_pattern(repo, tmp_path, capsys, cell, request):
    if cell == "extra":
        cell = request.getfixturevalue("extra_cell")
    rc, out = train(repo, tmp_path / "run", "--cell", cell, "--steps", "150", "--lr", "0.02", "--json",
                    capsys=capsys)
    assert rc == 0, out.err
    summary = json.loads(out.out.strip().splitlines()[-1])
    tr = records(tmp_path / "run", "train")
    assert tr[0]["train_bpc"] > 4.0                      # ~log2(vocab) at the start
    assert summary["train_bpc"] < tr[0]["train_bpc"] - 2.5
    assert summary["val_bpc"] < 1.5 and summary["best_val_bpc"] <= summary["val_bpc"]
    for key in ("steps", "train_bpc", "val_bpc", "best_val_bpc", "chars_per_s", "seconds", "checkpoint"):
        assert key in summary
    assert summary["steps"] == 150 and summary["chars_per_s"] > 0
    model, vocab, meta = checkpoint.load(tmp_path / "run")   # a run directory means its best checkpoint
    assert meta["path"].endswith("best.safetensors") and model.config.cell == cell
    assert meta["train"]["corpus"]["digest"] and meta["train"]["options"]["seed"] == 0
    assert meta["metrics"]["best_val_bpc"] == summary["best_val_bpc"]
    assert "\ufffd" not in vocab.chars and vocab.encode("é")[0] == vocab.unk   # unseen -> unknown symbol
    assert "step 150/150" in out.err and "chars/s" in out.err and "ETA" in out.err
    assert "skipped 3 files (1 binary, 1 empty, 1 not UTF-8)" in out.err


@pytest.mark.parametrize("optimizer,extra", [("adam", dict(dropout=0.2, layers=2)), ("sgd", {}),
                                             ("adagrad", dict(cell="gru")),
                                             ("adam", dict(weight_drop=0.3, weight_decay=0.1, ema=0.9))])
def test_resume_is_bit_identical(repo, tmp_path, capsys, optimizer, extra):
    """A run stopped by SIGINT at step 20 and resumed to 45 (across an epoch wrap) == 45 steps straight."""
    opts = dict(hidden=16, embed=8, batch=8, seq=16, val_every=10, log_every=5, steps=45, optimizer=optimizer,
                **extra)
    assert Run(repo, tmp_path / "a", opts).train()["steps"] == 45

    def interrupt_at_20(msg):  # a real SIGINT, delivered while step 20's progress line is printed
        if msg.startswith("step 20/"):
            os.kill(os.getpid(), signal.SIGINT)

    s = Run(repo, tmp_path / "b", opts, log=interrupt_at_20).train()
    assert s["signal"] == signal.SIGINT and s["steps"] == 20 and s["stopped"] == "interrupted"
    assert main(["train", str(repo), "--out", str(tmp_path / "b"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resume:" in err and "steps per epoch" in err
    a, b = load_file(str(tmp_path / "a" / "state.safetensors")), load_file(str(tmp_path / "b" / "state.safetensors"))
    assert set(a) == set(b) and any(k.startswith("opt.") for k in a) and any(k.startswith("hidden.") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    la, lb = checkpoint.load(tmp_path / "a" / "last.safetensors")[0], checkpoint.load(tmp_path / "b" / "last.safetensors")[0]
    assert all(np.array_equal(la.params[k], lb.params[k]) for k in la.params)
    steps = [(r["kind"], r["step"]) for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines())]
    assert len(steps) == len(set(steps))                 # the resumed log has no repeated records
    assert records(tmp_path / "a", "val") == [
        {**r, "seconds": r2["seconds"], "val_seconds": r2["val_seconds"]}
        for r, r2 in zip(records(tmp_path / "b", "val"), records(tmp_path / "a", "val"))]


def test_regularised_run_without_validation_saves_the_average(repo, tmp_path, capsys):
    """--val-fraction 0 trains on every file and keeps the latest weights; under --ema the
    checkpoints hold the average (the optimizer's avg slot), not the last iterate."""
    rc, out = train(repo, tmp_path / "r", "--steps", "30", "--val-fraction", "0", "--weight-drop", "0.3",
                    "--weight-decay", "0.1", "--ema", "0.9", "--json", capsys=capsys)
    assert rc == 0
    s = json.loads(out.out.strip().splitlines()[-1])
    assert s["best_val_bpc"] is None and s["val_bpc"] is None and s["train_bpc"] is not None
    model, _, meta = checkpoint.load(tmp_path / "r" / "best.safetensors")
    assert meta["train"]["corpus"]["val_files"] == [] and model.config.weight_drop == 0.3
    state = load_file(str(tmp_path / "r" / "state.safetensors"))
    for k, v in model.params.items():
        assert np.array_equal(v, state[f"opt.avg.{k}"]), k
    assert not all(np.array_equal(v, state[f"param.{k}"]) for k, v in model.params.items())
    assert records(tmp_path / "r", "val") == []
    plain, _ = checkpoint.load(tmp_path / "r" / "last.safetensors")[:2]
    assert all(np.array_equal(plain.params[k], model.params[k]) for k in model.params)


def test_val_files_name_the_validation_split(repo, tmp_path, capsys):
    rc, out = train(repo, tmp_path / "v", "--steps", "10", "--val-files", "pkg/mod1.py", "--json", capsys=capsys)
    assert rc == 0
    meta = checkpoint.load(tmp_path / "v" / "best.safetensors")[2]
    assert meta["train"]["corpus"]["val_files"] == ["pkg/mod1.py"]
    assert json.loads(out.out.strip().splitlines()[-1])["best_val_bpc"] > 0
    rc, out = train(repo, tmp_path / "w", "--steps", "10", "--val-files", "nope.py", capsys=capsys)
    assert rc == 2 and out.err.count("\n") == 1 and "--val-files nope.py" in out.err


def test_resume_refuses_changed_flags_and_corpus(repo, tmp_path, capsys):
    assert train(repo, tmp_path / "run", "--steps", "5") == 0
    capsys.readouterr()
    assert train(repo, tmp_path / "run", "--resume", "--hidden", "32", "--steps", "10") == 2
    assert "--hidden 32 contradicts the run being resumed (hidden 16)" in capsys.readouterr().err
    other = make_repo(tmp_path / "other", extra="# changed\n")
    assert main(["train", str(other), "--out", str(tmp_path / "run"), "--resume", "--steps", "10"]) == 2
    assert "corpus" in capsys.readouterr().err and "changed" in capsys.readouterr().err + "changed"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_signal_saves_a_loadable_checkpoint(repo, tmp_path, completer_exe, sig, code):
    out = tmp_path / "run"
    proc = subprocess.Popen([*completer_exe, "train", str(repo), "--out", str(out), *TINY, "--steps", "100000",
                             "--val-every", "100000"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:            # wait until training really runs
        lines.append(line)
        if line.startswith("step "):
            break
    proc.send_signal(sig)
    stdout, rest = proc.communicate(timeout=60)
    err = "".join(lines) + rest
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"saved {out / 'last.safetensors'}" in err and "--resume" in err
    model, vocab, meta = checkpoint.load(out / "last.safetensors")
    stopped = meta["train"]["step"]
    assert stopped >= 1
    assert main(["train", str(repo), "--out", str(out), "--resume", "--steps", str(stopped + 3)]) == 0
    assert checkpoint.load(out / "last.safetensors")[2]["train"]["step"] == stopped + 3


def test_init_fine_tunes_with_an_extended_vocabulary(repo, tmp_path, capsys):
    assert train(repo, tmp_path / "base", "--steps", "10") == 0
    base, base_vocab, _ = checkpoint.load(tmp_path / "base")
    new_repo = make_repo(tmp_path / "new", extra="# café €\n")
    opts = dict(hidden=None, embed=None, steps=5, batch=4, seq=16)
    run = Run(new_repo, tmp_path / "ft", opts, init=tmp_path / "base")
    vocab, p = run.vocab, run.model.params
    assert {"é", "€"} <= set(vocab.chars) and set(base_vocab.chars) < set(vocab.chars)
    for ch in base_vocab.chars + [None]:
        old_id = base_vocab.id(ch) if ch else base_vocab.unk
        new_id = vocab.id(ch) if ch else vocab.unk
        assert np.array_equal(p["embed"][new_id], base.params["embed"][old_id])
        assert np.array_equal(p["head.W"][:, new_id], base.params["head.W"][:, old_id])
    assert np.array_equal(p["layers.0.Wh"] if "layers.0.Wh" in p else p["layers.0.Wx"],
                          base.params["layers.0.Wh"] if "layers.0.Wh" in p else base.params["layers.0.Wx"])
    assert not np.array_equal(p["embed"][vocab.id("€")], np.zeros_like(p["embed"][0]))
    assert run.train()["steps"] == 5
    assert main(["train", str(new_repo), "--out", str(tmp_path / "ft2"), *TINY[:2], "--hidden", "32",
                 "--init", str(tmp_path / "base"), "--steps", "2"]) == 2
    assert "--hidden 32 contradicts --init" in capsys.readouterr().err


def test_early_stopping_and_force(repo, tmp_path, capsys):
    # a learning rate too small to move float32 weights: validation never improves
    rc, out = train(repo, tmp_path / "run", "--lr", "1e-30", "--patience", "2", "--val-every", "5",
                    "--steps", "1000", "--json", capsys=capsys)
    s = json.loads(out.out.splitlines()[-1])
    assert rc == 0 and s["stopped"] == "early-stop" and s["steps"] == 15 and s["best_step"] == 5
    (tmp_path / "run" / "mine.txt").write_text("keep")
    assert train(repo, tmp_path / "run", "--steps", "3", "--force") == 0
    assert checkpoint.load(tmp_path / "run")[2]["train"]["step"] == 3
    assert (tmp_path / "run" / "mine.txt").exists()        # --force replaces only the run's own files


def test_plot_command_and_missing_matplotlib(repo, tmp_path, capsys, monkeypatch):
    assert train(repo, tmp_path / "run", "--steps", "10") == 0
    capsys.readouterr()
    pytest.importorskip("matplotlib")
    (tmp_path / "run" / "loss.png").unlink(missing_ok=True)
    assert main(["plot", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # as if the extra were not installed
    assert plot_mod.plot_run(tmp_path / "run") == (None, plot_mod.MISSING)
    assert main(["plot", str(tmp_path / "run")]) == 2
    assert "pip install 'completer[plot]'" in capsys.readouterr().err
    assert train(repo, tmp_path / "run2", "--steps", "2") == 0
    assert "plot: skipped (matplotlib is not installed" in capsys.readouterr().err


def test_minutes_budget_and_verbose(repo, tmp_path, capsys):
    rc, out = train(repo, tmp_path / "run", "--minutes", "0.002", "--verbose", "--val-chars", "50", "--json", capsys=capsys)
    s = json.loads(out.out.splitlines()[-1])
    assert rc == 0 and s["stopped"] == "minutes" and s["steps"] >= 1 and s["seconds"] >= 0.12
    assert "chars, first 50 used)" in out.err
    assert "skipped file latin1.py: not UTF-8" in out.err and "skipped directory loop: symlink loop" in out.err


def test_signal_during_validation_validates_on_resume(repo, tmp_path, monkeypatch):
    """SIGINT mid-validation abandons it; --resume runs that validation first, so the run's records
    and weights equal an uninterrupted run's."""
    opts = dict(hidden=16, embed=8, batch=4, seq=16, val_every=10, steps=30)
    Run(repo, tmp_path / "a", opts).train()
    original = Run.validate

    def interrupted_validation(self, should_stop):
        if self.step == 20:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, should_stop)

    monkeypatch.setattr(Run, "validate", interrupted_validation)
    s = Run(repo, tmp_path / "b", opts).train()
    assert s["signal"] == signal.SIGINT and s["steps"] == 20 and s["val_bpc"] == records(tmp_path / "a", "val")[0]["val_bpc"]
    monkeypatch.setattr(Run, "validate", original)
    assert Run(repo, tmp_path / "b", {}, resume=True).train()["steps"] == 30
    assert [r["val_bpc"] for r in records(tmp_path / "b", "val")] == [r["val_bpc"] for r in records(tmp_path / "a", "val")]
    a, b = checkpoint.load(tmp_path / "a")[0], checkpoint.load(tmp_path / "b")[0]
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
