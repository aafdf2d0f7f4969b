"""REPL commands: a submitted line starting with ':' is a command, not code.

Each handler takes the Session and the rest of the line, changes the session and returns the
message to print. Errors are CompleterError: printed on one line, the REPL carries on.
"""
from __future__ import annotations

from pathlib import Path

from completer.errors import CompleterError
from completer.repl.session import MODES, check_settings, decoder_names


class Quit(Exception):
    """Raised by :quit; the read loop ends."""


COMMANDS: dict = {}  # name -> (handler, usage, help)


def command(name: str, usage: str, help: str):
    def register(fn):
        COMMANDS[name] = (fn, usage, help)
        return fn
    return register


def run(session, line: str) -> str:
    """Execute one ':' line; returns the message to show. Raises Quit or CompleterError."""
    name, _, arg = line.strip()[1:].partition(" ")
    arg = arg.strip()
    matches = [n for n in COMMANDS if n == name] or [n for n in COMMANDS if name and n.startswith(name)]
    if len(matches) > 1:
        raise CompleterError(f"ambiguous command :{name} ({', '.join(':' + m for m in matches)})")
    if not matches:
        raise CompleterError(f"unknown command :{name} (:help lists them)")
    return COMMANDS[matches[0]][0](session, arg)


@command("mode", f":mode {'|'.join(MODES)}", "how much to suggest: a character, a token, the line, a block")
def _mode(session, arg):
    if not arg:
        return f"mode {session.settings.mode}"
    check_settings(mode=arg)
    session.settings.mode = arg
    return f"mode {arg}"


@command("decoder", ":decoder NAME", "how to pick characters: greedy, temperature, top-k, top-p, beam...")
def _decoder(session, arg):
    if not arg:
        return f"decoder {session.settings.decoder} (available: {', '.join(decoder_names())})"
    check_settings(decoder=arg)
    session.settings.decoder = arg
    return f"decoder {arg}"


@command("temp", ":temp T", "sampling temperature (0 = most probable), for the sampling decoders")
def _temp(session, arg):
    if not arg:
        return f"temperature {session.settings.temperature:g}"
    try:
        t = float(arg)
    except ValueError:
        raise CompleterError(f"temperature must be a number, got {arg!r}") from None
    if not 0 <= t < float("inf"):
        raise CompleterError(f"temperature must be 0 or more, got {arg}")
    session.settings.temperature = t
    return f"temperature {t:g}"


@command("gate", ":gate P|default", "show ghost text only when the gate gives it at least P of being "
         "accepted (0..1; 0 shows everything; default: the gate file's threshold)")
def _gate(session, arg):
    gate = session.engine.gate
    default = f"{gate.threshold:g}" if gate is not None else "none: no gate file beside the model"
    if arg == "default":
        session.settings.gate = None
    elif arg:
        try:
            t = float(arg)
        except ValueError:
            raise CompleterError(f"gate must be a probability 0..1 or 'default', got {arg!r}") from None
        if not 0 <= t <= 1:
            raise CompleterError(f"gate must be between 0 and 1, got {arg}")
        session.settings.gate = t
    t = session.settings.gate
    return f"gate {t:g}" if t is not None else f"gate default ({default})"


@command("model", ":model PATH", "load another checkpoint (a file or a training run directory)")
def _model(session, arg):
    from completer.engine import Engine

    if arg:
        old = session.engine
        new = Engine.from_checkpoint(arg, adapt=old.adapt, adapt_lr=old.adapt_lr,  # CheckpointError: the old model stays
                                     memory=old.memory is not None)
        if old.memory is not None and old.memory.roots:  # the new model's memory reads the project again
            import logging

            from completer.memory.project import read_project

            read_project(new, old.memory.roots, logging.getLogger("completer"))
        session.replace_engine(new)
    return f"model {session.describe_model()} from {session.info.get('path')}"


@command("reset", ":reset", "forget the session's text: suggestions start from scratch")
def _reset(session, arg):
    session.reset()
    return "session cleared"


@command("save", ":save FILE", "write everything submitted in this session to FILE")
def _save(session, arg):
    if not arg:
        raise CompleterError("usage: :save FILE")
    path = Path(arg).expanduser()
    try:
        path.write_text(session.context, encoding="utf-8", errors="surrogatepass")
    except OSError as exc:
        raise CompleterError(f"cannot write {path}: {exc.strerror or exc}") from None
    return f"saved {len(session.context)} characters to {path}"


@command("help", ":help", "this list")
def _help(session, arg):
    width = max(len(u) for _, u, _ in COMMANDS.values())
    lines = [f"  {u:{width}}  {h}" for _, u, h in COMMANDS.values()]
    return "\n".join(["commands:"] + lines + ["keys:", KEYS])


@command("quit", ":quit", "leave (Ctrl-D too)")
def _quit(session, arg):
    raise Quit


KEYS = """\
  Right, Ctrl-E, Tab     accept the grey suggestion     Alt-F, Ctrl-Right  accept its next word
  Ctrl-]                 accept one character           Ctrl-Space         menu of alternatives
  Enter                  new line, or submit a complete statement (Esc Enter always submits)
  Ctrl-C                 clear the input                Ctrl-D             quit"""
