"""BLAS threads for the serving frontends: every core on a quiet machine, one when others are busy.

At batch 1 a model step is a few matrix-vector products, which OpenBLAS splits over its threads
and joins again each step. On a quiet 2-core machine two threads are fastest (an LSTM-512 step's
512 x 2048 product: 45 us on two cores, 142 us on one), but when other processes keep the cores
busy, the thread that waits for its partner is descheduled and a keystroke's suggestion takes
hundreds of milliseconds (ANCHORS "Threads under load": serve p99 629 ms with two busy processes
beside it). So the serving frontends (REPL, serve, IPython, ptpython) call `adapt_threads()`: a
daemon thread samples /proc/stat every INTERVAL seconds and sets OpenBLAS to one thread while
the other processes together use more than BUSY of a core, to every core otherwise.

Measured with `completer bench --no-train --load 2` (see docs/protocol.md); how
the threshold was picked is there too. The thread count is changed at run time through
OpenBLAS's own `openblas_set_num_threads` (ctypes on the library numpy loaded), which keeps the
threads it created and only changes how many the next call uses. An OPENBLAS_NUM_THREADS the
user set is obeyed and nothing adapts; so is a machine without /proc/stat or without OpenBLAS
(nothing to change, or no way to see the load).
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading
import time

INTERVAL = 0.5   # seconds between load samples
BUSY = 0.5       # other processes' CPU use (in cores) above which OpenBLAS gets one thread
SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads_64_",
           "openblas_set_num_threads64_", "openblas_set_num_threads")
log = logging.getLogger("completer.system.blas")
_governor = None
_start_lock = threading.Lock()


GETTERS = tuple(n.replace("set_num", "get_num") for n in SETTERS)


def _openblas_fn(names, argtypes, restype):
    """(function, library path) of the first of `names` in the OpenBLAS numpy uses, or None."""
    import numpy  # noqa: F401  (loads its BLAS, so the library is in our address space)

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = argtypes, restype
                return fn, path
    return None


def openblas():
    """(set_num_threads, library path) of the OpenBLAS numpy uses, or None."""
    return _openblas_fn(SETTERS, [ctypes.c_int], None)


def openblas_threads() -> int | None:
    """The thread count the OpenBLAS numpy uses really has now (not what an environment variable
    asked for), or None without OpenBLAS."""
    found = _openblas_fn(GETTERS, [], ctypes.c_int)
    return None if found is None else int(found[0]())


def cpu_ticks() -> tuple[int, int]:
    """(busy ticks of the whole machine, busy ticks of this process), both in USER_HZ ticks."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
    with open("/proc/self/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    return busy, int(stat[11]) + int(stat[12])  # utime + stime, every thread of the process


class Governor:
    """Samples the machine's load and sets OpenBLAS's threads: `cores` when quiet, 1 when busy."""

    def __init__(self, setter, cores: int, interval: float = INTERVAL, busy: float = BUSY):
        self.setter, self.cores, self.interval, self.busy = setter, cores, interval, busy
        self.threads = cores       # what OpenBLAS was last set to
        self.others = 0.0          # the other processes' CPU use at the last sample, in cores
        self._hz = os.sysconf("SC_CLK_TCK")
        self._thread = threading.Thread(target=self._loop, name="completer-blas", daemon=True)

    def start(self) -> "Governor":
        self._thread.start()
        return self

    def decide(self, others: float) -> int:
        """The thread count for the other processes' load, with hysteresis: back to every core
        only when they use less than half the threshold, so a load near it does not flip-flop."""
        if others > self.busy:
            return 1
        if others < self.busy / 2:
            return self.cores
        return self.threads

    def _loop(self) -> None:
        last, t0 = cpu_ticks(), time.monotonic()
        wait = min(0.1, self.interval)  # the first decision comes soon after start
        while True:
            time.sleep(wait)
            wait = self.interval
            now, t1 = cpu_ticks(), time.monotonic()
            machine, own = now[0] - last[0], now[1] - last[1]
            self.others = max(0.0, (machine - own) / self._hz / max(t1 - t0, 1e-3))
            last, t0 = now, t1
            want = self.decide(self.others)
            if want != self.threads:
                self.setter(want)
                log.info("BLAS threads %d -> %d (other processes use %.2f cores)", self.threads, want,
                         self.others)
                self.threads = want


def adapt_threads() -> Governor | None:
    """Start the governor once per process (idempotent); None when it cannot or must not run."""
    global _governor
    with _start_lock:
        if _governor is not None or os.environ.get("OPENBLAS_NUM_THREADS"):
            return _governor
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if cores < 2:
            return None
        try:
            cpu_ticks()
        except (OSError, ValueError, IndexError):
            return None
        found = openblas()
        if found is None:
            return None
        _governor = Governor(found[0], cores).start()
        return _governor


def current() -> Governor | None:
    """The running governor, if any (for `completer bench` and the tests)."""
    return _governor
