"""`completer repl` (also plain `completer`): the interactive prompt with ghost-text completion.

When stdin is not a terminal (a pipe or a file), there is nobody to type: read the text from
stdin and print its continuation, as `completer complete` does.
"""
from __future__ import annotations

import sys

from completer.commands.common import add_memory_args, add_model_arg, attach_memory, nonneg_float, positive_float

# completer.engine.stops.MODES[:4] ("free", no stop rule, is for `completer sample`), spelt out:
# importing completer.engine loads NumPy, and the CLI imports every command module before it runs
# one, so `completer train` under mpirun could no longer set each rank's BLAS threads before NumPy
# loads (tests/test_cli.py checks both: the same modes, and no NumPy on the way to a command).
MODES = ("char", "token", "line", "block")


def add_parser(sub):
    p = sub.add_parser("repl", help="interactive prompt with the model's continuation as ghost text",
                       description="Open the interactive completion prompt (the default command). "
                                   "With stdin not a terminal, print the continuation of stdin.")
    add_model_arg(p)
    p.add_argument("--mode", choices=MODES, default="line",
                   help="how much to suggest: one character, a token, the rest of the line, a block "
                        "(default: line)")
    p.add_argument("--decoder", default="greedy",
                   help="greedy, temperature, top-k, top-p, beam, or a plugin's decoder (default: greedy)")
    p.add_argument("--temperature", type=nonneg_float, default=1.0,
                   help="sampling temperature for temperature/top-k/top-p (0 = most probable; default 1)")
    p.add_argument("--adapt", action="store_true",
                   help="learn from what you type (dynamic evaluation): suggestions pick up the names of "
                        "the session; :reset restores the shipped weights. Off by default")
    p.add_argument("--adapt-lr", type=positive_float, default=None, metavar="LR",
                   help="learning rate of --adapt (default 0.3)")
    add_memory_args(p, ".")
    p.set_defaults(run=run)


def run(args) -> int:
    from completer.engine import Engine
    from completer.repl.session import Session, Settings, check_settings

    check_settings(mode=args.mode, decoder=args.decoder)
    engine = Engine.from_checkpoint(args.model, adapt=args.adapt, adapt_lr=args.adapt_lr)  # a bad --model fails here, before any UI
    session = Session(engine, Settings(mode=args.mode, decoder=args.decoder, temperature=args.temperature))
    import logging

    attach_memory(engine, args, logging.getLogger("completer"), wait=not sys.stdin.isatty())
    if not sys.stdin.isatty():
        text = sys.stdin.read()
        completions = engine.complete_text(text, session.request())
        sys.stdout.write((completions[0].text if completions else "") + "\n")
        return 0
    from completer.system import blas, sched
    from completer.repl import app

    blas.adapt_threads()  # one BLAS thread while other processes keep the cores busy (completer/blas.py)
    sched.short_slice()  # picked sooner when other processes are busy (completer/sched.py)
    return app.run(session)
