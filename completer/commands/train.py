"""`completer train REPO_DIR... --out RUN_DIR`: train a model on every Python file of repositories
(or of the folders a `--corpus FILE` lists, as `python -m completer_trainers.fetch` writes it).

The work happens in completer_trainers.loop.Run; this module only defines the flags, prints the
summary, draws the plot and maps a signal to its exit code (SIGINT 130, SIGTERM 143, SIGUSR1 138).
Under an MPI launcher (`mpirun -n N completer train ...`) it runs completer_trainers.distributed's
DistributedRun on every rank, and only rank 0 prints.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys

from completer.commands.common import fraction, nonneg_float, nonneg_int, positive_float, positive_int


def add_parser(sub):
    p = sub.add_parser(
        "train", help="train a model on every Python file of repositories",
        description="Train a character-level model on the *.py files under REPO_DIR (plus --include globs); "
                    "several REPO_DIRs, or --corpus FILE, make one corpus whose paths start with each folder's "
                    "name. "
                    "RUN_DIR receives best.safetensors, last.safetensors, state.safetensors (resume), "
                    "metrics.jsonl and loss.png. Ctrl-C or SIGTERM saves and exits 130 / 143; --resume continues "
                    "bit for bit. Defaults: lstm, hidden 256, 1 layer, embed 64, batch 32, seq 128, adam, "
                    "20 epochs.")
    p.add_argument("repo", metavar="REPO_DIR", nargs="*", help="repositories to learn from")
    p.add_argument("--corpus", metavar="FILE", default=None,
                   help="a file listing corpus folders, one per line, each optionally followed by xWEIGHT (its "
                        "training files read WEIGHT times per epoch); relative to the file's folder. "
                        "`python -m completer_trainers.fetch MANIFEST DEST` writes DEST/corpus.txt")
    p.add_argument("--out", metavar="RUN_DIR", required=True,
                   help="run directory for checkpoints, resume state, metrics and plot")
    m = p.add_argument_group("model")
    m.add_argument("--cell", default=None, help="recurrent cell: lstm, gru, rnn or any plugin cell (default lstm)")
    m.add_argument("--hidden", type=positive_int, default=None, help="hidden units per layer (default 256)")
    m.add_argument("--layers", type=positive_int, default=None, help="stacked layers (default 1)")
    m.add_argument("--embed", type=positive_int, default=None, help="character embedding size (default 64)")
    m.add_argument("--dropout", type=fraction, default=None, help="dropout between layers and before the head "
                                                                   "(default 0)")
    m.add_argument("--weight-drop", type=fraction, default=None,
                   help="DropConnect on the recurrent weight matrices, one mask per window (default 0)")
    t = p.add_argument_group("optimisation")
    t.add_argument("--batch", type=positive_int, default=None, help="parallel streams B (default 32)")
    t.add_argument("--seq", type=positive_int, default=None, help="BPTT window T in characters (default 128)")
    t.add_argument("--optimizer", choices=["adam", "sgd", "adagrad"], default=None,
                   help="adam (default), sgd (momentum 0.9) or adagrad")
    t.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate (default 2e-3 for adam, 0.05 for sgd and adagrad)")
    t.add_argument("--clip", type=nonneg_float, default=None, help="global gradient-norm clip, 0 = off (default 5)")
    t.add_argument("--warmup", type=nonneg_int, default=None,
                   help="linear warm-up steps, then cosine decay to 10%% at the end of the budget "
                        "(default min(100, 10%% of the steps))")
    t.add_argument("--weight-decay", type=nonneg_float, default=None,
                   help="decoupled weight decay (AdamW) on the weight matrices (default 0)")
    t.add_argument("--ema", type=fraction, default=None,
                   help="validate and save an exponential moving average of the weights with this decay, "
                        "e.g. 0.999 (default 0: the weights as trained)")
    t.add_argument("--seed", type=nonneg_int, default=None, help="seed for init, split, order, dropout (default 0)")
    b = p.add_argument_group("budget (one of; default --epochs 20; each counts the whole run, resumes included)")
    b.add_argument("--steps", type=positive_int, default=None, help="stop after N steps in total")
    b.add_argument("--epochs", type=positive_float, default=None, help="stop after N passes over the training files")
    b.add_argument("--minutes", type=positive_float, default=None, help="stop after M minutes (constant lr "
                                                                         "after warm-up)")
    v = p.add_argument_group("data and validation")
    v.add_argument("--val-fraction", type=fraction, default=None,
                   help="share of files held for validation, at least one file; 0 = no validation, "
                        "train on every file and keep the latest checkpoint as best (default 0.1)")
    v.add_argument("--val-files", nargs="+", action="extend", default=None, metavar="PATH",
                   help="repo-relative files to validate on (instead of --val-fraction)")
    v.add_argument("--val-every", type=positive_int, default=None,
                   help="validate and save checkpoints every N steps (default 100)")
    v.add_argument("--val-chars", type=positive_int, default=None,
                   help="validate on at most this many characters of the validation files (default 250000)")
    v.add_argument("--patience", type=nonneg_int, default=None,
                   help="stop after N validations without improvement, 0 = never (default 10)")
    v.add_argument("--include", action="append", default=None, metavar="GLOB",
                   help="also train on files matching GLOB (repo-relative path or file name; repeatable)")
    v.add_argument("--heldout", nargs="+", action="extend", default=None, metavar="PATH",
                   help="repo-relative files never trained on nor used for validation")
    v.add_argument("--vocab-size", type=positive_int, default=None, metavar="N",
                   help="at most N symbols: the N-1 most frequent training characters and the unknown symbol, "
                        "which reads every other one (default: every character; with --init the checkpoint's "
                        "characters all stay and new ones join up to N)")
    v.add_argument("--min-count", type=positive_int, default=None, metavar="C",
                   help="leave characters seen fewer than C times in training to the unknown symbol (default 1)")
    v.add_argument("--max-file-kb", type=positive_int, default=None,
                   help="skip files larger than this (default 1000 kB)")
    r = p.add_argument_group("run")
    r.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR where it stopped")
    r.add_argument("--force", action="store_true", help="start over in a non-empty RUN_DIR")
    r.add_argument("--init", metavar="CKPT", default=None,
                   help="fine-tune from a checkpoint or run directory (new characters get fresh rows)")
    r.add_argument("--log-every", type=positive_int, default=None, help="steps per metrics line (default 10)")
    r.add_argument("--verbose", action="store_true", help="list skipped files and validation files")
    r.add_argument("--json", action="store_true", help="make the last stdout line a JSON summary")
    p.set_defaults(run=run)


OPTION_FLAGS = ("cell", "hidden", "layers", "embed", "dropout", "weight_drop", "batch", "seq", "optimizer", "lr",
                "clip", "warmup", "weight_decay", "ema", "seed", "steps", "epochs", "minutes", "val_fraction",
                "val_files", "val_every", "val_chars", "patience", "include", "heldout", "log_every", "vocab_size",
                "min_count")


def run(args) -> int:
    from completer_trainers import launcher

    world = launcher.start()  # None without an MPI launcher: then mpi4py is never imported
    if world is None:
        return _train(args, None)
    from completer_trainers.distributed import run_rank

    return run_rank(world, lambda: _train(args, world))


def sources(args) -> list:
    """[(folder, weight)] from REPO_DIR... and --corpus; CompleterError when there is none."""
    from pathlib import Path

    from completer.errors import CompleterError

    out = [(Path(d), 1) for d in args.repo]
    if args.corpus is not None:
        from completer_trainers.corpus import read_manifest

        out += read_manifest(args.corpus)
    if not out:
        raise CompleterError("give the corpus: one or more REPO_DIR, or --corpus FILE")
    return out


def _where(args) -> str:
    return " ".join([*args.repo] + ([f"--corpus {args.corpus}"] if args.corpus else []))


def _train(args, world) -> int:
    from completer_trainers.loop import Run
    from completer_trainers.plot import plot_run

    options = {k: getattr(args, k) for k in OPTION_FLAGS}
    options["max_file_bytes"] = args.max_file_kb * 1000 if args.max_file_kb else None
    kw = dict(resume=args.resume, init=args.init, force=args.force, verbose=args.verbose)
    repo = sources(args) if world is None or world.root else []
    if world is None:
        trainer = Run(repo, args.out, options, **kw)
    else:
        from completer_trainers.distributed import DistributedRun

        trainer = DistributedRun(world, repo, args.out, options, **kw)
    s = trainer.train()
    if world is not None and not world.root:  # rank 0 reports and plots; the others exit alike
        return 128 + s["signal"] if s["signal"] is not None else 0

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    if s["signal"] is not None:
        name = signal.Signals(s["signal"]).name
        print(f"{name}: stopped at step {s['steps']}; saved {s['last']} and resume state; continue with "
              f"`completer train {_where(args)} --out {args.out} --resume`", file=sys.stderr)
    else:
        print(f"done ({s['stopped']}): {s['steps']} steps, {s['epochs']:.2f} epochs, {s['chars']:,} chars in "
              f"{s['seconds']:.1f}s ({s['chars_per_s']:,.0f} chars/s training); train {f(s['train_bpc'])} bpc, "
              f"val {f(s['val_bpc'])} bpc, best {f(s['best_val_bpc'])} bpc at step {s['best_step']} -> "
              f"{s['checkpoint']}", file=sys.stderr)
        png, why = plot_run(args.out)
        print(f"plot: {png}" if png else f"plot: skipped ({why})", file=sys.stderr)
    if args.json:
        print(json.dumps(s))
    if s["signal"] is not None:
        return 128 + s["signal"]
    return 0
