"""The repetition guard: no continuation that loops reaches a client.

A continuation loops when it repeats a unit of 2+ characters a third time in a row (`add(a, badd(a,
badd(a, b`, `, value, value, value`, `range(range(range(`) and the context before the cursor does
not show that repetition already (`[0, 0, 0` may go on with `, 0]`). Loops are self-reinforcing:
each copy makes the next more probable, to the network and to the project memory alike, so a
decoder left alone fills the line with them. The guard follows each hypothesis character by
character inside `Search.extend` (every decoder, built-in or plugin, extends through it): the
character that completes the third copy ends the hypothesis, cut back to the end of the first
copy (`Hyp.looped` set; beam search drops such hypotheses instead). `cut_loop(context, text)`
applies the same rule to a finished text: the engine's last line of defence for hypotheses that
did not come through `extend`.

Cost: per character, the previous occurrences of the last 4 characters within the last UNIT
(str.rfind) and one slice comparison each: ~2 us in Python. The context check runs
only when a loop is found (a substring search over the context, remembered per unit).
"""
from __future__ import annotations

UNIT = 48               # the longest unit looked for (`self.assertEqual(` is 17)
TAIL = 3 * UNIT + 1     # characters of context + continuation kept to find three copies


class Guard:
    """The guard of one hypothesis. `push(ch)` -> None, or how many generated characters to keep."""
    __slots__ = ("tail", "n", "context", "shown")

    def __init__(self, context: str, shown: dict | None = None):
        self.context = context          # the text before the cursor (the block the stopper sees)
        self.tail = context[-TAIL:]     # the last TAIL characters of context + continuation
        self.n = 0                      # characters generated so far
        self.shown = {} if shown is None else shown   # unit -> the context shows it (shared)

    def copy(self) -> "Guard":
        g = Guard.__new__(Guard)
        g.tail, g.n, g.context, g.shown = self.tail, self.n, self.context, self.shown
        return g

    def push(self, ch: str):
        self.n += 1
        s = self.tail + ch
        if len(s) > TAIL + UNIT:   # trimmed in steps, not at every character
            s = s[-TAIL:]
        self.tail = s
        L = len(s)
        # A period p needs the last characters to recur p earlier. The key looked for is the last
        # 4 characters, or the run of `ch` that ends s and the character before it: a run of one
        # character (indentation, `----`) is no unit, and its key keeps the candidates few.
        r = L - len(s.rstrip(ch))
        k = max(4, r + 1)
        if 2 * k > L:
            return None
        key, lo = s[L - k:], max(0, L - k - UNIT)
        j = s.rfind(key, lo, L - 1)
        while j >= 0:
            p = L - k - j
            if 3 * p > L:
                break
            if p >= 2 and s[L - 3 * p:L - p] == s[L - 2 * p:]:
                # the smallest period: three copies of its unit end the text; a larger period
                # found later would be a multiple of it
                return self._keep(s, p) if self._loop(s[L - p:]) else None
            j = s.rfind(key, lo, j + k - 1)
        return None

    def _loop(self, unit: str) -> bool:
        """Whether three copies of `unit` are a loop: a unit of one repeated character (`----`,
        indentation) or of blanks is not; one whose repetition the context shows is not."""
        if unit.count(unit[0]) == len(unit) or unit.isspace():
            return False
        shown = self.shown.get(unit)
        if shown is None:
            # the context shows the repetition: two copies and a character of the third, in any
            # phase (`[0, 0, 0` shows `, 0` three times once the continuation adds `, 0`)
            shown = any((r + r + r[0]) in self.context for r in (unit[k:] + unit[:k] for k in range(len(unit))))
            self.shown[unit] = shown
        return not shown

    def _keep(self, s: str, p: int) -> int:
        """Generated characters to keep: up to the end of the first copy of the periodic run."""
        a = len(s) - 3 * p
        while a > 0 and s[a - 1] == s[a - 1 + p]:
            a -= 1
        end_of_first = a + p                  # in s
        after = len(s) - end_of_first         # characters from there to the newest
        return max(0, self.n - after)


def cut_loop(context: str, text: str) -> str:
    """`text` (a continuation of `context`) cut where the guard would have cut it."""
    g = Guard(context)
    for i, ch in enumerate(text):
        keep = g.push(ch)
        if keep is not None:
            return text[:keep]
    return text


def has_loop(text: str, context: str = "") -> bool:
    """Whether `text` repeats a unit of 2+ characters three times in a row that `context` does not
    show (the measure of `completer eval`'s loop share, and of the tests)."""
    return cut_loop(context, text) != text
