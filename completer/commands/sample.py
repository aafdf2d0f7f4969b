"""`completer sample`: generate free text from a prompt, no stop rule but the length."""
from __future__ import annotations

import sys

from completer.commands.common import add_model_arg, nonneg_int, positive_int


def add_parser(sub):
    from completer.commands.complete import add_decoding_args

    p = sub.add_parser("sample", help="generate free text from a prompt",
                       description="Continue --prompt for --chars characters (temperature sampling "
                                   "by default) and print prompt + continuation.")
    add_model_arg(p)
    p.add_argument("--prompt", default="", help="text to start from (default: nothing)")
    p.add_argument("--chars", type=positive_int, default=400, help="characters to generate (default 400)")
    p.add_argument("--greedy", action="store_true", help="always take the most probable character")
    add_decoding_args(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from completer.engine import MAX_CHARS, Engine, Request
    from completer.errors import CompleterError

    if args.chars > MAX_CHARS:
        raise CompleterError(f"--chars is at most {MAX_CHARS}")
    engine = Engine.from_checkpoint(args.model)
    decoder = "greedy" if args.greedy else (args.decoder or "temperature")
    req = Request(mode="free", decoder=decoder, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, seed=args.seed, max_chars=args.chars)
    out = engine.complete_text(args.prompt, req)
    sys.stdout.write(args.prompt + (out[0].text if out else "") + "\n")
    return 0
