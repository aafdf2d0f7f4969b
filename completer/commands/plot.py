"""`completer plot RUN_DIR`: draw a run's loss curve (needs the optional extra completer[plot])."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("plot", help="draw a training run's loss curve as a PNG",
                       description="Plot train and validation bits per character against characters seen, "
                                   "from RUN_DIR/metrics.jsonl, into RUN_DIR/loss.png (or --out). "
                                   "Needs matplotlib: pip install 'completer[plot]'.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a `completer train` run directory")
    p.add_argument("--out", metavar="PNG", default=None, help="where to write the image (default RUN_DIR/loss.png)")
    p.set_defaults(run=run)


def run(args) -> int:
    from completer.errors import CompleterError
    from completer_trainers.plot import plot_run

    png, why = plot_run(args.run_dir, args.out)
    if png is None:
        raise CompleterError(why)
    print(png)
    return 0
