"""`completer eval PATH...`: measure a model on held-out Python files (see completer/evaluation/evaluate.py)."""
from __future__ import annotations

import json
import sys

from completer.commands.common import add_model_arg, positive_float, positive_int

ROWS = [("bits per character", "bpc", "{:.3f}"), ("next-char top-1 (%)", "top1", "{:.1f}"),
        ("next-char top-5 (%)", "top5", "{:.1f}"), ("line Exact Match (%)", "line_em", "{:.1f}"),
        ("line Edit Similarity", "line_es", "{:.1f}"), ("keystrokes saved", "keystrokes_saved", "{:.3f}")]
MAX_NGRAM_ORDER = 32


def add_parser(sub):
    p = sub.add_parser("eval", help="measure a model on held-out Python files",
                       description="Bits per character, next-character top-1/top-5 accuracy (%%), line "
                                   "completion Exact Match / Edit Similarity (%%, 1,000 seeded cut points, "
                                   "greedy to the end of the line) and keystrokes saved (a fraction), next "
                                   "to lzma, bz2 and a Kneser-Ney n-gram (its bits per character and greedy line "
                                   "completion) given the training corpus.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="Python files, or folders (their .py files)")
    add_model_arg(p)
    p.add_argument("--train-corpus", metavar="DIR", default=None,
                   help="the training corpus (a folder; the evaluated files are left out of it) for the "
                        "lzma, bz2 and n-gram reference points; without it they are not computed")
    p.add_argument("--ngram-order", type=positive_int, default=None, metavar="N",
                   help="order of the Kneser-Ney n-gram reference, 1-32 (default: 8; 16 is the strongest "
                        "in shared/bench/ANCHORS.md)")
    p.add_argument("--adapt", action="store_true",
                   help="also measure with dynamic evaluation: SGD on each window of text once read")
    p.add_argument("--adapt-lr", type=positive_float, default=None, metavar="LR",
                   help="learning rate of --adapt (default: completer.engine.adaptation's)")
    p.add_argument("--project", metavar="DIR", default=None,
                   help="the editor scenario: the memory first reads DIR's Python files (the evaluated "
                        "files left out), then each evaluated file as it is typed; DIR is also the "
                        "references' corpus unless --train-corpus is given")
    p.add_argument("--no-memory", action="store_true",
                   help="measure the network alone (the project memory is on by default; without "
                        "--project it reads only the evaluated files, as they are read)")
    p.add_argument("--save-mixer", metavar="PATH", default=None,
                   help="write the mixer weights the memory run ended with (JSON): the starting weights "
                        "shipped beside a checkpoint as NAME.mixer.json")
    p.add_argument("--cuts", type=positive_int, default=None, metavar="N",
                   help="line-completion cut points (default 1,000, the protocol's; fewer is faster and "
                        "less precise)")
    p.add_argument("--cold", type=positive_int, nargs="?", const=2000, default=None, metavar="N",
                   help="the cold-start scenario: each file's first N characters (default 2,000), a "
                        "fresh memory per file, as a new project")
    p.add_argument("--gate", metavar="PATH", default=None,
                   help="the confidence gate to measure (a NAME.gate.json file; default: the one beside "
                        "the checkpoint, if any)")
    p.add_argument("--save-gate", metavar="PATH", default=None,
                   help="fit the confidence gate on these files' suggestions (every configuration "
                        "measured) and write it (JSON): shipped beside a checkpoint as NAME.gate.json; "
                        "fit it on text the network never trained on (docs/gate.md)")
    p.add_argument("--gate-threshold", type=float, default=None, metavar="P",
                   help="with --save-gate: the default threshold to write, 0..1 (default: the lowest "
                        "whose precision on these files reaches 30%%, see docs/gate.md)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    p.set_defaults(run=run)


def _log(msg: str) -> None:
    print(f"completer eval: {msg}", file=sys.stderr, flush=True)


def run(args) -> int:
    from completer.evaluation import evaluate
    from completer.model import checkpoint
    from completer.engine.adaptation import Adapter
    from completer.errors import CompleterError

    order = args.ngram_order or evaluate.NGRAM_ORDER
    if order > MAX_NGRAM_ORDER:  # memory grows with order x training characters
        raise CompleterError(f"--ngram-order must be at most {MAX_NGRAM_ORDER}, got {order}")
    model, vocab, meta = checkpoint.load(args.model)  # a bad model fails first, before any log line
    from completer.system import blas

    blas.adapt_threads()  # the engine's batch-1 steps: one BLAS thread while other processes are busy
    if args.cold is not None and args.project:
        raise CompleterError("--cold measures a new project: drop --project")
    if args.gate_threshold is not None and (not args.save_gate or not 0 <= args.gate_threshold <= 1):
        raise CompleterError("--gate-threshold needs --save-gate and a value between 0 and 1")
    docs = evaluate.read_files(args.paths, log=_log)
    project = evaluate.train_texts(args.project, docs) if args.project else None
    corpus = args.train_corpus or args.project
    train = (project if corpus == args.project else evaluate.train_texts(corpus, docs)) if corpus else None
    adapter = None
    if args.adapt:
        adapter = Adapter(model, **({"lr": args.adapt_lr} if args.adapt_lr else {}))
    memory, first = None, []
    if not args.no_memory:
        from completer.memory import Memory
        from completer.memory.store import load_weights, weights_path

        weights = load_weights(weights_path(meta["path"]))

        def memory():
            made = Memory(vocab, weights=weights)
            if args.save_mixer and not first:   # the scoring pass's memory, whose weights --save-mixer
                first.append(made)              # writes; no other is kept (--cold makes one per file)
            return made
    elif args.save_mixer:
        raise CompleterError("--save-mixer needs the memory (drop --no-memory)")
    from completer.engine.gate import Gate, gate_path

    # fitting a new gate: the one beside the checkpoint is what it replaces (it may be of an
    # older feature set), so it is measured only when named with --gate
    gate = None if args.save_gate and not args.gate else Gate.load(args.gate or gate_path(meta["path"]))
    if args.gate and gate is None:
        raise CompleterError(f"{args.gate}: no such gate file")
    collect = [] if args.save_gate else None
    _log(f"{len(docs)} files, {sum(len(d.text) for d in docs):,} characters; model {meta['path']}")
    report = evaluate.evaluate(model, vocab, docs, train=train, adapt=adapter, ngram_order=order, log=_log,
                               memory=memory, project=project, cold=args.cold, meta=meta, gate=gate,
                               collect=collect, n_cuts=args.cuts or evaluate.CUTS)
    if args.save_gate:
        from pathlib import Path

        from completer.evaluation.gatefit import fit_gate

        fitted = fit_gate(collect, {"fitted_on": [d.path for d in docs], "model": Path(meta["path"]).name,
                                    "scenario": report["scenario"]})
        if args.gate_threshold is not None:
            fitted.meta["rule_threshold"], fitted.threshold = fitted.threshold, args.gate_threshold
        fitted.save(args.save_gate)
        _log(f"gate fitted on {len(collect)} suggestions, threshold {fitted.threshold:.2f}: {args.save_gate}")
    if args.save_mixer:
        from completer.memory.store import save_weights

        save_weights(args.save_mixer, first[0].weights,
                     {"fitted_on": [d.path for d in docs], "chars": report["chars"], "model": meta["path"]})
        _log(f"mixer weights written to {args.save_mixer}")
    c = meta["config"]
    report["model"] = {"path": meta["path"], "cell": c.cell, "hidden": c.hidden, "layers": c.layers,
                       "params": model.n_params(), "train": meta.get("train") or None}
    report["files"] = [d.path for d in docs]
    if args.json:
        print(json.dumps(report))
        return 0
    runs = report["runs"]
    print(f"{len(docs)} files, {report['chars']:,} characters, {report['cuts']} cut points, "
          f"{report['keystroke_chars']:,} characters typed; {report['seconds']:.1f}s"
          + (f"; the memory first read {report['project_chars']:,} characters of the project"
             if report["project_chars"] else ""))
    print(f"{'':24}" + "".join(f" {name:>15}" for name in runs))
    for label, key, fmt in ROWS:
        cell = lambda v: f"{fmt.format(v) if v is not None else '-':>16}"
        print(f"{label:24}" + "".join(cell(r[key]) for r in runs.values()))
    _print_shown(report)
    gram = f"{report['ngram_order']}-gram"
    for label, key, fmt in (("lzma -9e bpc", "lzma_bpc", "{:.3f}"), ("bz2 -9 bpc", "bz2_bpc", "{:.3f}"),
                            ("zpaq -method 5 bpc", "zpaq_bpc", "{:.3f}"),
                            (f"{gram} Kneser-Ney bpc", "ngram_bpc", "{:.3f}"),
                            (f"{gram} line EM (%)", "ngram_line_em", "{:.1f}"),
                            (f"{gram} line ES", "ngram_line_es", "{:.1f}")):
        v = report[key]
        missing = "- (no zpaq)" if key == "zpaq_bpc" and report["lzma_bpc"] is not None else "- (no --train-corpus)"
        print(f"{label:24}{(fmt.format(v) if v is not None else missing):>10}")
    return 0


def _print_shown(report) -> None:
    """The gate's figures per configuration: every suggestion shown, then gated (with a gate)."""
    runs = report["runs"]
    rows = [("ungated", "shown")] + ([(f"gate {report['gate']['threshold']:.2f}", "gated")] if report["gate"] else [])
    for title, key in rows:
        for label, k, fmt in (("coverage (%)", "coverage", "{:.1f}"), ("precision (%)", "precision", "{:.1f}"),
                              ("accepted chars", "accepted_chars", "{:.2f}"), ("loops (%)", "loops", "{:.1f}")):
            cell = lambda r: f"{fmt.format(r[key][k]) if r.get(key) and r[key][k] is not None else '-':>16}"
            print(f"{(title + ' ' + label):24}" + "".join(cell(r) for r in runs.values()))
