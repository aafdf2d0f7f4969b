"""IPython extension: the model's continuation as grey ghost text as you type in IPython's prompt.

    %load_ext completer.ipython                      # or, in ipython_config.py:
    c.InteractiveShellApp.extensions = ["completer.ipython"]

It puts a `completer.repl.suggest.EngineSuggest` in IPython's prompt_toolkit session
(`shell.pt_app.auto_suggest`), in front of IPython's own history suggestion (`shell.auto_suggest`,
NavigableAutoSuggestFromHistory in IPython 9), which is asked whenever the model offers nothing.
The model runs in a worker thread (prompt_toolkit's async suggestion), each keystroke cancels the
request in flight, and the cells run so far (not the magics) are the context of a suggestion,
as in `completer repl`. IPython's own keys accept it: Right or End the whole suggestion, Alt-F a
word, Ctrl-Right a token, Alt-Right a character.

    %completer                      what is on (model, mode, decoder, context)
    %completer off | on             IPython's history suggestion alone / the model again
    %completer mode char|token|line|block,  %completer decoder NAME,  %completer temp T,
    %completer gate P|default       ghost text only when the confidence gate gives it at least P
    %completer model PATH,  %completer reset,  %completer save FILE     (the REPL's commands)
"""
from __future__ import annotations

from completer.errors import CompleterError
from completer.repl.suggest import EngineSuggest

_extension = None  # the loaded Extension (one per process: IPython has one shell)


class IPythonSuggest(EngineSuggest):
    """EngineSuggest whose synchronous entry point never runs the model: IPython calls
    `get_suggestion` on the UI thread itself (after Backspace, and on Right at the end of a line),
    and a slow model there would block typing. It asks for the asynchronous suggestion instead."""

    def get_suggestion(self, buffer, document):
        from prompt_toolkit.application.current import get_app

        get_app().create_background_task(buffer._async_suggester())  # runs once this returns None
        return None


class Extension:
    def __init__(self, shell, engine):
        from completer.repl.session import Session

        self.shell = shell
        self.session = Session(engine)
        self.suggest = IPythonSuggest(self.session, fallback=shell.auto_suggest)
        self.on = False

    def enable(self) -> None:
        if self.on:
            return
        self.suggest.fallback = self.shell.auto_suggest  # IPython's, whatever the config made it
        self.shell.pt_app.auto_suggest = self.suggest
        self.suggest.attach(self.shell.pt_app.default_buffer)
        self.on = True

    def disable(self) -> None:
        if not self.on:
            return
        self.suggest.cancel()
        self.suggest.detach(self.shell.pt_app.default_buffer)
        self.shell.pt_app.auto_suggest = self.shell.auto_suggest
        self.on = False

    def post_run_cell(self, result) -> None:
        """A cell that ran becomes context; magics and shell escapes are not Python."""
        raw = result.info.raw_cell or ""
        if raw.strip() and not raw.lstrip().startswith(("%", "!")):
            self.session.submit(raw)

    def status(self) -> str:
        s = self.session.settings
        state = "on" if self.on else "off (IPython's history suggestion only)"
        return (f"completer {state}: {self.session.describe_model()} from {self.session.info.get('path')}; "
                f"mode {s.mode}, decoder {s.decoder}; context {len(self.session.context)} characters")

    def magic(self, line: str) -> str:
        from completer.repl import commands

        word = line.strip()
        if not word:
            return self.status()
        if word == "off":
            self.disable()
            return self.status()
        if word == "on":
            self.enable()
            return self.status()
        if word.split()[0] in ("quit", "help"):
            raise CompleterError("%completer takes off, on, mode, decoder, temp, gate, model, reset, save")
        try:
            return commands.run(self.session, ":" + word)
        except commands.Quit:  # unreachable (quit is refused above); keeps IPython running anyway
            return self.status()


def load_ipython_extension(shell) -> None:
    global _extension
    if _extension is not None:
        return
    if getattr(shell, "pt_app", None) is None:
        print("completer.ipython: ghost text needs IPython's terminal (not a kernel or a notebook)")
        return
    from completer.system import blas, sched
    from completer.engine import Engine

    try:
        engine = Engine.from_checkpoint(memory=True)
    except CompleterError as exc:
        print(f"completer.ipython: {exc}")
        return
    import logging
    import os

    from completer.memory.project import read_project

    # the project memory reads the folder IPython started in (in the background), as `completer` does
    read_project(engine, [os.getcwd()], logging.getLogger("completer"))
    blas.adapt_threads()  # one BLAS thread while other processes keep the cores busy (completer/blas.py)
    sched.short_slice()  # picked sooner when other processes are busy (completer/sched.py)
    ext = Extension(shell, engine)

    def completer_magic(line):
        try:
            print(ext.magic(line))
        except CompleterError as exc:
            print(f"%completer: {exc}")

    completer_magic.__doc__ = __doc__
    shell.register_magic_function(completer_magic, "line", "completer")
    shell.events.register("post_run_cell", ext.post_run_cell)
    ext.enable()
    _extension = ext


def unload_ipython_extension(shell) -> None:
    global _extension
    if _extension is None:
        return
    _extension.disable()
    shell.events.unregister("post_run_cell", _extension.post_run_cell)
    _extension = None
