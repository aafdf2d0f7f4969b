"""`completer serve`: the editor protocol, JSON-RPC 2.0 over stdin/stdout (LSP framing or JSON lines).

stdout carries protocol frames only: the frames go to a private copy of file descriptor 1, and
fd 1 itself (and sys.stdout) is pointed at stderr, so a stray print anywhere, even from C code,
can never corrupt the stream. Logs go to stderr or --log-file.
"""
from __future__ import annotations

import argparse

from completer.commands.common import add_model_arg, positive_float, positive_int
from completer.server import framing  # imports only threading
from completer.server.framing import MAX_MESSAGE_BYTES


def add_parser(sub):
    p = sub.add_parser("serve", help="serve completions to editors over stdin/stdout (LSP or JSON lines)",
                       description="Speak JSON-RPC 2.0 on stdin/stdout: the Language Server Protocol "
                                   "(Content-Length framing) by default, one message per line with --jsonl. "
                                   "Serves textDocument/inlineCompletion, textDocument/completion and "
                                   "completer/complete. Exit code: 0 after shutdown+exit or end of input, "
                                   "1 on exit without shutdown.")
    add_model_arg(p)
    p.add_argument("--jsonl", action="store_true", help="one JSON-RPC message per line instead of LSP framing")
    p.add_argument("--stdio", action="store_true", help=argparse.SUPPRESS)  # what some LSP clients append
    p.add_argument("--max-message-bytes", type=positive_int, default=MAX_MESSAGE_BYTES, metavar="N",
                   help=f"reject (unread) any message larger than N bytes (default {MAX_MESSAGE_BYTES})")
    p.add_argument("--adapt", action="store_true",
                   help="learn each document's typed text as you type (dynamic evaluation; "
                        "setting adapt). Off by default")
    p.add_argument("--adapt-lr", type=positive_float, default=None, metavar="LR",
                   help="learning rate of --adapt (default: completer.engine.adaptation's, 0.3; setting adaptLr)")
    p.add_argument("--no-memory", action="store_true",
                   help="serve the network alone: no project memory (setting memory; on by default, "
                        "reading the workspace from initialize)")
    p.add_argument("--log-file", metavar="PATH", default=None, help="append logs here instead of stderr")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning",
                   help="how much to log (default warning)")
    p.set_defaults(run=run)


def run(args) -> int:
    import logging
    import os
    import sys

    from completer.model import checkpoint
    from completer.system import blas, sched
    from completer.engine import CancelToken
    from completer.errors import CompleterError
    from completer.server.handlers import Session
    from completer.server.jsonrpc import Dispatcher

    if args.model is not None:  # a wrong path or a corrupt header fails now (exit 2), not at initialize
        checkpoint.read_metadata(checkpoint.resolve(args.model))
    try:
        handler = logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    except OSError as exc:
        raise CompleterError(f"cannot open log file {args.log_file}: {exc.strerror}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s completer serve %(levelname)s %(message)s"))
    log = logging.getLogger("completer")
    log.addHandler(handler)
    log.setLevel(args.log_level.upper())

    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reader, writer = framing.make(args.jsonl, sys.stdin.buffer, stdout, args.max_message_bytes)
    blas.adapt_threads()  # one BLAS thread while other processes keep the cores busy (completer/blas.py)
    sched.short_slice()  # picked sooner when other processes are busy (completer/sched.py)
    session = Session(model=args.model, adapt=args.adapt, adapt_lr=args.adapt_lr, memory=not args.no_memory)
    dispatcher = Dispatcher(reader, writer, session.requests, session.notifications, CancelToken, idle=session.idle)
    code = dispatcher.run()
    if dispatcher.reader_thread.is_alive() or dispatcher.writer_thread.is_alive():
        # `exit` arrived while the reader is blocked reading stdin (or the writer writing to a
        # client that does not read), a call nothing can interrupt; a normal interpreter exit
        # would abort on that stream's lock, so leave directly.
        logging.shutdown()
        os._exit(code)
    return code
