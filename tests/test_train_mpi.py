"""`mpirun -n 2 completer train` (MPICH from the [mpi] extra, which the test extra includes): the same
loss curve as one process, a deterministic run, only rank 0 writing, resume across N, signals under
the launcher, failures that end the job, an uneven split, and the multi-node path over TCP on loopback.

Each run is a tiny model for tens to a few hundred steps (about a second)."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from completer.model import checkpoint
from test_corpus import make_repo

BIN = Path(sys.executable).parent
MPIRUN = str(BIN / "mpirun")
COMPLETER = str(BIN / "completer") if (BIN / "completer").exists() else None
# batch 5 over 2 ranks: shards of 2 and 3 streams (B not divisible by N); dropout and weight drop on
TINY = ["--hidden", "16", "--embed", "8", "--batch", "5", "--seq", "16", "--val-every", "20", "--log-every", "1",
        "--dropout", "0.1", "--weight-drop", "0.2"]
# MPICH over TCP on loopback, as between two machines: no shared memory between the ranks
# (NOLOCAL also makes each rank a node of its own) and the OFI tcp provider bound to lo
TCP_LOOPBACK = {"MPIR_CVAR_NOLOCAL": "1", "MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "lo"}


def cmd(*args):
    return [COMPLETER, *args] if COMPLETER else [sys.executable, "-m", "completer", *args]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("repo") / "r", n_files=6)


def run(argv, env=None, cwd=None, timeout=120):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                       env=dict(os.environ, **(env or {})))
    return p


def train(n, repo, out, *extra, env=None):
    argv = cmd("train", str(repo), "--out", str(out), *TINY, *extra)
    p = run([MPIRUN, "-n", str(n), *argv] if n > 1 else argv, env=env)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    return p


def curve(out, kind="train"):
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[f"{kind}_bpc"] for r in recs if r["kind"] == kind}


def state(out):
    return load_file(str(out / "state.safetensors"))


def same_tensors(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_two_ranks_follow_one_process_and_only_rank_0_writes(repo, tmp_path):
    """200 steps: per-step training loss within 1e-4 bits per character of one process; the run
    directory holds the same files; rank 1 runs in a directory of its own, with a repository
    path that does not exist, and writes nothing and reads no corpus."""
    one, two, elsewhere = tmp_path / "one", tmp_path / "a", tmp_path / "b"
    two.mkdir(), elsewhere.mkdir()
    train(1, repo, one, "--steps", "200")
    argv = cmd("train", str(repo), "--out", "run", *TINY, "--steps", "200")
    rank1 = cmd("train", str(tmp_path / "no-such-repo"), "--out", "run", *TINY, "--steps", "200")
    p = run([MPIRUN, "-n", "1", "-wdir", str(two), *argv, ":", "-n", "1", "-wdir", str(elsewhere), *rank1])
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.count("done (steps)") == 1                   # one report, rank 0's
    a, b = curve(one), curve(two / "run")
    assert len(a) == 200 and a.keys() == b.keys()
    assert max(abs(a[s] - b[s]) for s in a) < 1e-4
    va, vb = curve(one, "val"), curve(two / "run", "val")
    assert va.keys() == vb.keys() and max(abs(va[s] - vb[s]) for s in va) < 1e-4
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in (two / "run").iterdir())
    assert list(elsewhere.iterdir()) == []
    meta = checkpoint.load(two / "run")[2]
    assert meta["train"]["step"] == 200 and meta["train"]["options"]["batch"] == 5


def interrupted(n, repo, out, *extra):
    """A run stopped by SIGINT (to mpirun, which forwards it) as soon as it trains; its step."""
    argv = cmd("train", str(repo), "--out", str(out), *TINY, *extra)
    proc = subprocess.Popen([MPIRUN, "-n", str(n), *argv] if n > 1 else argv, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:
        if line.startswith("step "):
            break
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    return checkpoint.load(out / "last.safetensors")[2]["train"]["step"]


def test_deterministic_resume_and_resume_across_n(repo, tmp_path):
    """Same N: stopped and resumed equals one go, bit for bit. Across N: a 2-rank state resumes on
    1 process, and a 1-process state on 2 ranks, within rounding of the uninterrupted run."""
    budget = ("--steps", "60")
    train(2, repo, tmp_path / "whole", *budget)
    assert interrupted(2, repo, tmp_path / "two", *budget) < 60
    (tmp_path / "two-to-one").mkdir()
    for f in (tmp_path / "two").iterdir():
        (tmp_path / "two-to-one" / f.name).write_bytes(f.read_bytes())
    train(2, repo, tmp_path / "two", "--resume")
    assert same_tensors(state(tmp_path / "whole"), state(tmp_path / "two"))
    train(1, repo, tmp_path / "two-to-one", "--resume")                           # 2 ranks -> 1
    assert interrupted(1, repo, tmp_path / "one-to-two", *budget) < 60
    train(2, repo, tmp_path / "one-to-two", "--resume")                           # 1 -> 2 ranks
    whole, w = curve(tmp_path / "whole"), state(tmp_path / "whole")
    for d in ("two-to-one", "one-to-two"):
        c, s = curve(tmp_path / d), state(tmp_path / d)
        assert c.keys() == whole.keys() and max(abs(c[k] - whole[k]) for k in c) < 1e-4, d
        assert s.keys() == w.keys() and all(np.allclose(s[k], w[k], atol=1e-4) for k in w), d


def rank_pid(tag, rank):
    """The pid of rank `rank` of the job whose environment carries COMPLETER_TEST_TAG=tag."""
    for _ in range(200):
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                env = (d / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"COMPLETER_TEST_TAG={tag}".encode() in env and f"PMI_RANK={rank}".encode() in env:
                return int(d.name)
        time.sleep(0.05)
    raise AssertionError(f"rank {rank} not found")


def start_long(repo, out, env):
    proc = subprocess.Popen([MPIRUN, "-n", "2", *cmd("train", str(repo), "--out", str(out), *TINY,
                                                     "--steps", "100000")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines = []
    for line in proc.stderr:            # wait until both ranks are training
        lines.append(line)
        if line.startswith("step "):
            break
    return proc, lines


@pytest.mark.parametrize("sig,to", [(signal.SIGINT, "launcher"), (signal.SIGTERM, "launcher"),
                                    (signal.SIGUSR1, "launcher"), (signal.SIGTERM, "rank 1")])
def test_signals_stop_every_rank_after_the_same_step(repo, tmp_path, sig, to):
    """To mpirun (which forwards it to every rank), or to rank 1 alone: every rank stops after the
    same step, rank 0 saves, the job exits 128 + the signal, and --resume continues."""
    out, tag = tmp_path / "run", uuid.uuid4().hex
    proc, lines = start_long(repo, out, dict(os.environ, COMPLETER_TEST_TAG=tag))
    os.kill(proc.pid if to == "launcher" else rank_pid(tag, 1), sig)
    err = "".join(lines) + proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and f"{signal.Signals(sig).name}: stopped at step" in err
    stopped = checkpoint.load(out / "last.safetensors")[2]["train"]["step"]
    assert json.loads(_meta(out / "state.safetensors"))["step"] == stopped
    if to == "rank 1":
        train(2, repo, out, "--resume", "--steps", str(stopped + 3))
        assert checkpoint.load(out / "last.safetensors")[2]["train"]["step"] == stopped + 3


def _meta(path):
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return f.metadata()["completer_state"]


def test_failures_end_the_whole_job(repo, tmp_path):
    """Bad input found by rank 0 while rank 1 waits: one line, exit 2, no hang. Too few streams for
    the ranks: the same. A rank killed mid-run: the job ends, non-zero, and the last save is whole."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, message in ((cmd("train", str(empty), "--out", str(tmp_path / "o")), "no usable source files"),
                          (cmd("train", str(repo), "--out", str(tmp_path / "o"), "--batch", "1"),
                           "--batch 1 gives fewer streams than the 2 ranks")):
        t0 = time.monotonic()
        p = run([MPIRUN, "-n", "2", *argv], timeout=60)
        assert p.returncode == 2 and message in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and time.monotonic() - t0 < 30, p.stderr
    out, tag = tmp_path / "run", uuid.uuid4().hex
    env = dict(os.environ, COMPLETER_TEST_TAG=tag)
    proc = subprocess.Popen([MPIRUN, "-n", "2", *cmd("train", str(repo), "--out", str(out), *TINY,
                                                     "--steps", "100000", "--val-every", "10")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stderr:
        if line.startswith("step 10/"):
            break
    os.kill(rank_pid(tag, 1), signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode not in (0, None)
    assert checkpoint.load(out / "last.safetensors")[2]["train"]["step"] >= 10
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_multi_node_path_over_tcp_loopback(repo, tmp_path):
    """Each rank its own 'node' (the corpus crosses the network to the second node's window), every
    message over TCP on lo: the result equals the shared-memory run bit for bit (the fixed-order
    sum does not depend on the transport)."""
    train(2, repo, tmp_path / "shm", "--steps", "30")
    p = train(2, repo, tmp_path / "tcp", "--steps", "30", env=dict(TCP_LOOPBACK, MPIR_CVAR_DEBUG_SUMMARY="1"))
    assert "provider: tcp" in p.stdout + p.stderr
    assert same_tensors(state(tmp_path / "shm"), state(tmp_path / "tcp"))


def test_no_launcher_never_imports_mpi4py(repo, tmp_path):
    code = ("import sys; from completer.cli import main; "
            f"rc = main(['train', {str(repo)!r}, '--out', {str(tmp_path / 'run')!r}, '--hidden', '8', '--embed', '4', "
            "'--batch', '2', '--seq', '8', '--steps', '2']); "
            "print(rc, 'mpi4py' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                                                            "SLURM_STEP_NUM_TASKS", "PMIX_RANK")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert p.stdout.split() == ["0", "False"], p.stderr


def test_launcher_environments():
    from completer_trainers.launcher import blas_threads, size_from_env

    assert size_from_env({}) is None
    assert size_from_env({"PMI_SIZE": "4", "PMI_RANK": "1"}) == 4                 # MPICH's Hydra
    assert size_from_env({"OMPI_COMM_WORLD_SIZE": "8"}) == 8                     # Open MPI
    assert size_from_env({"SLURM_STEP_NUM_TASKS": "32", "SLURM_PROCID": "3"}) == 32  # srun
    assert size_from_env({"PMIX_RANK": "0"}) == 0                                # PMIx: size from MPI
    assert blas_threads(1) == min(os.cpu_count(), len(os.sched_getaffinity(0)))
    assert blas_threads(os.cpu_count() * 4) == 1


SUM_SCRIPT = """
import numpy as np
from completer_trainers.launcher import start
w = start()
from completer_trainers.distributed import FlatSum
# values over many magnitudes, so that the order of the additions shows in the rounding
parts = [np.random.default_rng(r).standard_normal(1001).astype(np.float32)
         * np.float32(10.0) ** np.random.default_rng(r + 100).integers(-6, 6, 1001).astype(np.float32)
         for r in range(w.size)]
expected = parts[0].copy()
for p in parts[1:]:
    expected += p                                    # rank order
fs = FlatSum(w, {"g": np.zeros(1001, np.float32)}, 2)
got = fs({"g": parts[w.rank]}, 1.0)["g"].copy()
fs.flat[:] = 0
fs.flat[:1001] = parts[w.rank]
w.sum_in_rank_order(fs.flat, fs.scratch)
ok = np.array([np.array_equal(got, expected), np.array_equal(fs.flat[:1001], expected)], np.int64)
w.comm.Allreduce(w.MPI.IN_PLACE, ok, op=w.MPI.MIN)    # every rank's verdict
if w.rank == 0:
    print(w.size, *ok.tolist())
w.close()
"""


@pytest.mark.parametrize("n", [2, 3])
def test_gradient_sum_is_in_rank_order_on_every_rank(n):
    """The reduction equals parts[0] + parts[1] + ... added in that order, bit for bit, on every
    rank (3 ranks: the Alltoall/Allgather path; 2 ranks: the library's Allreduce and that path)."""
    p = run([MPIRUN, "-n", str(n), sys.executable, "-c", SUM_SCRIPT], timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(n), "1", "1"], p.stdout


def test_blas_threads_per_rank_are_what_openblas_really_uses_even_with_numpy_loaded_first(repo, tmp_path):
    """Each rank's OpenBLAS runs blas_threads(ranks on the node) threads, read back through
    openblas_get_num_threads (the `mpi:` log line), both for `completer train` and when NumPy was
    imported before the launcher could set the environment (OpenBLAS read it then: its own setter)."""
    from completer_trainers.launcher import THREAD_VARS, blas_threads

    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    want = blas_threads(2)
    for i, pre in enumerate(("", "import numpy; ")):
        code = (f"import sys; {pre}from completer.cli import main; "
                f"sys.exit(main(['train', {str(repo)!r}, '--out', {str(tmp_path / str(i))!r}, '--hidden', '8', "
                f"'--embed', '4', '--batch', '2', '--seq', '8', '--steps', '2']))")
        p = subprocess.run([MPIRUN, "-n", "2", sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, env=env)
        assert p.returncode == 0, p.stderr
        assert f"BLAS threads per rank {want}, {want}" in p.stderr, p.stderr
    # and the one the user chose is left alone (OpenBLAS caps it at the cores: ask for 2 or 1)
    mine = 2 if want == 1 else 1
    p = subprocess.run([MPIRUN, "-n", "2", *cmd("train", str(repo), "--out", str(tmp_path / "u"), "--hidden", "8",
                        "--embed", "4", "--batch", "2", "--seq", "8", "--steps", "2")], capture_output=True,
                       text=True, timeout=120, env=dict(env, OPENBLAS_NUM_THREADS=str(mine)))
    assert p.returncode == 0 and f"BLAS threads per rank {mine}, {mine}" in p.stderr, p.stderr
