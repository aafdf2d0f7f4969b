"""One open document: its text and the model states already computed for it.

A state is keyed by (start, pos): the model read from a zero state over text[start:pos] (the
engine fixes start from pos, see completer.engine). Saved states (every 64 characters, line
starts) live in a bounded LRU; the furthest state of each of the few most recent reads lives in
its own slot (`heads`), so typing at the cursor costs one step per read. An edit at offset e keeps exactly the states with pos <= e:
their text is unchanged. It also marks what the project memory has read of it (`feed`: whole
lines before the cursor's, in the pause after a keystroke or before a completion). Not
thread-safe by itself: the engine's lock guards it.
"""
from __future__ import annotations

from collections import OrderedDict

from completer.engine.search import CONTEXT

CHUNK = 1 << 16
HEADS = 4     # reads whose furthest state is kept apart from the LRU


def common_prefix(a: str, b: str) -> int:
    """len of the longest common prefix, by slice comparisons (memcmp), not per character."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo = 0
    while a[lo:lo + CHUNK] == b[lo:lo + CHUNK]:  # find the first differing chunk
        lo += CHUNK
    hi = min(lo + CHUNK, n)
    while lo < hi:  # a[:lo] == b[:lo] and they differ before hi
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class DocCache:
    def __init__(self, text: str, size: int = 256):
        self.text = text
        self.size = size
        self.saved: OrderedDict = OrderedDict()   # (start, pos) -> state
        self.heads: dict = {}                     # start -> (pos, state), the latest per read
        self.max_pos = -1                         # the largest pos in saved, for cheap edits
        self.fed = 0                              # the project memory has read text[:fed]
        self.seen = 0                             # its latest prediction was at seen (text[:seen] unchanged since)
        self.pending = None                       # (pos, (set, inputs, lp)): the mixer's last
                                                  # prediction at pos, learnt once text[pos] is typed
        self.behind = None                        # (start, pos): that read is due to reach pos (Engine.idle)
        self.due = None                           # the memory is due to read up to this cursor (Engine.idle)

    def set_text(self, text: str) -> None:
        if text is self.text:
            return
        e = common_prefix(self.text, text)
        self.text = text
        self.changed(e)

    def edit(self, start: int, end: int, new_text: str) -> None:
        t = self.text
        self.text = t[:start] + new_text + t[end:]
        self.changed(start)

    def changed(self, e: int) -> None:
        """The text changed from offset e on: what the memory read or predicted past e is stale."""
        self.fed = min(self.fed, e)
        self.seen = min(self.seen, e)
        if self.pending is not None and self.pending[0] >= e:
            self.pending = None
        if self.due is not None:
            self.due = min(self.due, e)
        self.invalidate(e)

    def feed(self, memory, offset: int, vocab) -> None:
        """The memory reads the text before the cursor's line it has not read yet, as typed (the
        mixer first learns from its last prediction, if the character after it is now known).
        The cursor's own line is read once a newline ends it (see completer.engine). Not while
        `memory.reading` (the project reader fills it for the cache, which must hold only files
        on disk): the text waits, and is read at the first completion after."""
        if memory.reading:   # a project read for the cache: typed text waits (fed, seen, pending stay)
            return
        self.due = None
        text = self.text
        a = self.seen
        if a != offset:
            if self.pending is not None and self.pending[0] == a < offset:
                s, inputs, lp = self.pending[1]
                memory.update(s, inputs, lp, vocab.id(text[a]))
            self.pending = None
            self.seen = offset
        line = text.rfind("\n", 0, offset) + 1
        a = self.fed
        if a >= line:
            return
        ctx = max(0, a - CONTEXT)
        memory.learn(vocab.encode(text[ctx:line]), a - ctx)
        self.fed = line

    def invalidate(self, e: int) -> None:
        """Forget every state that read past offset e."""
        for start in [s for s, (pos, _) in self.heads.items() if pos > e]:
            del self.heads[start]
        if self.max_pos > e:
            for key in [k for k in self.saved if k[1] > e]:
                del self.saved[key]
            self.max_pos = max((k[1] for k in self.saved), default=-1)

    def nearest(self, start: int, pos: int):
        """(p, state) of the furthest known state on the read from `start` with p <= pos,
        or (start, None)."""
        best, best_state = start, None
        head = self.heads.get(start)
        if head is not None and head[0] <= pos:
            best, best_state = head
            if pos - best <= 2:  # typing: no saved state can save more than a step or two
                return best, best_state
        for (s, p), state in self.saved.items():
            if s == start and best <= p <= pos and (best_state is None or p > best):
                best, best_state = p, state
        if best_state is not None and (start, best) in self.saved:
            self.saved.move_to_end((start, best))
        return best, best_state

    def remember(self, start: int, pos: int, state, save: bool) -> None:
        self.heads.pop(start, None)
        self.heads[start] = (pos, state)
        if len(self.heads) > HEADS:
            del self.heads[next(iter(self.heads))]  # the least recently moved read
        if save:
            self.saved[(start, pos)] = state
            self.saved.move_to_end((start, pos))
            self.max_pos = max(self.max_pos, pos)
            while len(self.saved) > self.size:
                self.saved.popitem(last=False)
