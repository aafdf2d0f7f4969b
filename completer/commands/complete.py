"""`completer complete`: read a prefix on stdin, print its continuation(s)."""
from __future__ import annotations

import json
import logging
import sys
import time

from completer.commands.common import (add_memory_args, add_model_arg, attach_memory, fraction, nonneg_float,
                                      nonneg_int, positive_int)


def add_decoding_args(p) -> None:
    p.add_argument("--decoder", default=None, metavar="NAME",
                   help="greedy, temperature, top-k, top-p, beam or a plugin decoder "
                        "(default: greedy, or beam when --beam is given)")
    p.add_argument("--temperature", type=nonneg_float, default=1.0,
                   help="sampling temperature for temperature/top-k/top-p (0 = most probable; default 1)")
    p.add_argument("--top-k", type=positive_int, default=10, help="candidates kept by top-k (default 10)")
    p.add_argument("--top-p", type=float, default=0.9, help="probability mass kept by top-p (default 0.9)")
    p.add_argument("--seed", type=nonneg_int, default=None, help="random seed, for reproducible samples")


def add_parser(sub):
    p = sub.add_parser("complete", help="read a prefix on stdin, print its continuation",
                       description="Read a prefix on stdin and print the model's continuation(s). "
                                   "Bad input exits 2 with one line on stderr.")
    add_model_arg(p)
    p.add_argument("--mode", choices=["char", "token", "line", "block"], default="line",
                   help="how much to complete: the next character, the current token, the rest of "
                        "the line, or an indented block (default line)")
    add_decoding_args(p)
    p.add_argument("--beam", type=positive_int, default=None, help="beam width (implies --decoder beam)")
    p.add_argument("--n", type=positive_int, default=1, help="how many continuations (default 1)")
    p.add_argument("--max-chars", type=positive_int, default=None,
                   help="longest continuation (default 80, block 400)")
    p.add_argument("--min-prob", type=fraction, default=0.0,
                   help="hide continuations less probable than this (default 0)")
    p.add_argument("--suffix", default="", help="the text after the cursor, for post-processing")
    add_memory_args(p, None)
    p.add_argument("--json", action="store_true",
                   help='print {"completions": [{"text", "logprob"}], "elapsed_ms"}')
    p.set_defaults(run=run)


def run(args) -> int:
    t0 = time.perf_counter()
    from completer.engine import Engine, Request

    prefix = sys.stdin.read()
    engine = Engine.from_checkpoint(args.model)
    attach_memory(engine, args, logging.getLogger("completer"), wait=True)
    decoder = args.decoder or ("beam" if args.beam else "greedy")
    req = Request(mode=args.mode, decoder=decoder, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, beam=args.beam or 4, n=args.n, seed=args.seed,
                  max_chars=args.max_chars or (400 if args.mode == "block" else 80),
                  min_prob=args.min_prob)
    completions = engine.complete_text(prefix, req, suffix=args.suffix)
    elapsed = (time.perf_counter() - t0) * 1000
    if args.json:
        print(json.dumps({"completions": [{"text": c.text, "logprob": round(c.logprob, 4)}
                                          for c in completions], "elapsed_ms": round(elapsed, 2)}))
    else:
        for c in completions:
            print(c.text)
    return 0
