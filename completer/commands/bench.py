"""`completer bench`: training throughput (and, when `completer.bench_latency` exists, latency).

Training throughput is characters/second of forward + backward + clipping + Adam in float32 at
batch 32, window 128, embedding 64, the setup of shared/bench/torch_reference.py, so the two
compare directly when run alternately on the same machine.
"""
from __future__ import annotations

import importlib
import json

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
                        "(completer.bench_latency); without them only training throughput is measured")
    p.add_argument("--no-train", action="store_true", help="skip the training throughput")
    add_model_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.epilog = ("OpenBLAS uses every core by default; OPENBLAS_NUM_THREADS=N sets its threads "
                "(compare with torch_reference.py --threads N).")
    p.set_defaults(run=run)


def run(args) -> int:
    from completer import bench_train

    configs = args.configs or bench_train.DEFAULT_CONFIGS
    for name in configs:  # validate everything before spending minutes measuring
        bench_train.validate_config(name)
    try:
        latency = importlib.import_module("completer.bench_latency")
    except ModuleNotFoundError as exc:
        if exc.name != "completer.bench_latency":
            raise
        latency = None
    if args.latency_files and latency is None:
        raise CompleterError("latency figures need completer.bench_latency, which is not installed")
    result = {}
    if not args.no_train:
        result.update(bench_train.measure(configs, steps=args.steps, warmup=args.warmup))
        if args.phases:
            result["phases_ms"] = {name: bench_train.phases(name, steps=args.steps) for name in configs}
    if args.latency_files:
        result.update(latency.measure(model_path=args.model, files=args.latency_files))
    if args.json:
        print(json.dumps(result))
        return 0
    for name, rate in result.get("train_chars_per_s", {}).items():
        print(f"{name:12s} {rate:10d} chars/s (training)")
    for name, ph in result.get("phases_ms", {}).items():
        print(f"{name:12s} " + "  ".join(f"{k} {v:.1f}" for k, v in ph.items()) + "  (ms per step)")
    for key, value in result.items():
        if key not in ("train_chars_per_s", "phases_ms", "batch", "window", "embed", "vocab", "dtype", "steps",
                       "blas_threads"):
            print(f"{key}: {value}")
    return 0
