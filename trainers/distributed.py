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
The collectives (World), the flat sum (FlatSum), the sharding and `completer bench --mpi`'s step
live in world.py.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig
from completer.model.vocab import Vocab
from completer_trainers import optim
from completer_trainers.batching import Streams
from completer_trainers.loop import STATE_KEY, Run
from completer_trainers.world import FlatSum, World, bench, shard  # noqa: F401  (bench, World: re-exported)


class Agreed(CompleterError):
    """An error every rank reached together: rank 0 reports it; the others exit quietly."""


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
