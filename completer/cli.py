"""The `completer` command line: argparse subcommands, each in completer/commands/<name>.py.

Command modules only define arguments at import time; each imports what it needs inside its
`run`, so `completer complete` never pays for the trainer or the REPL. A CompleterError becomes
one line on stderr and exit 2; Ctrl-C exits 130 (a second stop signal
during training's save, SignalExit, 128 + the signal's number).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from completer import __version__
from completer.errors import CompleterError, SignalExit

COMMANDS = ["repl", "complete", "sample", "serve", "train", "eval", "bench", "plot", "plugins"]


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="completer", description="Local code completion from a character-level "
                    "recurrent network in NumPy. With no command, opens the REPL.")
    parser.add_argument("--version", action="version", version=f"completer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"completer.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"completer.commands.{name}":
                raise
            continue  # not built yet
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices)
    if not argv or (argv[0] not in known and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "repl")
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except CompleterError as exc:
        print(f"completer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except SignalExit as exc:  # a second stop signal during the first one's save
        import signal

        print(f"completer {args.command}: {signal.Signals(exc.signum).name} again: stopped at once", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"completer {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
