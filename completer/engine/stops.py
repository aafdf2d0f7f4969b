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
In every mode a closing bracket that nothing opened ends the completion before it. Brackets and
strings are tracked by `Syntax`, a small Python scanner: quotes open and close strings (a triple
quote reads as open-close-open, which leaves the right state), `#` starts a comment, a backslash
escapes inside strings. It is a heuristic over the model's context, not a parser.

`finish(text, mode, suffix)` then drops trailing whitespace (not in char/free mode) and the
closers at the end of the completion that the text after the cursor already holds.
`continues_identifier(prefix, suffix)` says when not to suggest at all.
"""
from __future__ import annotations

MODES = ("char", "token", "line", "block", "free")
OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {")": "(", "]": "[", "}": "{"}
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


class Syntax:
    """Open brackets and the string/comment state of Python text read so far."""
    __slots__ = ("stack", "quote", "comment", "escape")
    _last = None    # (text, its state) of the latest scan (see scan)

    def __init__(self):
        self.stack: list[str] = []
        self.quote = None       # the quote character of the open string, or None
        self.comment = False
        self.escape = False

    def copy(self) -> "Syntax":
        s = Syntax.__new__(Syntax)
        s.stack, s.quote, s.comment, s.escape = self.stack[:], self.quote, self.comment, self.escape
        return s

    def feed(self, ch: str) -> bool:
        """Advance by one character; False if `ch` closes a bracket that nothing opened."""
        if self.comment:
            if ch == "\n":
                self.comment = False
        elif self.quote is not None:
            if self.escape:
                self.escape = False
            elif ch == "\\":
                self.escape = True
            elif ch == self.quote:
                self.quote = None
        elif ch in OPEN:
            self.stack.append(ch)
        elif ch in CLOSE:
            if not self.stack or self.stack[-1] != CLOSE[ch]:
                return False
            self.stack.pop()
        elif ch == '"' or ch == "'":
            self.quote = ch
        elif ch == "#":
            self.comment = True
        return True

    @classmethod
    def scan(cls, text: str) -> "Syntax":
        """The state after `text`; closers that match nothing in it are ignored.

        Consecutive requests scan the same block start plus what was typed since (the context of
        a keystroke's completion is its predecessor's and one more character), so the last scan
        is kept and continued when `text` extends it: ~0.3 ms of Python a request otherwise."""
        last = cls._last
        if last is not None and text.startswith(last[0]):
            s, rest = last[1].copy(), text[len(last[0]):]
        else:
            s, rest = cls(), text
        for ch in rest:
            if not s.feed(ch):
                # a closer whose opener lies before the context: forget the brackets inside it
                s.stack.clear()
        cls._last = (text, s.copy())  # one tuple, swapped whole: threads see one or the other
        return s


class Stopper:
    """The stop rule of one hypothesis. `n` counts the characters pushed so far."""
    __slots__ = ("mode", "max_chars", "syntax", "n", "cls", "indent0", "indent", "at_line_start",
                 "line_has_content", "last_newline", "newlines")

    def __init__(self, mode: str, context: str, max_chars: int):
        self.mode, self.max_chars, self.n = mode, max_chars, 0
        self.syntax = Syntax.scan(context) if mode != "free" else None
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
