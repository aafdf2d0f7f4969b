"""`completer train` against a hostile world (issue 14's audit): FIFOs and undecodable names in the
repository, 990 nested directories, a full disk, a second SIGTERM, a run killed before its first save,
temporaries left by kill -9; and weight drop without dropout (issue 13)."""
import errno
import json
import os
import signal
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest

from completer import discovery
from completer.model import checkpoint
from completer.cli import main
from completer_trainers.loop import Run
from test_corpus import make_repo

TINY = ["--hidden", "8", "--embed", "4", "--batch", "2", "--seq", "8", "--val-every", "10", "--log-every", "5"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("repo") / "r", n_files=3)


def one_line_error(capsys, rc, message):
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("completer train: error")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], err
    return lines[0]


def disk_full_when(monkeypatch, full) -> None:
    """Every fsync fails with ENOSPC while full() is true (the atomic writes' last step)."""
    real_fsync = os.fsync

    def fsync(fd):
        if full():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_fifo_named_py_is_skipped_not_read(tmp_path, completer_exe):
    r = make_repo(tmp_path / "r", n_files=3)
    os.mkfifo(r / "x.py")
    c = discovery.discover(r)
    assert c.skipped["not a regular file"] == ["x.py"]
    assert discovery.read_source(r / "x.py") == (None, "not a regular file")   # even when opened directly
    p = subprocess.run([*completer_exe, "train", str(r), "--out", str(tmp_path / "run"), *TINY, "--steps", "2"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "1 not a regular file" in p.stderr, p.stderr


def test_undecodable_file_name_trains(tmp_path, capsys):
    r = make_repo(tmp_path / "r", n_files=3)
    name = os.fsdecode(b"caf\xe9.py")
    (r / name).write_text("def caf(x):\n    return x\n" * 20)
    assert name in [f.path for f in discovery.discover(r).files]
    assert main(["train", str(r), "--out", str(tmp_path / "run"), *TINY, "--steps", "2", "--verbose",
                 "--val-files", name]) == 0
    assert "validation file caf\\xe9.py" in capsys.readouterr().err
    assert checkpoint.load(tmp_path / "run")[2]["train"]["corpus"]["val_files"] == [name]


def test_990_nested_directories(tmp_path, capsys):
    r = make_repo(tmp_path / "r", n_files=3)
    deep = str(r)
    for _ in range(990):                     # os.makedirs and Path.mkdir(parents=True) recurse
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    with open(os.path.join(deep, "deep.py"), "w") as f:
        f.write("x = 1\n" * 50)
    try:
        paths = [f.path for f in discovery.discover(r).files]
        assert "/".join(["d"] * 990 + ["deep.py"]) in paths
        assert main(["train", str(r), "--out", str(tmp_path / "run"), *TINY, "--steps", "2"]) == 0
    finally:                                 # pytest's own clean-up (shutil.rmtree) recurses too
        os.unlink(os.path.join(deep, "deep.py"))
        while deep != str(r):
            os.rmdir(deep)
            deep = os.path.dirname(deep)


def test_disk_full_is_one_line_and_keeps_every_file(repo, tmp_path, capsys, monkeypatch):
    """ENOSPC from the second save's first write: exit 2 with one line, the first save intact, no
    temporaries, and --resume carries on once there is space again."""
    out = tmp_path / "run"
    disk_full_when(monkeypatch, lambda: (out / "state.safetensors").exists())   # after the first save
    rc = main(["train", str(repo), "--out", str(out), *TINY, "--steps", "30"])
    line = one_line_error(capsys, rc, "No space left on device")
    assert "step 10" in line and "--resume" in line
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert checkpoint.load(out / "last.safetensors")[2]["train"]["step"] == 10
    assert checkpoint.load(out / "best.safetensors")[2]["train"]["step"] == 10
    monkeypatch.undo()                                      # space again
    assert main(["train", str(repo), "--out", str(out), "--resume"]) == 0
    assert checkpoint.load(out / "last.safetensors")[2]["train"]["step"] == 30


def test_second_sigterm_still_exits_143(repo, tmp_path, completer_exe):
    out = tmp_path / "run"
    proc = subprocess.Popen([*completer_exe, "train", str(repo), "--out", str(out), "--hidden", "64",
                             "--batch", "2", "--seq", "8", "--steps", "100000", "--val-every", "100000"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:
        if line.startswith("step "):
            break
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    # 143 from completer, or killed by SIGTERM itself if the second one came after the handlers
    # were restored (a shell reports 143 for both); never 130 "interrupted"
    assert proc.returncode in (143, -signal.SIGTERM), err
    assert "Traceback" not in err and "interrupted" not in err, err
    for p in out.iterdir():
        assert not p.name.endswith(".tmp")
        if p.suffix == ".safetensors":
            assert p.name == "state.safetensors" or checkpoint.load(p)


def test_run_killed_before_first_save_has_one_way_forward(repo, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")   # what a run killed before its first save leaves
    plain = one_line_error(capsys, main(["train", str(repo), "--out", str(out), *TINY, "--steps", "2"]),
                           "nothing to resume")
    resumed = one_line_error(capsys, main(["train", str(repo), "--out", str(out), "--resume"]),
                             "nothing to resume")
    assert "--force" in plain and "--force" in resumed and "use --resume" not in plain
    assert main(["train", str(repo), "--out", str(out), *TINY, "--steps", "2", "--force"]) == 0


def test_stale_temporaries_are_removed_on_the_next_start(repo, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(repo), "--out", str(out), *TINY, "--steps", "10"]) == 0
    stale = [out / ".state.safetensors.k2j4h1.tmp", out / ".last.safetensors.x9z8y7.tmp",
             out / ".metrics.jsonl.abcdef.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    mine = out / ".notes.tmp"
    mine.write_text("not completer's")
    assert main(["train", str(repo), "--out", str(out), "--resume", "--steps", "12"]) == 0
    assert not any(p.exists() for p in stale) and mine.exists()


def test_weight_drop_without_dropout_drops_weights(repo, tmp_path):
    opts = dict(hidden=16, embed=8, batch=4, seq=16, steps=10, log_every=1, val_every=100)
    plain = Run(repo, tmp_path / "a", opts).train()
    dropped = Run(repo, tmp_path / "b", dict(opts, weight_drop=0.5)).train()
    def first_loss(run):
        return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "train"][0]["train_bpc"]

    assert first_loss(tmp_path / "a") != first_loss(tmp_path / "b")  # the first window's recurrence is masked
    assert plain["train_bpc"] != dropped["train_bpc"]
    a, b = checkpoint.load(tmp_path / "a")[0], checkpoint.load(tmp_path / "b")[0]
    assert not np.array_equal(a.params["layers.0.Wh"], b.params["layers.0.Wh"])


def test_disk_full_before_the_first_resume_state_names_the_checkpoints_on_disk(repo, tmp_path, capsys, monkeypatch):
    """The first save writes last and best, then the disk fills on the resume state: the message
    says what is on disk (both checkpoints, no resume state), not 'nothing was saved yet'."""
    out = tmp_path / "run"
    disk_full_when(monkeypatch, lambda: (out / "best.safetensors").exists()
                   and not (out / "state.safetensors").exists())                 # on the resume state
    rc = main(["train", str(repo), "--out", str(out), *TINY, "--steps", "30"])
    line = one_line_error(capsys, rc, "No space left on device")
    assert "best.safetensors (step 10) and last.safetensors (step 10)" in line and "no resume state" in line
    assert "nothing was saved" not in line and "--force" in line


MPI_DISK_FULL = """
import errno, os, sys
from pathlib import Path
out, real = Path(sys.argv[1]), os.fsync
def full(fd):
    if (out / "best.safetensors").exists() and not (out / "state.safetensors").exists():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(fd)
os.fsync = full
from completer.cli import main
sys.exit(main(["train", sys.argv[2], "--out", str(out), "--hidden", "8", "--embed", "4", "--batch", "4",
               "--seq", "16", "--val-every", "10", "--steps", "30"]))
"""


def test_disk_full_under_mpirun_says_what_is_on_disk(repo, tmp_path):
    """Under mpirun the disk fills on rank 0's first resume state, after both checkpoints."""
    mpirun = Path(sys.executable).parent / "mpirun"
    out = tmp_path / "run"
    p = subprocess.run([str(mpirun), "-n", "2", sys.executable, "-c", MPI_DISK_FULL, str(out), str(repo)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    errors = [l for l in p.stderr.splitlines() if "error" in l]
    assert len(errors) == 1 and "No space left on device" in errors[0], p.stderr
    assert "on disk: best.safetensors (step 10) and last.safetensors (step 10), servable, but no resume state" \
        in errors[0] and "nothing was saved" not in errors[0], p.stderr
    assert checkpoint.load(out / "last.safetensors")[2]["train"]["step"] == 10
