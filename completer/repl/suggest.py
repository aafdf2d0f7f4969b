"""Ghost text and the Ctrl-Space menu, both computed in a worker thread.

prompt_toolkit already drops a suggestion whose document has changed, so stale text never
flashes; on top of that every keystroke cancels the request in flight (CancelToken), so a burst
of typing or a large paste costs one completion, not one per character (`EngineSuggest.attach`
hooks a buffer). With a `fallback` AutoSuggest (IPython's history suggestion), that one is asked
when the model offers nothing.
"""
from __future__ import annotations

import threading

from prompt_toolkit.application.current import get_app
from prompt_toolkit.auto_suggest import AutoSuggest, Suggestion
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.eventloop import run_in_executor_with_context

from completer.errors import CompleterError


class EngineSuggest(AutoSuggest):
    """The model's continuation at the end of the buffer."""

    def __init__(self, session, fallback: AutoSuggest | None = None):
        self.session = session
        self.fallback = fallback
        self.error: str | None = None  # the last CompleterError, shown in the toolbar
        self._token = None
        self._lock = threading.Lock()

    def cancel(self, _sender=None) -> None:
        """Cancel the request in flight (hooked to the buffer's on_text_changed)."""
        with self._lock:
            if self._token is not None:
                self._token.cancel()

    def attach(self, buffer) -> None:
        """Every change of `buffer` cancels the completion in flight (only the latest text is worth
        computing) and asks for a new one: prompt_toolkit itself only suggests after an insertion,
        not a deletion."""
        buffer.on_text_changed += self._text_changed

    def detach(self, buffer) -> None:
        buffer.on_text_changed -= self._text_changed

    def _text_changed(self, buffer) -> None:
        self.cancel()
        if buffer.suggestion is None:
            get_app().create_background_task(buffer._async_suggester())  # runs one at a time

    def get_suggestion(self, buffer, document):
        return self.model_suggestion(buffer, document)

    def model_suggestion(self, buffer, document):
        """The model's suggestion (worker thread: this runs the model)."""
        from completer.engine import CancelToken, Cancelled

        if not document.is_cursor_at_the_end or not document.text.strip():
            return None  # prompt_toolkit shows ghost text only at the end of the buffer
        token = CancelToken()
        with self._lock:
            if self._token is not None:
                self._token.cancel()
            self._token = token
        if buffer.text != document.text:  # typed again before this thread started
            return None
        try:
            completions = self.session.complete(document.text, document.cursor_position, cancel=token, typing=True)
        except Cancelled:
            return None
        except CompleterError as exc:
            self.error = str(exc)
            return None
        self.error = None
        text = completions[0].text if completions else ""
        return Suggestion(text) if text else None

    async def get_suggestion_async(self, buffer, document):
        suggestion = await run_in_executor_with_context(self.model_suggestion, buffer, document)
        # then, off the UI thread and after the suggestion is shown, what the keystroke deferred
        get_app().create_background_task(self._idle())
        if suggestion is None and self.fallback is not None and buffer.document == document:
            return self.fallback.get_suggestion(buffer, document)
        return suggestion


    async def _idle(self) -> None:
        await run_in_executor_with_context(self.session.engine.idle)


def shown(text: str) -> str:
    """One-line display of a continuation: newlines and tabs made visible."""
    return text.replace("\n", "⏎").replace("\t", "→") or "(end)"


class AlternativesCompleter(Completer):
    """The n best continuations with their probabilities (wrap in ThreadedCompleter)."""

    def __init__(self, session):
        self.session = session

    def get_completions(self, document, complete_event):
        if not complete_event.completion_requested:
            return  # only on Ctrl-Space, never while typing
        try:
            completions = self.session.complete(document.text, document.cursor_position, menu=True)
        except CompleterError:
            return
        seen = set()
        for c in completions:
            if c.text in seen:
                continue
            seen.add(c.text)
            yield Completion(c.text, start_position=0, display=shown(c.text),
                             display_meta=f"{c.prob:6.1%}")
