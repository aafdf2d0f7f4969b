"""`completer bench`: training throughput, completion latency, and editor-protocol latency.

Training throughput is characters/second of forward + backward + clipping + Adam in float32 at
batch 32, window 128, embedding 64, the setup of shared/bench/torch_reference.py, so the two
compare directly when run alternately on the same machine. Latency replays Python files keystroke
by keystroke through the engine (completer.evaluation.latency; by default two of completer's own
modules: real code the shipped model never trained on) and through `completer serve` over pipes
(completer.evaluation.serving: didChange of one character -> inlineCompletion, 2,000-line document).
"""
from __future__ import annotations

import json
from pathlib import Path

from completer.errors import CompleterError
from completer.commands.common import add_model_arg, nonneg_int, positive_int


def add_parser(sub):
    p = sub.add_parser("bench", help="training throughput and completion latency",
                       description="Measure training throughput (chars/s of forward + backward + "
                                   "Adam, float32, batch 32, window 128, embedding 64) per config, "
                                   "and completion latency when available.")
    p.add_argument("--configs", nargs="+", metavar="CONFIG", default=None,
                   help="CELL-HIDDENxLAYERS, e.g. lstm-512x1 gru-256x1 "
                        "(default: lstm-512x1 lstm-256x1 gru-256x1 rnn-256x1)")
    p.add_argument("--steps", type=positive_int, default=20, help="timed training steps per config (default 20)")
    p.add_argument("--warmup", type=nonneg_int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--phases", action="store_true", help="also print where the time of a step goes, per config")
    p.add_argument("--latency-files", nargs="+", metavar="PY", default=None,
                   help="Python files to replay keystroke by keystroke for the latency figures "
                        "(default: completer's own engine/service.py and server/jsonrpc.py)")
    p.add_argument("--mpi", type=positive_int, default=None, metavar="N",
                   help="also measure data-parallel training over N MPI ranks (mpirun -n N, one BLAS thread "
                        "per core's share), each config alternating with the single process; needs "
                        "pip install 'completer[mpi]'")
    p.add_argument("--mpirun", default=None, metavar="CMD",
                   help="the MPI launcher for --mpi (default: the mpirun beside this Python, else on PATH)")
    p.add_argument("--load", type=nonneg_int, default=0, metavar="N",
                   help="also measure serve latency with N CPU-bound processes running beside it "
                        "(serve_load_ms_p50/p99; default 0: not measured)")
    p.add_argument("--no-train", action="store_true", help="skip the training throughput")
    p.add_argument("--no-latency", action="store_true", help="skip the latency figures")
    add_model_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.epilog = ("Training: OpenBLAS uses every core by default; OPENBLAS_NUM_THREADS=N sets its threads "
                "(compare with torch_reference.py --threads N). Latency: the serving frontends' policy "
                "(one thread while other processes are busy; completer/blas.py) unless OPENBLAS_NUM_THREADS is set.")
    p.set_defaults(run=run)


def run(args) -> int:
    from completer.evaluation import throughput

    configs = args.configs or throughput.DEFAULT_CONFIGS
    for name in configs:  # validate everything before spending minutes measuring
        throughput.validate_config(name)
    result = {}
    if not args.no_train and args.mpi:
        result.update(_with_mpi(args, configs))
    elif not args.no_train:
        result.update(throughput.measure(configs, steps=args.steps, warmup=args.warmup))
        if args.phases:
            result["phases_ms"] = {name: throughput.phases(name, steps=args.steps) for name in configs}
    if not args.no_latency:
        from completer.evaluation import latency
        from completer.system import blas, sched
        from completer.evaluation import serving as serve_bench

        blas.adapt_threads()  # the engine figures under the REPL's thread policy (serve starts its own)
        sched.short_slice()  # picked sooner when other processes are busy (completer/sched.py)

        package = Path(__file__).resolve().parents[1]
        files = args.latency_files or [package / "engine" / "service.py", package / "server" / "jsonrpc.py"]
        result.update(latency.measure(model_path=args.model, files=files))
        serve = serve_bench.measure(args.model)
        result.update(serve_ms_p50=serve["p50_ms"], serve_ms_p99=serve["p99_ms"], serve_cut=serve["cut"],
                      serve_loadavg=serve["loadavg"])
        if args.load:
            loaded = serve_bench.measure(args.model, load=args.load)
            result.update(serve_load=args.load, serve_load_ms_p50=loaded["p50_ms"],
                          serve_load_ms_p99=loaded["p99_ms"], serve_load_cut=loaded["cut"])
    if args.json:
        print(json.dumps(result))
        return 0
    for name, rate in result.get("train_chars_per_s", {}).items():
        print(f"{name:12s} {rate:10d} chars/s (training)")
    for name, rate in result.get("mpi_train_chars_per_s", {}).items():
        print(f"{name:12s} {rate:10d} chars/s (training, {result['mpi_ranks']} MPI ranks, "
              f"{result['mpi_speedup'][name]:.2f}x)")
    for name, ph in result.get("phases_ms", {}).items():
        print(f"{name:12s} " + "  ".join(f"{k} {v:.1f}" for k, v in ph.items()) + "  (ms per step)")
    for key, value in result.items():
        if key not in ("train_chars_per_s", "phases_ms", "mpi_train_chars_per_s", "mpi_speedup", "batch", "window", "embed", "vocab", "dtype", "steps",
                       "blas_threads"):
            print(f"{key}: {value}")
    return 0


def _with_mpi(args, configs) -> dict:
    """Per config, the single process and then `mpirun -n N` (completer_trainers.launcher bench)."""
    import shutil
    import subprocess
    import sys

    from completer.evaluation import throughput

    launcher = args.mpirun or str(Path(sys.executable).with_name("mpirun"))
    if not Path(launcher).is_file() and not shutil.which(launcher):
        launcher = shutil.which("mpirun") or shutil.which("mpiexec")
        if not launcher:
            raise CompleterError("--mpi: no mpirun found; pip install 'completer[mpi]' or give --mpirun")
    result, mpi = None, {}
    for name in configs:
        single = throughput.measure([name], steps=args.steps, warmup=args.warmup)
        result = single if result is None else {**result, "train_chars_per_s": {
            **result["train_chars_per_s"], **single["train_chars_per_s"]}}
        p = subprocess.run([launcher, "-n", str(args.mpi), sys.executable, "-m", "completer_trainers.launcher",
                            "bench", "--configs", name, "--steps", str(args.steps), "--warmup", str(args.warmup)],
                           capture_output=True, text=True)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if p.returncode != 0 or not lines:
            err = (p.stderr.strip().splitlines() or ["no output"])[-1]
            raise CompleterError(f"--mpi {args.mpi}: {launcher} failed (exit {p.returncode}): {err}")
        out = json.loads(lines[-1])
        mpi.setdefault("mpi_train_chars_per_s", {}).update(out["mpi_train_chars_per_s"])
        mpi["mpi_ranks"], mpi["mpi_blas_threads"] = out["mpi_ranks"], out["mpi_blas_threads"]
    mpi["mpi_speedup"] = {n: round(r / result["train_chars_per_s"][n], 3) for n, r in mpi["mpi_train_chars_per_s"].items()}
    return {**result, **mpi}
