"""B parallel streams over the training text, read in windows of T characters (char-rnn style).

Each epoch the training files are concatenated in an order shuffled by (seed, epoch), and the
resulting N ids are cut into B contiguous rows of L = N // B characters. Window k of the epoch
is columns [k*T, k*T + T] of every row: inputs ids[:, kT : kT+T], targets shifted by one. The
hidden state is carried from window to window and reset when the streams wrap to a new epoch
(all rows wrap together). The position (epoch, window) is all that resuming needs.

`rows=(lo, hi)` keeps only rows lo..hi-1 (a data-parallel rank's share of the B streams): the
epoch's rows are then cut from the shuffled files without building the whole concatenation, so a
rank holds its share of the corpus per epoch, not all of it; windows are (T, hi - lo).
"""
from __future__ import annotations

import numpy as np

from completer.errors import CompleterError


class Streams:
    def __init__(self, docs: list[np.ndarray], batch: int, seq: int, seed: int = 0, rows: tuple | None = None):
        self.docs, self.B, self.T, self.seed = docs, batch, seq, seed
        self.lo, self.hi = rows if rows is not None else (0, batch)
        self.N = int(sum(len(d) for d in docs))
        self.L = self.N // batch                                   # characters per row
        if self.L < seq + 1:
            raise CompleterError(f"training text of {self.N:,} characters is too small for --batch {batch} "
                                 f"--seq {seq} (needs at least {batch * (seq + 1):,}); lower them")
        self.windows_per_epoch = (self.L - 1) // seq
        self.epoch, self.window = 0, 0
        self._rows, self._rows_epoch = None, None

    @property
    def chars_per_window(self) -> int:
        return self.B * self.T

    def rows(self, epoch: int) -> np.ndarray:
        """(hi - lo, L) ids of an epoch: the files in a seeded order, cut into B rows, rows lo..hi-1."""
        if self._rows_epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.docs))
            a, b = self.lo * self.L, self.hi * self.L        # this share's range of the concatenation
            pieces, start = [], 0
            for i in order:
                d = self.docs[i]
                end = start + len(d)
                if end > a and start < b:
                    pieces.append(d[max(a - start, 0): min(b, end) - start])
                start = end
            ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
            self._rows = ids.reshape(self.hi - self.lo, self.L)
            self._rows_epoch = epoch
        return self._rows

    def next(self):
        """(x (T, B), y (T, B), reset): reset means a new epoch began, so zero the hidden state."""
        reset = self.window == 0
        rows = self.rows(self.epoch)
        s = self.window * self.T
        chunk = rows[:, s: s + self.T + 1]                       # (B, T+1)
        x = np.ascontiguousarray(chunk[:, :-1].T)                  # (T, B)
        y = np.ascontiguousarray(chunk[:, 1:].T)                   # (T, B)
        self.window += 1
        if self.window == self.windows_per_epoch:
            self.epoch, self.window = self.epoch + 1, 0
        return x, y, reset

    def position(self) -> dict:
        return {"epoch": self.epoch, "window": self.window}

    def seek(self, pos: dict) -> None:
        self.epoch, self.window = int(pos["epoch"]), int(pos["window"])
        if not 0 <= self.window < self.windows_per_epoch:
            raise CompleterError(f"resume state has stream window {self.window}, beyond an epoch "
                                 f"of {self.windows_per_epoch}")
