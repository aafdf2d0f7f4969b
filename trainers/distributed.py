"""Data-parallel training over MPI: `mpirun -n N completer train REPO --out RUN ...` (or `srun`).

Every option means what it means in one process. The B streams of a window are cut into N
contiguous shards (rank r takes streams r*B//N .. (r+1)*B//N - 1, so B need not divide by N); each
rank runs forward and backward on its shard, with the dropout and weight-drop masks the single
process would draw (every rank draws the whole batch's masks from the same generator and keeps its
columns), scales its gradient by its share of the streams, and the N partial gradients are summed
into one flat float32 buffer once per step. The mean loss, each rank's stop signal and rank 0's
"minutes are up" ride in the same buffer, so every rank stops after the same step. Clipping and the
optimizer then run identically on every rank.

The sum is done in a fixed order, not by the MPI library's Allreduce (whose order, and so whose
rounding, changes with N and the algorithm it picks): an Alltoall hands rank r chunk r of every
rank's buffer, rank r adds the N pieces in rank order, and an Allgather returns every summed chunk
to every rank. The bytes moved are those of a ring Allreduce (2 (N-1)/N of the buffer per rank),
and the result is the same on every rank, for any MPI library, bit for bit. (With 2 ranks, where
any order is the same single addition, it is the library's Allreduce.) So a run with N ranks is
deterministic (a resume with the same N continues bit for bit); against one process it differs by
the rounding of splitting the batch's sums into N partial sums (~1e-6 relative per step).

Rank 0 owns the run directory (checkpoints, resume state, metrics, plot, the --json summary) and
alone discovers, splits and encodes the corpus; the other ranks write nothing and need no shared
file system. Rank 0 sends them its setup as a resume state (the same safetensors bytes as
state.safetensors, whole batch's hidden state included: the file does not depend on N), and the
encoded training text once per node into an MPI shared-memory window that the node's ranks all read.
While rank 0 validates or writes, the others wait in a non-blocking barrier polled every 2 ms
(MPI's blocking calls spin a core), so they do not take the CPU rank 0 needs.

A rank that fails prints one line and calls MPI_Abort, which ends every rank (never a hang); an
error every rank sees at once (bad input at setup, divergence) is printed once, by rank 0.
No pickle: only the buffer (upper-case) mpi4py calls are used; metadata travels as JSON bytes.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig
from completer.model.vocab import Vocab
from completer_trainers import optim
from completer_trainers.batching import Streams
from completer_trainers.loop import STATE_KEY, Run

POLL_S = 0.002


class Agreed(CompleterError):
    """An error every rank reached together: rank 0 reports it; the others exit quietly."""


class World:
    """This rank's view of the job: rank, size, the ranks on its node, and the few collectives the
    trainer needs (all over NumPy buffers)."""

    def __init__(self, comm, node):
        from mpi4py import MPI

        self.MPI, self.comm, self.node = MPI, comm, node
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.root = self.rank == 0
        self._windows = []

    def wait(self) -> None:
        """Every rank arrives here; a rank that arrives early sleeps between tests of the barrier."""
        req = self.comm.Ibarrier()
        while not req.Test():
            time.sleep(POLL_S)

    def agree_max(self, values) -> list:
        """The element-wise maximum of every rank's small integer vector (after a sleeping wait)."""
        self.wait()
        a = np.array(values, np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.MAX)
        return a.tolist()

    def bcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's bytes to every rank (the others pass None and sleep until rank 0 sends)."""
        self.wait()
        n = np.array([len(data) if self.root else 0], np.int64)
        self.comm.Bcast(n, root=0)
        buf = np.frombuffer(bytearray(data), np.uint8) if self.root else np.empty(int(n[0]), np.uint8)
        if n[0]:
            self.comm.Bcast(buf, root=0)
        return buf.tobytes()

    def shared_ids(self, ids: np.ndarray | None, n: int) -> np.ndarray:
        """Rank 0's (n,) int32 ids as one read-only array per node: a shared-memory window that
        the node's first rank fills (from rank 0, over the network for other nodes)."""
        MPI, first = self.MPI, self.node.Get_rank() == 0
        win = MPI.Win.Allocate_shared(4 * n if first else 0, 4, comm=self.node)
        self._windows.append(win)                        # the memory lives as long as the window
        buf, _ = win.Shared_query(0)
        arr = np.ndarray((n,), np.int32, buffer=buf)
        if self.root:
            arr[:] = ids
        leaders = self.comm.Split(0 if first else MPI.UNDEFINED, self.rank)
        if leaders != MPI.COMM_NULL:
            if leaders.Get_size() > 1:
                leaders.Bcast(arr, root=0)
            leaders.Free()
        self.wait()
        arr.flags.writeable = False
        return arr

    def sum_fixed_order(self, flat: np.ndarray, scratch: np.ndarray) -> None:
        """flat (N*C,) float32 := the sum over ranks of every rank's flat, added in rank order.
        scratch: (N*C + C,) float32 of this rank's own.

        Two ranks add each element once, and a0 + a1 == a1 + a0 exactly in IEEE arithmetic, so
        there the library's Allreduce gives the same bits, in about half the time."""
        if self.size == 2:
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        else:
            self.sum_in_rank_order(flat, scratch)

    def sum_in_rank_order(self, flat: np.ndarray, scratch: np.ndarray) -> None:
        """sum_fixed_order for any N: Alltoall, add the N pieces in rank order, Allgather."""
        N = self.size
        C = flat.shape[0] // N
        recv, mine = scratch[: N * C].reshape(N, C), scratch[N * C:]
        self.comm.Alltoall(flat.reshape(N, C), recv)      # recv[r] = chunk `rank` of rank r's buffer
        np.copyto(mine, recv[0])
        for r in range(1, N):
            mine += recv[r]
        self.comm.Allgather(mine, flat.reshape(N, C))

    def gather_ints(self, value: int) -> list:
        """Every rank's integer, in rank order, on every rank."""
        out = np.zeros(self.size, np.int64)
        self.comm.Allgather(np.array([value], np.int64), out)
        return out.tolist()

    def gather_rows(self, a: np.ndarray, rows: list) -> np.ndarray | None:
        """Rank 0 gets the (sum(rows), ...) stack of every rank's (rows[r], ...) float32 array."""
        a = np.ascontiguousarray(a, np.float32)
        per_row = int(np.prod(a.shape[1:]))
        counts = [r * per_row for r in rows]
        full = np.empty((sum(rows),) + a.shape[1:], np.float32) if self.root else None
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
        self.comm.Gatherv(a, [full, counts, displs, self.MPI.FLOAT] if self.root else None, root=0)
        return full

    def close(self) -> None:
        """Free the shared windows and the node communicator (collective), so MPI_Finalize finds
        nothing of ours open (MPICH's TCP netmod fails to close its fabric otherwise)."""
        self.wait()
        for win in self._windows:
            win.Free()
        self._windows = []
        self.node.Free()

    def abort(self, code: int) -> None:
        """End every rank of the job now (our one line is already on stderr: MPI's own abort notice
        is sent to /dev/null)."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 2)
        except OSError:
            pass
        self.comm.Abort(code)


class FlatSum:
    """Every rank's gradients (scaled by its share of the streams) plus a few scalars, summed over
    the ranks in a fixed order in one flat float32 buffer; the gradients come back as views into it."""

    def __init__(self, world: World, params: dict, n_extra: int):
        self.world, self.slices, n = world, {}, 0
        for k, v in params.items():
            self.slices[k] = (slice(n, n + v.size), v.shape)
            n += v.size
        self.n, N = n, world.size
        total = -(-(n + n_extra) // N) * N                    # padded to a multiple of N
        self.flat = np.zeros(total, np.float32)
        self.scratch = np.zeros(total + total // N, np.float32)
        self.grads = {k: self.flat[sl].reshape(shape) for k, (sl, shape) in self.slices.items()}
        self.extra = self.flat[n: n + n_extra]

    def __call__(self, grads: dict, share: float) -> dict:
        """Sum share * grads (and whatever the caller put in .extra) over the ranks."""
        f, share = self.flat, np.float32(share)
        for k, (sl, _) in self.slices.items():
            np.multiply(grads[k].reshape(-1), share, out=f[sl])
        self.world.sum_fixed_order(f, self.scratch)
        return self.grads


def shard(batch: int, size: int, rank: int) -> tuple:
    """Rank `rank`'s contiguous streams [lo, hi) of `batch` split `size` ways (sizes differ by <= 1)."""
    return rank * batch // size, (rank + 1) * batch // size


class AgreedStop:
    """The loop's stop test in a data-parallel run: true once the ranks agreed to stop (in a step's
    reduction or after a validation); `local` is this rank's own signal handler."""

    def __init__(self, local):
        self.local, self.signum = local, None

    def __call__(self) -> bool:
        return self.signum is not None


class _NullFile:
    def write(self, _):
        pass

    def flush(self):
        pass

    def close(self):
        pass


class DistributedRun(Run):
    """Run, as one of N data-parallel ranks (see the module docstring)."""

    def __init__(self, world: World, repo, out, options: dict, resume: bool = False, init=None,
                 force: bool = False, verbose: bool = False):
        self.world = w = world
        self._full = None                                 # the gathered hidden state, on rank 0
        if w.root:
            try:
                super().__init__(repo, out, options, resume=resume, init=init, force=force, verbose=verbose)
                if self.opts["batch"] < w.size:
                    raise CompleterError(f"--batch {self.opts['batch']} gives fewer streams than the {w.size} "
                                         f"ranks (each needs one); raise --batch or start fewer ranks")
            except CompleterError as exc:
                w.bcast_bytes(b"")                      # the others learn that setup failed
                raise Agreed(str(exc)) from None
            docs = self.streams.docs
            header = {"lengths": [len(d) for d in docs], "total_steps": self.total_steps}
            w.bcast_bytes(json.dumps(header).encode())
            state = self.state_bytes()
            w.bcast_bytes(state)
            ids = np.concatenate(docs).astype(np.int32)
            position, self._root_hidden = self.streams.position(), self.hidden
        else:
            raw = w.bcast_bytes(None)
            if not raw:
                raise Agreed("setup failed on rank 0")
            header = json.loads(raw)
            state, ids = w.bcast_bytes(None), None
            self._init_from_state(repo, out, state)
        B = self.opts["batch"]
        self.lo, self.hi = shard(B, w.size, w.rank)
        self.rows = [shard(B, w.size, r)[1] - shard(B, w.size, r)[0] for r in range(w.size)]
        shared = w.shared_ids(ids, int(sum(header["lengths"])))
        bounds = np.concatenate([[0], np.cumsum(header["lengths"])]).astype(int)
        docs = [shared[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.streams = Streams(docs, B, self.opts["seq"], self.opts["seed"], rows=(self.lo, self.hi))
        self.total_steps = header["total_steps"]
        if w.root:
            self.streams.seek(position)
            full = self._root_hidden
        else:
            self.streams.seek(self._meta["stream"])
            full = self.hidden
        self.hidden = [tuple(np.ascontiguousarray(a[self.lo:self.hi]) for a in s) for s in full]
        self._full = None
        self._minutes_up = False
        self._layout()
        from completer.system.blas import openblas_threads

        # what each rank's OpenBLAS really runs with (0: not OpenBLAS), for the log
        self.blas_threads = w.gather_ints(openblas_threads() or 0)

    def _init_from_state(self, repo, out, state: bytes) -> None:
        """A rank other than 0: everything from rank 0's resume state."""
        from safetensors.numpy import load

        t = load(state)
        meta = json.loads(_metadata(state)[STATE_KEY])
        self.repo, self.out, self.given = Path("."), Path(out).expanduser(), {}
        self.resume, self.init, self.force, self.verbose = False, None, False, False
        self.log = lambda msg: None
        self.opts = meta["options"]
        self.vocab = Vocab(meta["vocab"])
        self.model = CharModel(ModelConfig(**meta["model"]), params={})
        self.digest, self.corpus = meta["digest"], None
        self.train_files, self.val_files, self.held_files, self.val_ids = [], [], [], None
        self.weights, self.unknown = {}, None
        self.streams = _Positionless()
        self.rng = np.random.default_rng(self.opts["seed"])
        self.best_val, self.best_step, self.bad_vals, self.last_val, self.validated_step = None, None, 0, None, -1
        self.recent, self.saved_step = [], None
        self.load_state_tensors(t, meta)
        self._meta = meta

    def _layout(self) -> None:
        """The flat reduction: every gradient, then the loss, rank 0's "minutes are up" and one
        stop-signal slot per rank."""
        self._sum = FlatSum(self.world, self.model.params, 2 + self.world.size)

    # ---- the step --------------------------------------------------------------------------
    def _train_step(self, x, y, drop_rng, stop):
        o, w, e = self.opts, self.world, self._sum.extra
        B = o["batch"]
        share = (self.hi - self.lo) / B
        loss, grads, self.hidden = self.model.loss_and_grads(x, y, self.hidden, drop_rng,
                                                             streams=(self.lo, self.hi, B))
        e[:] = 0.0
        e[0] = loss * share
        if w.root and o["minutes"] is not None and self.seconds >= o["minutes"] * 60:
            e[1] = 1.0
        e[2 + w.rank] = stop.local.signum or 0
        grads = self._sum(grads, share)
        loss = float(e[0])
        self._minutes_up = self._minutes_up or bool(e[1])
        signals = [int(s) for s in e[2:] if s]
        if signals and stop.signum is None:
            stop.signum = signals[0]                      # the lowest rank's signal names the stop
        if not math.isfinite(loss):
            self.step += 1
            raise Agreed(str(self._diverged(loss)))
        norm = optim.clip_global_norm(grads, o["clip"])
        lr = optim.learning_rate(self.step, o["lr"], self.warmup, self.total_steps)
        self.optimizer.step(self.model.params, grads, lr)
        return loss, norm, lr

    def _done(self) -> str | None:
        o = self.opts
        if self.total_steps is not None and self.step >= self.total_steps:
            return "epochs" if o["epochs"] is not None else "steps"
        if o["minutes"] is not None and self._minutes_up:
            return "minutes"
        return None

    # ---- rank 0's work, the others waiting ------------------------------------------------
    def _gather_hidden(self) -> None:
        self._full = [tuple(self.world.gather_rows(a, self.rows) for a in s) for s in self.hidden]

    def full_hidden(self) -> list:
        return self._full if self._full is not None else self.hidden

    def _start(self) -> None:
        if self.world.root:
            super()._start()
            self.log(f"mpi: {self.world.size} ranks of {', '.join(map(str, self.rows))} streams; BLAS threads "
                     f"per rank {', '.join(map(str, self.blas_threads))}")
            return
        self._metrics_file = _NullFile()

    def _stop_for(self, local):
        self._stop = AgreedStop(local)
        return self._stop

    def _validate_and_save(self, stop) -> str | None:
        self._gather_hidden()
        result = super()._validate_and_save(self._stop.local) if self.world.root else None
        sig, early, validated = self.world.agree_max(
            [self._stop.local.signum or 0, result == "early-stop", self.validated_step if self.world.root else -1])
        if sig and self._stop.signum is None:
            self._stop.signum = sig
        self.validated_step = validated
        return "early-stop" if early else None

    def _finish(self, reason: str) -> dict:
        if reason == "interrupted":
            self._gather_hidden()
            if self.world.root:
                self.save(best=False)
            self.world.wait()
        elif self.validated_step != self.step:
            self._validate_and_save(lambda: False)
        return self._summary(reason)


class _Positionless:
    """Streams placeholder while a rank's state loads (the real Streams comes with the corpus)."""

    def seek(self, pos):
        pass


def _metadata(data: bytes) -> dict:
    """The __metadata__ of safetensors bytes."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8: 8 + n]).get("__metadata__", {})


def run_rank(world: World, body) -> int:
    """Run `body()` (the train command on this rank); any failure ends the whole job."""
    from completer.errors import SignalExit

    who = f"rank {world.rank} of {world.size}: " if not world.root else ""
    try:
        try:
            rc = body()
        except Agreed as exc:
            if world.root:
                print(f"completer train: error: {exc}", file=sys.stderr, flush=True)
            rc = 2
        world.close()                     # the others sleep while rank 0 draws the plot
        return rc
    except CompleterError as exc:
        print(f"completer train: {who}error: {exc}", file=sys.stderr, flush=True)
        world.abort(2)
    except SignalExit as exc:
        import signal

        print(f"completer train: {who}{signal.Signals(exc.signum).name} again: stopped at once",
              file=sys.stderr, flush=True)
        world.abort(128 + exc.signum)
    except KeyboardInterrupt:
        print(f"completer train: {who}interrupted", file=sys.stderr, flush=True)
        world.abort(130)
    except BaseException as exc:  # a bug: one line naming it, and no rank left waiting
        print(f"completer train: {who}failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        world.abort(1)
    return 1


def bench(world: World, configs, steps: int = 20, warmup: int = 3) -> dict | None:
    """`completer bench --mpi N` on each rank: chars/s of the data-parallel step (this rank's shard
    of completer.evaluation.throughput's batch: forward, backward, the fixed-order sum, clipping, Adam), the
    median step over `steps` after `warmup`; rank 0 returns {name: chars/s}, the others None."""
    import statistics

    from completer.evaluation import throughput as bt

    rates = {}
    lo, hi = shard(bt.BATCH, world.size, world.rank)
    for name in configs:
        model = bt.make(name)
        adam, state, times = optim.Adam(model.params), model.zero_state(hi - lo), []
        total = FlatSum(world, model.params, 1)
        for i, (ids, targets) in enumerate(bt.batches(warmup + steps)):
            world.comm.Barrier()
            t0 = time.perf_counter()
            loss, grads, state = model.loss_and_grads(ids[:, lo:hi], targets[:, lo:hi], state)
            total.extra[0] = loss * (hi - lo) / bt.BATCH
            grads = total(grads, (hi - lo) / bt.BATCH)
            optim.clip_global_norm(grads, bt.CLIP)
            adam.step(model.params, grads, bt.LR)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        step = np.array([statistics.median(times)])
        world.comm.Allreduce(world.MPI.IN_PLACE, step, op=world.MPI.MAX)   # the slowest rank's median
        rates[name] = round(bt.BATCH * bt.WINDOW / float(step[0]))
    return rates if world.root else None
