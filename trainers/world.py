"""The MPI side of data-parallel training: World (this rank's view of the job and the few collectives
the trainer needs, all over NumPy buffers), FlatSum (the step's gradient sum in one flat buffer, in
a fixed order), shard (which streams a rank takes) and bench (`completer bench --mpi`'s step).
See distributed.py for the run built on them. No pickle: only the buffer (upper-case) mpi4py calls.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from completer_trainers import optim

POLL_S = 0.002


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
