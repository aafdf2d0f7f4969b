"""The REPL session: one growing document in the engine plus the user's settings.

Everything submitted at the prompt is appended to `context`; while typing, the engine document is
`context + buffer`, so a suggestion knows what came before. The context is bounded: past
MAX_CONTEXT characters its oldest lines go, down to KEEP_CONTEXT (the REPL, IPython and ptpython
share this Session: hostile cells once held 4.17 M characters and 240 MB in IPython), and the
engine document drops them too (`Engine.drop_prefix`: the memory does not read the rest again). The UI thread only changes plain
Python strings (`context`, settings); the engine document is brought up to date by the worker
thread that asks for a completion (`Engine.change`, which keeps the cached states of the
unchanged prefix and, with adaptation on, notes where the edit ended).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from completer.errors import CompleterError
from completer.engine.stops import MODES as ENGINE_MODES

MODES = tuple(m for m in ENGINE_MODES if m != "free")  # "free" (no stop rule) is for sampling
URI = "repl://session"
MAX_CONTEXT = 100_000   # characters of submitted text kept as context at most
KEEP_CONTEXT = 50_000   # what remains after a cut (cuts are rare: each one re-reads the states)


@dataclass
class Settings:
    mode: str = "line"
    decoder: str = "greedy"
    temperature: float = 1.0
    menu_size: int = 5  # continuations in the Ctrl-Space menu
    gate: float | None = None   # ghost text only if the gate's P(accepted) >= this (None: the gate's
                                # default threshold; 0: everything; see completer.engine.gate)


def decoder_names() -> list[str]:
    from completer.registry import registry

    return sorted(registry.names("decoder"))


def check_settings(mode: str | None = None, decoder: str | None = None) -> None:
    """Raise CompleterError for an unknown mode or decoder (before the UI starts, or for a command)."""
    from completer.registry import registry

    if mode is not None and mode not in MODES:
        raise CompleterError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if decoder is not None:
        registry.get("decoder", decoder)  # CompleterError naming the available ones


class Session:
    def __init__(self, engine, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.context = ""  # everything submitted so far (the last MAX_CONTEXT characters at most)
        self._context_lock = threading.Lock()  # context and _cut change together (UI thread, briefly)
        self.latency: float | None = None  # seconds, of the last ghost-text completion
        self._lock = threading.Lock()  # one engine conversation (sync + complete) at a time
        self._attach(engine)

    def _attach(self, engine) -> None:
        self._cut = 0  # characters cut from the context that the engine document still holds
        self.engine = engine
        self.info = engine.describe()
        engine.open(URI, "")

    # ---- called from the UI thread: cheap, never touch the engine ------------------------
    def submit(self, text: str) -> None:
        context = self.context + (text if text.endswith("\n") else text + "\n")
        cut = 0
        if len(context) > MAX_CONTEXT:  # the oldest lines go, at a line's start when there is one
            cut = len(context) - KEEP_CONTEXT
            nl = context.find("\n", cut, cut + 4096)
            cut = nl + 1 if nl >= 0 else cut
        with self._context_lock:
            self.context, self._cut = context[cut:], self._cut + cut

    def reset(self) -> None:
        with self._context_lock:
            self.context, self._cut = "", 0  # the document is replaced whole at the next completion

        if self.engine.adapt:  # learned weights go too (a brief engine call, no model work)
            self.engine.reset_adaptation(URI)

    def replace_engine(self, engine) -> None:
        with self._lock:
            self.engine.close(URI)
            self._attach(engine)

    def request(self, menu: bool = False, typing: bool = False):
        """The Request for the ghost text (typing: under the as-you-type budget) or the menu."""
        from completer.engine import TYPING_BUDGET_MS, Request

        s = self.settings
        max_chars = 400 if s.mode == "block" else 80  # as `completer complete`
        if menu:  # the n best: beam search (in char mode, exactly the n likeliest next characters)
            return Request(mode=s.mode, decoder="beam", beam=max(s.menu_size, 4), n=s.menu_size,
                           temperature=s.temperature, max_chars=max_chars)
        return Request(mode=s.mode, decoder=s.decoder, temperature=s.temperature, max_chars=max_chars,
                       budget_ms=TYPING_BUDGET_MS if typing else 0)

    # ---- called from worker threads --------------------------------------------------------
    def complete(self, buffer_text: str, cursor: int, menu: bool = False, cancel=None, typing: bool = False) -> list:
        """Completions at `cursor` in the buffer, with the session's context before it."""
        request = self.request(menu, typing)
        with self._lock:
            with self._context_lock:
                context, cut, self._cut = self.context, self._cut, 0
            if cut:
                self.engine.drop_prefix(URI, cut)
            self.engine.change(URI, context + buffer_text)  # keeps the states of the unchanged prefix
            start = time.perf_counter()
            out = self.engine.complete(URI, len(context) + cursor, request, cancel=cancel)
            if not menu:
                self.latency = time.perf_counter() - start
        if menu:  # the menu lists the alternatives; only the ghost text is gated
            return out
        from completer.engine.gate import shown

        return shown(out, self.engine.gate, self.settings.gate)

    def describe_model(self) -> str:
        i = self.info
        return f"{i['cell']} {i['hidden']}x{i['layers']} ({_count(i['params'])} params)"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)
