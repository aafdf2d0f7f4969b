"""Key bindings of the REPL, on top of prompt_toolkit's Emacs defaults.

Right / Ctrl-E / Ctrl-F accept the whole suggestion (prompt_toolkit's own bindings); here:
Tab at the end accepts it too, Alt-F / Ctrl-Right accept the next word, Ctrl-] one character,
Ctrl-Space opens the menu of alternatives, Enter submits or indents, Esc Enter always submits.
"""
from __future__ import annotations

import re

from prompt_toolkit.application.current import get_app
from prompt_toolkit.filters import Condition, has_completions
from prompt_toolkit.key_binding import KeyBindings

from completer.repl.editing import INDENT, next_indent, should_submit

_WORD = re.compile(r"\s*(?:\w+|[^\w\s]+)|\s+")


def next_word(text: str) -> str:
    """The piece of a suggestion Alt-F accepts: leading spaces and one identifier or punctuation run."""
    m = _WORD.match(text)
    return m.group(0) if m else text


@Condition
def suggestion_available() -> bool:
    b = get_app().current_buffer
    return bool(b.suggestion and b.suggestion.text) and b.document.is_cursor_at_the_end


def build_key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("tab", filter=suggestion_available)
    def _accept_all(event):
        event.current_buffer.insert_text(event.current_buffer.suggestion.text)

    @kb.add("tab", filter=~suggestion_available & ~has_completions)
    def _indent(event):
        col = event.current_buffer.document.cursor_position_col
        event.current_buffer.insert_text(" " * (len(INDENT) - col % len(INDENT)))

    @kb.add("tab", filter=has_completions)
    def _next(event):
        event.current_buffer.complete_next()

    @kb.add("escape", "f", filter=suggestion_available)
    @kb.add("c-right", filter=suggestion_available)
    def _accept_word(event):
        event.current_buffer.insert_text(next_word(event.current_buffer.suggestion.text))

    @kb.add("c-]", filter=suggestion_available, eager=True)  # beats Emacs c-] CHAR (search)
    def _accept_char(event):
        event.current_buffer.insert_text(event.current_buffer.suggestion.text[0])

    @kb.add("c-space")
    def _menu(event):
        b = event.current_buffer
        if b.complete_state:
            b.complete_next()
        else:
            b.start_completion(select_first=False)

    @kb.add("enter", filter=has_completions)
    def _close_menu(event):
        event.current_buffer.complete_state = None  # keep the highlighted alternative

    @kb.add("enter", filter=~has_completions)
    def _enter(event):
        b = event.current_buffer
        doc = b.document
        if doc.is_cursor_at_the_end and should_submit(doc.text):
            b.validate_and_handle()
        else:
            b.insert_text("\n" + next_indent(doc.current_line_before_cursor))

    @kb.add("escape", "enter")
    def _submit(event):
        event.current_buffer.validate_and_handle()

    @kb.add("backspace", filter=Condition(_in_indent))
    def _dedent(event):
        col = event.current_buffer.document.cursor_position_col
        event.current_buffer.delete_before_cursor(count=(col - 1) % len(INDENT) + 1)

    return kb


def _in_indent() -> bool:
    before = get_app().current_buffer.document.current_line_before_cursor
    return bool(before) and not before.strip(" ") and not get_app().current_buffer.selection_state
