"""`completer eval PATH...`: measure a model on held-out Python files (see completer/evaluate.py)."""
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
                   help="learning rate of --adapt (default: completer.adapt's)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    p.set_defaults(run=run)


def _log(msg: str) -> None:
    print(f"completer eval: {msg}", file=sys.stderr, flush=True)


def run(args) -> int:
    from completer import checkpoint, evaluate
    from completer.adapt import Adapter
    from completer.errors import CompleterError

    order = args.ngram_order or evaluate.NGRAM_ORDER
    if order > MAX_NGRAM_ORDER:  # memory grows with order x training characters
        raise CompleterError(f"--ngram-order must be at most {MAX_NGRAM_ORDER}, got {order}")
    model, vocab, meta = checkpoint.load(args.model)  # a bad model fails first, before any log line
    docs = evaluate.read_files(args.paths, log=_log)
    train = evaluate.train_texts(args.train_corpus, docs) if args.train_corpus else None
    adapter = None
    if args.adapt:
        adapter = Adapter(model, **({"lr": args.adapt_lr} if args.adapt_lr else {}))
    _log(f"{len(docs)} files, {sum(len(d.text) for d in docs):,} characters; model {meta['path']}")
    report = evaluate.evaluate(model, vocab, docs, train=train, adapt=adapter, ngram_order=order, log=_log)
    c = meta["config"]
    report["model"] = {"path": meta["path"], "cell": c.cell, "hidden": c.hidden, "layers": c.layers,
                       "params": model.n_params(), "train": meta.get("train") or None}
    report["files"] = [d.path for d in docs]
    if args.json:
        print(json.dumps(report))
        return 0
    static = report.get("static")
    print(f"{len(docs)} files, {report['chars']:,} characters, {report['cuts']} cut points, "
          f"{report['keystroke_chars']:,} characters typed; {report['seconds']:.1f}s")
    head = f"{'':24}{'model':>10}" + (f"{'adapted':>10}" if static else "")
    print(head)
    for label, key, fmt in ROWS:
        cell = lambda v: f"{fmt.format(v) if v is not None else '-':>10}"
        print(f"{label:24}" + (cell(static[key]) + cell(report[key]) if static else cell(report[key])))
    gram = f"{report['ngram_order']}-gram"
    for label, key, fmt in (("lzma -9e bpc", "lzma_bpc", "{:.3f}"), ("bz2 -9 bpc", "bz2_bpc", "{:.3f}"),
                            (f"{gram} Kneser-Ney bpc", "ngram_bpc", "{:.3f}"),
                            (f"{gram} line EM (%)", "ngram_line_em", "{:.1f}"),
                            (f"{gram} line ES", "ngram_line_es", "{:.1f}")):
        v = report[key]
        print(f"{label:24}{(fmt.format(v) if v is not None else '- (no --train-corpus)'):>10}")
    return 0
