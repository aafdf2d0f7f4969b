"""ptpython: the model's continuation as grey ghost text, from ptpython's config file.

    # ~/.config/ptpython/config.py
    def configure(repl):
        from completer.ptpython import configure as completer
        completer(repl)                  # options: model=PATH, mode="line", decoder="greedy", gate=None

It replaces the auto-suggestion of ptpython's input buffer by a `completer.repl.suggest.EngineSuggest`
(the REPL's: the model runs in a worker thread and each keystroke cancels the request in flight),
with prompt_toolkit's history suggestion as the fallback when the model offers nothing, and turns
ptpython's auto-suggestion on. Every submitted input becomes context of the next suggestions.
prompt_toolkit's keys accept it: Right, Ctrl-E or Ctrl-F the whole suggestion, Alt-F a word.
"""
from __future__ import annotations


def configure(repl, model=None, mode: str = "line", decoder: str = "greedy", project: str | None = ".",
              gate: float | None = None):
    """Install the ghost text in a ptpython `PythonRepl`; returns the completer Session (None, after
    one line on stderr, for a bad model, mode or decoder: ptpython then runs without it).
    project: the folder the project memory reads in the background (default the current one;
    None: only what is typed); gate: show ghost text only when the confidence gate gives it at least
    this probability of being accepted (None: the gate file's default threshold; 0: everything)."""
    import sys

    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory

    from completer.system import blas, sched
    from completer.engine import Engine
    from completer.errors import CompleterError
    from completer.repl.session import Session, Settings, check_settings
    from completer.repl.suggest import EngineSuggest

    try:
        check_settings(mode=mode, decoder=decoder)
        if gate is not None and (isinstance(gate, bool) or not isinstance(gate, (int, float)) or not 0 <= gate <= 1):
            raise CompleterError(f"gate must be a probability between 0 and 1, got {gate!r}")
        session = Session(Engine.from_checkpoint(model, memory=True), Settings(mode=mode, decoder=decoder, gate=gate))
    except CompleterError as exc:
        print(f"completer.ptpython: {exc}", file=sys.stderr)
        return None
    if project:
        import logging

        from completer.memory.project import read_project

        read_project(session.engine, [project], logging.getLogger("completer"))
    blas.adapt_threads()  # one BLAS thread while other processes keep the cores busy (completer/blas.py)
    sched.short_slice()  # picked sooner when other processes are busy (completer/sched.py)
    buffer = repl.default_buffer
    suggest = EngineSuggest(session, fallback=AutoSuggestFromHistory())
    buffer.auto_suggest = suggest
    suggest.attach(buffer)
    repl.enable_auto_suggest = True  # ptpython's option: its key bindings and display follow it

    accept = buffer.accept_handler

    def accept_and_remember(buff):
        if buff.text.strip() and not buff.text.lstrip().startswith("!"):
            session.submit(buff.text)
        return accept(buff)

    buffer.accept_handler = accept_and_remember
    return session
