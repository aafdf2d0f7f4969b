"""Is this process one rank of an MPI job? Decided from the launcher's environment, before anything
imports mpi4py (its initialisation alone can cost a second) or NumPy (whose BLAS reads its thread
count once, at import).

    size_from_env() -> int | None   ranks the launcher announced (None: no launcher seen)
    start() -> World | None         MPI initialised and BLAS threads set, or None for one process

Launchers recognised (any MPI library that mpi4py was built against works the same way):
  PMI_SIZE              MPICH's Hydra (`mpirun`/`mpiexec`), Intel MPI, `srun --mpi=pmi2`
  OMPI_COMM_WORLD_SIZE  Open MPI's `mpirun`
  SLURM_STEP_NUM_TASKS  Slurm's `srun` (with any --mpi plugin)
  PMIX_RANK             a PMIx launcher (PRRTE's `prterun`, `srun --mpi=pmix`): size asked from MPI
A size of 1 (`mpirun -n 1`) is an ordinary single-process run.

BLAS threads per rank default to the node's cores divided by the ranks on the node (at least 1,
at most the cores the rank may run on), also when NumPy is already loaded (OpenBLAS's own setter);
an OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS the user set is left alone.
"""
from __future__ import annotations

import os
import sys

SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def size_from_env(env=None) -> int | None:
    env = os.environ if env is None else env
    for var in SIZE_VARS:
        try:
            return int(env[var])
        except (KeyError, ValueError):
            continue
    return 0 if "PMIX_RANK" in env else None   # 0: launched, size unknown until MPI says


def blas_threads(local_ranks: int) -> int:
    cores = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = cores
    return max(1, min(allowed, cores // max(local_ranks, 1)))


def set_threads(n: int) -> None:
    """n BLAS threads for this rank unless the user chose (a THREAD_VARS variable is set): through
    the environment, which OpenBLAS reads when NumPy loads, and, when NumPy is loaded already (it
    read the variables at its import: a plugin, a sitecustomize), through OpenBLAS's own setter."""
    if any(v in os.environ for v in THREAD_VARS):
        return
    for v in THREAD_VARS:
        os.environ[v] = str(n)
    if "numpy" in sys.modules:
        from completer.system.blas import openblas

        found = openblas()
        if found is not None:
            found[0](n)


def start():
    """A World for this rank when launched as 2+ ranks, else None (mpi4py never imported)."""
    size = size_from_env()
    if size is None or size == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        from completer.errors import CompleterError

        raise CompleterError("started by an MPI launcher but mpi4py is not installed: "
                             "pip install 'completer[mpi]' (or mpi4py built against your MPI)") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        if size > 1:  # e.g. srun without an MPI plugin: N copies that would all write one run
            from completer.errors import CompleterError

            raise CompleterError(f"the launcher started {size} tasks but MPI sees 1 rank (a launcher without "
                                 f"PMI, e.g. srun without --mpi=pmix or pmi2); start it with mpirun or "
                                 f"srun --mpi=...")
        return None
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    set_threads(blas_threads(node.Get_size()))
    from completer_trainers.world import World

    return World(comm, node)


def main(argv=None) -> int:
    """`mpirun -n N python -m completer_trainers.launcher bench --configs C... --steps S --warmup W`:
    what `completer bench --mpi N` starts; rank 0 prints one JSON line."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m completer_trainers.launcher")
    p.add_argument("what", choices=["bench"])
    p.add_argument("--configs", nargs="+", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    world = start()
    if world is None:
        print("run under an MPI launcher with 2 or more ranks", file=sys.stderr)
        return 2
    from completer_trainers.world import bench

    from completer.system.blas import openblas_threads

    rates = bench(world, args.configs, args.steps, args.warmup)
    threads = world.gather_ints(openblas_threads() or 0)   # what each rank's OpenBLAS really uses
    if rates is not None:
        print(json.dumps({"mpi_train_chars_per_s": rates, "mpi_ranks": world.size,
                          "mpi_blas_threads": max(threads), "mpi_blas_threads_per_rank": threads}), flush=True)
    world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
