"""Syntax-aware suggestions: a line or block suggestion never leaves the line worse than the user's.

`check(context, text) -> text` cuts a suggestion (`text`, continuing `context`, the text before the
cursor) before the first place where it would make Python's tokenizer state worse than at the
cursor:
  - a closing bracket of the wrong kind (`(x]`; one that nothing opened the stop rule already cuts,
    completer.engine.stops);
  - a string it opened with one quote and left unterminated at the end of its line (a newline in
    it, or the end of a line suggestion); triple-quoted strings may span lines;
  - a character the tokenizer rejects outside strings and comments: `$`, `?`, a backtick, `!` not
    followed by `=`, a backslash not ending the line, a non-ASCII character that cannot be part of
    a name.
It is a scanner over the context and the suggestion (strings with their prefixes and triple
quotes, comments, escapes, brackets), not a parser: what the suggestion does inside a string or a
comment the user opened is left alone, and a string the user left open may stay open. The engine
applies it to every line and block suggestion, after the repetition guard (completer.engine.guard),
before the post-processing of stops.finish.

The stop rule (completer.engine.stops) follows each hypothesis with the same `State`, from the same
context scan. Cost: the context's scan is kept and continued while the user types, so a request
pays for the characters typed since the last one and for the suggestion's.
"""
from __future__ import annotations

OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {")": "(", "]": "[", "}": "{"}
REJECTED = set("$?`")


class State:
    """The tokenizer's state after some Python text: open brackets, the open string (its quote:
    one or three characters) and whether it began in the text checked, a comment.

    `feed(ch)` advances it by one character. The stop rule follows each hypothesis with it
    (completer.engine.stops) and `_scan` a context or a suggestion, so both read Python alike: a
    triple quote shows at its third quote (`""` is an empty string until a third `"` follows) and
    ends at the third quote in a row inside it."""
    __slots__ = ("stack", "quote", "comment", "escape", "opened_at", "fresh", "pend", "run")

    def __init__(self):
        self.stack: list = []
        self.quote: str | None = None
        self.comment = False
        self.escape = False
        self.opened_at = -1          # where the open string's quote is in the checked text (-1: before)
        self.fresh = False           # the open one-quote string is still empty
        self.pend = None             # the quote of an empty string that just closed: a third makes it triple
        self.run = 0                 # quotes in a row inside a triple-quoted string

    def copy(self) -> "State":
        s = State.__new__(State)
        s.stack, s.quote, s.comment, s.escape, s.opened_at, s.fresh, s.pend, s.run = (
            self.stack[:], self.quote, self.comment, self.escape, self.opened_at, self.fresh, self.pend, self.run)
        return s

    def feed(self, ch: str) -> bool:
        """Advance by one character; False, and nothing changed, if `ch` closes a bracket other
        than the innermost open one (the wrong kind, or none open)."""
        if self.comment:
            if ch == "\n":
                self.comment = False
            return True
        q = self.quote
        if q is not None:
            if self.escape:
                self.escape = False
            elif ch == "\\":
                self.escape = True
            elif ch == q[0]:
                if len(q) == 1:
                    self.quote, self.pend = None, ch if self.fresh else None
                    return True
                self.run += 1
                if self.run == 3:
                    self.quote = None
                return True
            elif ch == "\n" and len(q) == 1:
                self.quote = None                       # the tokenizer gives up on it at the line's end
            self.fresh, self.run = False, 0
            return True
        pend, self.pend = self.pend, None
        if ch == '"' or ch == "'":
            if pend == ch:
                self.quote, self.run = ch * 3, 0
            else:
                self.quote, self.fresh = ch, True
        elif ch == "#":
            self.comment = True
        elif ch in OPEN:
            self.stack.append(ch)
        elif ch in CLOSE:
            if not self.stack or self.stack[-1] != CLOSE[ch]:
                self.pend = pend
                return False
            self.stack.pop()
        return True


def _scan(s: State, text: str, check: bool, own: int = 0) -> int:
    """Advance s over text. check=True: stop at the first place that makes the state worse and
    return its index (len(text) if none), text[:own] being the user's (a string opened there is
    theirs); False: only follow (a context: its oddities ignored)."""
    for i, ch in enumerate(text):
        if check and s.quote is None and not s.comment:
            if ch in REJECTED or (ch == "!" and not text.startswith("!=", i)) \
                    or (ch == "\\" and i + 1 < len(text) and text[i + 1] != "\n") \
                    or (ch > "\x7f" and not ch.isidentifier()):
                return i
        elif check and ch == "\n" and s.quote is not None and len(s.quote) == 1 and not s.escape \
                and s.opened_at >= 0:
            return s.opened_at                          # a string this suggestion left open
        was = s.quote
        if not s.feed(ch):
            if check and s.stack:                       # the wrong kind of bracket
                return i
            s.stack.clear()  # nothing open (the stop rule's case), or a context begun inside brackets
        elif was is None and s.quote is not None:      # a string opens: where its first quote is
            at = i - len(s.quote) + 1
            s.opened_at = at if check and at >= own else -1
    return len(text)


def quote_before(text: str, start: int) -> tuple:
    """(quote, skip): the triple-quoted string open at text[start] (None: none), by the parity of
    the triple quotes before it (C-speed counts; quotes inside comments or other strings are rare
    enough to ignore), and how many of the characters from start on are the rest of a triple
    quote that start splits. The engine's context begins at a block boundary, often inside a
    docstring, where a scan of the context alone would read the prose's apostrophes as strings."""
    for q in ('"""', "'''"):
        n = text.count(q, 0, start)
        j = text.find(q, max(0, start - 2), start + 2)
        skip = j + 3 - start if 0 <= j < start else 0      # a triple quote across start
        if (n + (skip > 0)) % 2:
            return q, skip
        if skip:
            return None, skip
    return None, 0


_last = None   # (quote, context, its State) of the latest scan: the next request's extends it


def state(context: str, begin: tuple = (None, 0)) -> State:
    """The state after `context`, which begins as quote_before says (inside a triple-quoted
    string or not, and after the rest of a split triple quote); kept and continued while the
    text grows, as typing does."""
    global _last
    last = _last
    if last is not None and last[0] == begin and context.startswith(last[1]):
        s, rest = last[2].copy(), context[len(last[1]):]
    else:
        s, rest = State(), context[begin[1]:]
        s.quote = begin[0]
    _scan(s, rest, False)
    _last = (begin, context, s.copy())   # one tuple, swapped whole: threads see one or the other
    return s


def check(context: str, text: str, line_ends: bool = True, begin: tuple = (None, 0)) -> str:
    """`text` cut before the first place where it leaves the tokenizer's state worse than the
    user's at the cursor (see the module's doc). line_ends: the suggestion ends its line (line
    mode: the newline that ended it is not part of it), so a string it opened must be closed;
    begin: the state where `context` begins (quote_before)."""
    # a quote that ends the context and the suggestion's next ones make one triple quote: the
    # state's `pend` carries it (the string is the user's: it opened before the suggestion)
    s = state(context, begin)
    if s.comment and "\n" not in text:
        return text
    s = s.copy()
    s.opened_at = -1
    k = _scan(s, text, True)
    if k == len(text) and line_ends and s.quote is not None and len(s.quote) == 1 and s.opened_at >= 0 \
            and not s.escape:
        k = s.opened_at
    return text[:k]
