"""The REPL application: the PromptSession wired in one place, and the read loop.

`build_prompt(session)` returns a PromptSession (tests pass a pipe input and a dummy output);
`run(session)` prints the banner and reads until Ctrl-D or :quit. Submitted code is appended to
the session's document; lines starting with ':' are commands (commands.py).
"""
from __future__ import annotations

import os
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.completion import ThreadedCompleter
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.styles import Style
from pygments.lexers.python import PythonLexer

from completer.errors import CompleterError
from completer.repl import commands
from completer.repl.keys import build_key_bindings
from completer.repl.suggest import AlternativesCompleter, EngineSuggest

STYLE = Style.from_dict({
    "auto-suggestion": "#7f7f7f",  # the ghost text
    "bottom-toolbar": "noreverse bg:#303030 #c0c0c0",
    "bottom-toolbar.key": "bold #ffffff",
    "completion-menu.meta.completion": "bg:#444444 #aaaaaa",
})


def data_dir() -> Path:
    """Where the history lives: $XDG_DATA_HOME/completer, or ~/.local/share/completer."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "completer"


def open_history():
    """History shared across sessions; in memory only if the data directory is not writable."""
    try:
        d = data_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / "history"
        path.touch()
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


def toolbar(session, suggest):
    def render():
        s = session.settings
        temp = f" T={s.temperature:g}" if s.decoder != "greedy" else ""
        latency = f"{session.latency * 1000:.0f} ms" if session.latency is not None else "-"
        parts = [("class:bottom-toolbar.key", " model "), ("", session.describe_model()),
                 ("class:bottom-toolbar.key", "  mode "), ("", s.mode),
                 ("class:bottom-toolbar.key", "  decoder "), ("", s.decoder + temp),
                 ("class:bottom-toolbar.key", "  latency "), ("", latency)]
        if suggest.error:
            parts.append(("fg:#ff6060", f"  {suggest.error}"))
        return parts
    return render


def build_prompt(session, input=None, output=None, history=None) -> PromptSession:
    suggest = EngineSuggest(session)
    prompt = PromptSession(
        message=[("class:prompt", ">>> ")],
        prompt_continuation=lambda width, line_number, wrap_count: "... ".rjust(width),
        multiline=True,
        lexer=PygmentsLexer(PythonLexer),
        auto_suggest=suggest,
        completer=ThreadedCompleter(AlternativesCompleter(session)),
        complete_while_typing=False,
        key_bindings=build_key_bindings(),
        bottom_toolbar=toolbar(session, suggest),
        style=STYLE,
        history=history if history is not None else InMemoryHistory(),
        enable_history_search=False,
        input=input,
        output=output,
    )
    suggest.attach(prompt.default_buffer)
    prompt.suggest = suggest
    return prompt


def banner(session) -> str:
    return (f"completer: {session.describe_model()} from {session.info.get('path')}\n"
            "Type Python; the grey text is the model's continuation. Right or Tab accepts it, Alt-F a "
            "word,\nCtrl-] a character, Ctrl-Space shows alternatives. :help for commands, Ctrl-D quits.")


def say(text: str, style: str = "") -> None:
    print_formatted_text(FormattedText([(style, text)]))


def run(session, prompt: PromptSession | None = None) -> int:
    prompt = prompt or build_prompt(session, history=open_history())
    say(banner(session), "#8a8a8a")
    while True:
        try:
            text = prompt.prompt()
        except KeyboardInterrupt:
            continue  # Ctrl-C clears the input, as in Python's REPL
        except EOFError:
            return 0
        if text.lstrip().startswith(":"):
            try:
                say(commands.run(session, text))
            except commands.Quit:
                return 0
            except CompleterError as exc:
                say(f"error: {exc}", "#ff6060")
        elif text.strip():
            session.submit(text)
