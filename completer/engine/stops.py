"""Where a completion ends, per mode, and the post-processing editors expect.

A `Stopper` follows one hypothesis character by character: `push(ch)` returns None to go on, or
the number of generated characters to keep (the stop point may lie before `ch`, e.g. a block
stops at the newline that began a dedented line). Modes:
  char   one character
  token  to the end of the current identifier/number or operator run; when the cursor ends a
         token already, the next one (leading spaces allowed)
  line   to the end of the line (the newline is not part of the completion)
  block  several lines, ending before a line indented at or below the starting line's level,
         or at a blank line
  free   no rule but max_chars (`completer sample`)
In every mode a closing bracket that nothing opened ends the completion before it. Brackets,
strings (triple-quoted ones too) and comments are tracked by the scanner the syntax check uses
(completer.engine.syntax.State), from the state after the context, which begins where
`syntax.quote_before` says (inside a docstring or not). It is a heuristic, not a parser.

`finish(text, mode, suffix)` then drops trailing whitespace (not in char/free mode) and the
closers at the end of the completion that the text after the cursor already holds.
`continues_identifier(prefix, suffix)` says when not to suggest at all.
"""
from __future__ import annotations

from completer.engine import syntax

MODES = ("char", "token", "line", "block", "free")
CLOSERS = set(")]}\"'")
OPERATOR = set("+-*/%=<>!&|^~@")


def is_ident(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def char_class(ch: str) -> str:
    if is_ident(ch):
        return "ident"
    if ch in OPERATOR:
        return "op"
    return "single"  # brackets, quotes, '.', ',', ':' ...: a token of one character


class Stopper:
    """The stop rule of one hypothesis. `n` counts the characters pushed so far."""
    __slots__ = ("mode", "max_chars", "syntax", "n", "cls", "indent0", "indent", "at_line_start",
                 "line_has_content", "last_newline", "newlines")

    def __init__(self, mode: str, context: str, max_chars: int, begin: tuple = (None, 0)):
        """begin: where `context` begins, as syntax.quote_before gives it (inside a docstring?)."""
        self.mode, self.max_chars, self.n = mode, max_chars, 0
        self.syntax = syntax.state(context, begin) if mode != "free" else None
        # token: an identifier or operator already under way continues
        last = context[-1:] if context else ""
        self.cls = char_class(last) if last and char_class(last) != "single" else None
        line = context[context.rfind("\n") + 1:]
        self.indent0 = len(line) - len(line.lstrip(" \t"))
        self.indent = 0
        self.at_line_start = False
        self.line_has_content = bool(line.strip())
        self.last_newline = -1
        self.newlines = 0

    def copy(self) -> "Stopper":
        s = Stopper.__new__(Stopper)
        s.mode, s.max_chars, s.n, s.cls = self.mode, self.max_chars, self.n, self.cls
        s.syntax = self.syntax.copy() if self.syntax is not None else None
        s.indent0, s.indent, s.at_line_start = self.indent0, self.indent, self.at_line_start
        s.line_has_content, s.last_newline, s.newlines = self.line_has_content, self.last_newline, self.newlines
        return s

    def push(self, ch: str):
        """None to go on, or how many generated characters (this one included) to keep."""
        self.n += 1
        n, mode = self.n, self.mode
        if mode == "free":
            return n if n >= self.max_chars else None
        if not self.syntax.feed(ch):
            return n - 1
        if mode == "char":
            return n
        if mode == "line":
            if ch == "\n":
                return n - 1
        elif mode == "token":
            if ch == "\n":
                return n - 1
            c = char_class(ch)
            if n == 1 and self.cls is not None and c != self.cls:
                self.cls = None  # the token at the cursor is complete: complete the next one
            if self.cls is None:
                if ch in " \t":
                    pass
                elif c == "single":
                    return n
                else:
                    self.cls = c
            elif c != self.cls:
                return n - 1
        else:  # block
            if ch == "\n":
                if not self.line_has_content:  # a blank line ends the block
                    return max(self.last_newline, 0)
                self.last_newline, self.newlines = n - 1, self.newlines + 1
                self.indent, self.at_line_start, self.line_has_content = 0, True, False
            elif ch in " \t":
                if self.at_line_start:
                    self.indent += 1
            else:
                if self.at_line_start and self.indent <= self.indent0:
                    return self.last_newline  # dedented back to where we started
                self.at_line_start, self.line_has_content = False, True
        return n if n >= self.max_chars else None


def continues_identifier(prefix: str, suffix: str) -> bool:
    """The cursor sits inside an identifier: suggesting there would split a word."""
    return bool(prefix) and bool(suffix) and is_ident(prefix[-1]) and is_ident(suffix[0])


def finish(text: str, mode: str, suffix: str = "") -> str:
    """Post-process a completion: no trailing whitespace, no closers the suffix already holds."""
    if mode in ("char", "free"):
        return text
    text = text.rstrip()
    k = len(text)
    while k > 0 and text[k - 1] in CLOSERS:
        k -= 1
    # the longest run of trailing closers that the text after the cursor starts with
    for j in range(k, len(text)):
        if suffix.startswith(text[j:]):
            return text[:j].rstrip()
    return text
