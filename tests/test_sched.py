"""The serving frontends ask the kernel for a short scheduler slice (completer/sched.py), and the
threads they start inherit it: checked on a real `completer serve` over pipes."""
import ctypes
import os
import platform
import struct
import threading

import pytest

from completer.system import sched
from completer.evaluation.serving import PipeClient

GETATTR = {"x86_64": 315, "aarch64": 275}   # sched_getattr


def slice_ns(tid: int) -> int:
    """The sched_runtime (the slice asked for) of thread `tid`, as sched_getattr reports it."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(56)
    assert libc.syscall(GETATTR[platform.machine()], tid, buf, 56, 0) == 0, os.strerror(ctypes.get_errno())
    return struct.unpack("=IIQiIQQQII", buf.raw)[5]


def kernel_keeps_slices() -> bool:
    """Whether this kernel records a custom slice (Linux 6.12+): tried on a thread of our own."""
    seen = []

    def probe():
        sched.short_slice(250)
        seen.append(slice_ns(threading.get_native_id()))

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return seen == [250_000]


pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.machine() not in GETATTR,
                                reason="sched_setattr is Linux's")


def test_short_slice_is_granted_without_privilege_and_keeps_the_nice_value():
    out = []

    def probe():
        os.nice(0)
        before = os.nice(0)
        out.append((sched.short_slice(), os.nice(0) == before))

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert out == [(True, True)]


def test_serve_and_its_threads_run_with_the_short_slice(completer_exe, tiny_checkpoint):
    if not kernel_keeps_slices():
        pytest.skip("this kernel ignores custom slices (Linux < 6.12): nothing to see")
    client = PipeClient([*completer_exe, "serve", "--model", str(tiny_checkpoint)])
    try:
        assert "result" in client.request("initialize", {"capabilities": {}, "processId": None})
        slices = {int(t): slice_ns(int(t)) for t in os.listdir(f"/proc/{client.proc.pid}/task")}
        # the worker (the main thread) and the protocol threads it started (reader, writer);
        # OpenBLAS's own, started as numpy loads, keep the default
        assert slices[client.proc.pid] == sched.SLICE_US * 1000, slices
        assert sum(v == sched.SLICE_US * 1000 for v in slices.values()) >= 3, slices
    finally:
        assert client.close() == 0
