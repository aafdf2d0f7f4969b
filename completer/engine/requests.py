"""What a frontend asks the engine for, and what it gets back.

    Request(mode="line", decoder="greedy", ...).validated()  # raises CompleterError on bad fields
    Completion(text, logprob, char_logprobs)                  # .prob = exp(logprob)
    CancelToken().cancel()  # a request being decoded stops with Cancelled at its next character
    Request(budget_ms=20)   # typing-time requests: past 20 ms of wall time the decoder stops and
                            # the continuation so far is returned, cut back to a token boundary
                            # (it goes on to the first boundary if it has none yet: never empty)
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from completer.engine.stops import MODES
from completer.errors import CompleterError

MAX_CHARS = 10_000      # the longest continuation one request may ask for
TYPING_BUDGET_MS = 20   # the ghost text's budget in every frontend (serve's `budgetMs` setting):
                        # a quiet machine decodes an 80-character line in about half of it


class Cancelled(CompleterError):
    """The request's CancelToken was cancelled while it was being decoded."""


class OutOfTime(Exception):
    """Raised by Search.check() past the request's budget; the engine answers with what it has."""


class CancelToken:
    def __init__(self):
        self._event = threading.Event()
        self.created = time.perf_counter()  # serve makes one as it reads the request: a budget counts from here

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Request:
    mode: str = "line"          # char | token | line | block (free: no stop rule, for sampling)
    decoder: str = "greedy"     # a registered decoder name
    temperature: float = 1.0
    top_k: int = 10
    top_p: float = 0.9
    beam: int = 4
    n: int = 1                  # how many continuations (samplers: draws; beam: the n best)
    seed: int | None = None
    max_chars: int = 80
    min_prob: float = 0.0       # drop continuations whose total probability is below this
    budget_ms: float = 0.0      # wall time allowed from the request's receipt (its CancelToken's making,
                                # else the engine's call; 0: no limit); then the continuation so far is
                                # cut back to a token boundary (Completion.cut)

    def validated(self) -> "Request":
        def bad(what):
            raise CompleterError(f"bad request: {what}")

        if self.mode not in MODES:
            bad(f"mode {self.mode!r} is not one of {', '.join(MODES[:4])}")
        if not isinstance(self.decoder, str) or not self.decoder:
            bad("decoder must be a name")
        for name in ("temperature", "top_p", "min_prob", "budget_ms"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(f"{name} must be a number, got {v!r}")
        for name in ("top_k", "beam", "n", "max_chars"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(f"{name} must be a whole number >= 1, got {v!r}")
        if self.temperature < 0:
            bad(f"temperature must be 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1], got {self.top_p}")
        if self.budget_ms < 0:
            bad(f"budget_ms must be 0 (no limit) or more, got {self.budget_ms}")
        if not 0 <= self.min_prob <= 1:
            bad(f"min_prob must be in [0, 1], got {self.min_prob}")
        if self.max_chars > MAX_CHARS or self.n > 100 or self.beam > 100:
            bad(f"max_chars <= {MAX_CHARS}, n <= 100 and beam <= 100")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or self.seed < 0):
            bad(f"seed must be a whole number >= 0, got {self.seed!r}")
        return self


@dataclass
class Completion:
    text: str
    logprob: float                                   # natural log of the text's probability
    char_logprobs: list = field(default_factory=list)
    cut: bool = False            # the request's budget ran out: the decoder was stopped early
    confidence: float | None = None   # the gate's P(accepted) (completer.engine.gate), None without a gate
    features: object = field(default=None, repr=False, compare=False)   # the gate's inputs, (F,)

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

