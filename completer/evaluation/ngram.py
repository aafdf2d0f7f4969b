"""A character n-gram model with interpolated Kneser-Ney smoothing: the reference point that
`completer eval` reports next to the network (`ngram_bpc`).

    lm = NGram.train(["text of file 1", "text of file 2"], order=8)
    bits = lm.bits(["held-out text"])        # (N,) bits of each character, in order
    lm.prob("pri", "n")                       # P(next = "n" | preceding text)
    lm.greedy_lines(["def f(x):\n    ret"])  # ["urn x"]: argmax character by character

Each document is read after `order - 1` start symbols, so the first characters of a file are
predicted from "start of file" contexts, as the training files teach them.

Smoothing (Chen & Goodman's interpolated Kneser-Ney, one discount per order):
    P_k(c | h) = (max(N_k(h c) - D_k, 0) + D_k * T_k(h) * P_{k-1}(c | h')) / N_k(h)
                 (= P_{k-1}(c | h') when the context h was never seen)
    P_0(c)     = 1 / V                                 (V = training characters + 1 unknown)
h' is h without its oldest character. N_k is the raw count at the highest order and the
continuation count (the number of distinct characters seen before the k-gram) below it;
N_k(h) = sum over c of N_k(h c), T_k(h) = number of distinct c with N_k(h c) > 0, and
D_k = n1 / (n1 + 2 n2) from the numbers of k-grams seen once and twice.

Everything is vectorised: every k-gram is a 64-bit polynomial hash of its character ids
(exact while (V + 2) ** k < 2 ** 64, e.g. order 8 up to 250 distinct characters; beyond, a
wrapping hash whose collisions are vanishingly rare), counted with np.unique and looked up
with np.searchsorted, so no Python loop runs per character.
"""
from __future__ import annotations

import numpy as np

from completer.errors import CompleterError

PAD = 0  # the start-of-document symbol; characters get ids 1..V-1 (V-1 = unknown)


class _Table:
    """Sorted 64-bit keys -> values, looked up for many keys at once (missing -> 0)."""

    def __init__(self, keys, *values):
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.values = [v[order] for v in values]

    def get(self, query):
        if not len(self.keys):
            return [np.zeros(query.shape, np.int64) for _ in self.values]
        i = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        found = self.keys[i] == query
        return [np.where(found, v[i], 0) for v in self.values]


class NGram:
    def __init__(self, chars, order, counts, contexts, discounts):
        self.chars, self.order = chars, order
        self.index = {c: i + 1 for i, c in enumerate(chars)}
        self.V = len(chars) + 1                 # predicted symbols: characters + unknown
        self.base = np.uint64(self.V + 2)       # hashed symbols: PAD, characters, unknown, +1
        self.counts, self.contexts, self.discounts = counts, contexts, discounts

    # ---- training --------------------------------------------------------------------------
    @classmethod
    def train(cls, texts, order: int = 8) -> "NGram":
        if order < 1:
            raise CompleterError(f"n-gram order must be at least 1, got {order}")
        chars = sorted(set().union(*map(set, texts))) if texts else []
        if not chars:
            raise CompleterError("the n-gram model needs some training text")
        lm = cls(chars, order, [], [], [])
        ids = lm._pad([lm.encode(t) for t in texts])          # (N,) with order-1 PADs per doc
        starts = lm._targets_mask([len(t) for t in texts])
        hashes = lm._hashes(ids)                              # hashes[k] (N,): k-gram ending at i
        for k in range(1, order + 1):
            g, ctx = hashes[k][starts], hashes[k - 1][np.flatnonzero(starts) - 1] if k > 1 else None
            uniq, first, raw = np.unique(g, return_index=True, return_counts=True)
            if k < order:
                # continuation count of a k-gram: distinct characters seen before it =
                # the number of distinct (k+1)-grams that end with it
                up = hashes[k + 1][starts]
                _, up_first = np.unique(up, return_index=True)
                suffix = g[up_first]                           # the k-gram each (k+1)-gram ends with
                sk, sc = np.unique(suffix, return_counts=True)
                cnt = _Table(sk, sc).get(uniq)[0]
            else:
                cnt = raw
            cnt = cnt.astype(np.int64)
            n1, n2 = int((cnt == 1).sum()), int((cnt == 2).sum())
            D = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
            D = min(max(D, 0.05), 0.95)
            if k > 1:
                c_of = ctx[first]                              # the (k-1)-gram context of each k-gram
            else:
                c_of = np.zeros(len(uniq), np.uint64)
            ck, inv = np.unique(c_of, return_inverse=True)
            total = np.bincount(inv, weights=cnt, minlength=len(ck)).astype(np.int64)
            types = np.bincount(inv, minlength=len(ck)).astype(np.int64)
            lm.counts.append(_Table(uniq, cnt))
            lm.contexts.append(_Table(ck, total, types))
            lm.discounts.append(D)
        return lm

    # ---- encoding --------------------------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        unk = self.V  # ids 1..V-1 are characters, V is unknown
        return np.fromiter((self.index.get(c, unk) for c in text), np.int64, len(text))

    def _pad(self, docs):
        pad = np.full(self.order - 1, PAD, np.int64)
        return np.concatenate([np.concatenate([pad, d]) for d in docs]) if docs else np.zeros(0, np.int64)

    def _targets_mask(self, lengths):
        """(N,) True where a real character stands (the positions that are predicted)."""
        parts = [np.concatenate([np.zeros(self.order - 1, bool), np.ones(n, bool)]) for n in lengths]
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    def _hashes(self, ids):
        """hashes[k][i] = hash of ids[i-k+1 .. i] (k = 0..order; hashes[0] = 0 everywhere).

        Positions i < k-1 read wrapped-around ids; they are never used, since every document
        starts with order-1 PADs and only real characters are looked up."""
        h = [np.zeros(len(ids), np.uint64)]
        x = ids.astype(np.uint64)
        with np.errstate(over="ignore"):
            for k in range(1, self.order + 1):
                prev = np.roll(h[k - 1], 1)                    # (k-1)-gram ending at i-1
                h.append(prev * self.base + x + np.uint64(1))  # +1: PAD and a 0-hash differ
        return h

    # ---- scoring ---------------------------------------------------------------------------
    def _probs(self, hashes, pos):
        """P(ids[pos] | preceding order-1 ids) for every index in pos, from precomputed hashes."""
        p = np.full(len(pos), 1.0 / self.V)
        for k in range(1, self.order + 1):
            ctx = hashes[k - 1][pos - 1] if k > 1 else np.zeros(len(pos), np.uint64)
            cnt = self.counts[k - 1].get(hashes[k][pos])[0]
            total, types = self.contexts[k - 1].get(ctx)
            D = self.discounts[k - 1]
            seen = total > 0
            safe = np.where(seen, total, 1)
            p = np.where(seen, (np.maximum(cnt - D, 0.0) + D * types * p) / safe, p)
        return p

    def bits(self, texts) -> np.ndarray:
        """(N,) bits for every character of `texts` (documents concatenated in order)."""
        ids = self._pad([self.encode(t) for t in texts])
        pos = np.flatnonzero(self._targets_mask([len(t) for t in texts]))
        if not len(pos):
            return np.zeros(0)
        return -np.log2(self._probs(self._hashes(ids), pos))

    def bpc(self, texts) -> float:
        b = self.bits(texts)
        return float(b.mean()) if len(b) else float("nan")

    def prob(self, context: str, char: str) -> float:
        """P(char | context): context is the text of the document before char."""
        return float(2.0 ** -self.bits([context + char])[-1])

    # ---- greedy completion -----------------------------------------------------------------
    def _next_probs(self, ctx):
        """(A, V) P(next = id j+1 | context) of A contexts, the last column the unknown symbol.

        ctx (A, order): ctx[:, k] = hash of the context's last k ids (ctx[:, 0] = 0). The same
        recursion as _probs, for every candidate character at once; only rows whose k-context was
        seen in training look up counts (held-out text soon leaves the long contexts)."""
        A = len(ctx)
        sym = np.arange(1, self.V + 1, dtype=np.uint64) + np.uint64(1)   # (V,) id + 1, as hashed
        p = np.full((A, self.V), 1.0 / self.V)
        with np.errstate(over="ignore"):
            for k in range(1, self.order + 1):
                total, types = self.contexts[k - 1].get(ctx[:, k - 1])      # (A,), (A,)
                rows = np.flatnonzero(total > 0)
                if not len(rows):
                    continue
                keys = ctx[rows, k - 1][:, None] * self.base + sym          # (R, V) k-gram hashes
                cnt = self.counts[k - 1].get(keys)[0]                       # (R, V)
                D = self.discounts[k - 1]
                p[rows] = ((np.maximum(cnt - D, 0.0) + D * types[rows, None] * p[rows])
                           / total[rows, None])
        return p

    def greedy_lines(self, contexts, max_chars: int = 80) -> list[str]:
        """Greedy completion of each context (the document's text before the cursor): the most
        likely character (never the unknown symbol), one after another, up to max_chars or a
        newline. All contexts advance together, one character per step."""
        n = self.order - 1
        window = np.full((len(contexts), n), PAD, np.int64)   # (B, n) last n ids, oldest first
        for b, text in enumerate(contexts):
            ids = self.encode(text[-n:]) if n else np.zeros(0, np.int64)
            window[b, n - len(ids):] = ids
        powers = np.ones(self.order, np.uint64)                 # base ** j, wrapping as the hashes
        with np.errstate(over="ignore"):
            for j in range(1, self.order):
                powers[j] = powers[j - 1] * self.base
        newline = self.index.get("\n")
        out = [[] for _ in contexts]
        active = np.arange(len(contexts))
        for _ in range(max_chars if len(contexts) else 0):
            # hash of the last k ids = sum over j < k of (id[-1-j] + 1) * base ** j
            with np.errstate(over="ignore"):
                terms = (window[:, ::-1].astype(np.uint64) + np.uint64(1)) * powers[:n]   # (A, n)
                ctx = np.concatenate([np.zeros((len(active), 1), np.uint64),
                                      np.cumsum(terms, axis=1, dtype=np.uint64)], axis=1)  # (A, order)
            p = self._next_probs(ctx)
            p[:, -1] = -np.inf                                  # never suggest the unknown symbol
            c = p.argmax(axis=1) + 1                            # (A,) ids
            keep = c != newline
            for b, i in zip(active[keep], c[keep]):
                out[b].append(self.chars[i - 1])
            active, window = active[keep], window[keep]
            if not len(active):
                break
            if n:
                window = np.concatenate([window[:, 1:], c[keep, None]], axis=1)
        return ["".join(o) for o in out]
