"""Character vocabulary: the characters seen in training plus one unknown-character symbol.

Ids 0..n-1 are the known characters in sorted order; id n is UNK, so any text encodes.
"""
from __future__ import annotations

import numpy as np

UNK = "\ufffd"  # how the unknown symbol is shown when decoded
SHORT = 48      # texts up to this long encode through the dict (faster than numpy's set-up below it)


class Vocab:
    def __init__(self, chars):
        self.chars = sorted(set(chars) - {UNK})
        self.unk = len(self.chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.symbols = [*self.chars, UNK]   # id -> the character shown (UNK last); do not modify
        # code point -> id for the Basic Multilingual Plane: encoding is one vectorised lookup
        self._table = np.full(0x10000, self.unk, np.int32)
        for c, i in self.index.items():
            if ord(c) < 0x10000:
                self._table[ord(c)] = i

    def __len__(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        """(N,) int32 ids; unseen characters map to UNK."""
        if len(text) <= SHORT:  # a keystroke's few characters: the vectorised path costs ~14 us
            get, unk = self.index.get, self.unk
            return np.array([get(c, unk) for c in text], np.int32)
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        ids = self._table[np.minimum(cps, 0xFFFF)]
        wide = cps > 0xFFFF
        if wide.any():
            for k in np.flatnonzero(wide):
                ids[k] = self.index.get(chr(cps[k]), self.unk)
        return ids

    def id(self, ch: str) -> int:
        return self.index.get(ch, self.unk)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] if i < self.unk else UNK for i in ids)

    def char(self, i: int) -> str:
        return self.chars[i] if i < self.unk else UNK

    def extended(self, text: str) -> "Vocab":
        """A vocabulary with `text`'s unseen characters added (ids of old characters may move)."""
        return Vocab(set(self.chars) | set(text))
