"""Stopping a run between windows: SIGINT, SIGTERM and SIGUSR1 set a flag the loop checks; a second
one stops at once (SignalExit, whose exit code is still 128 + the first signal's number)."""
from __future__ import annotations

import signal
import threading

from completer.errors import SignalExit

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopSignal:
    """SIGINT/SIGTERM/SIGUSR1 set a flag the loop checks between windows; a second one stops at once
    (SignalExit: the exit code is still 128 + the first signal's number)."""

    def __init__(self):
        self.signum, self._old = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise SignalExit(self.signum)
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def __call__(self) -> bool:
        return self.signum is not None
