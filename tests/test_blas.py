"""The BLAS thread policy of the serving frontends (completer/blas.py): one OpenBLAS thread while
other processes keep the cores busy, every core when they are quiet; OPENBLAS_NUM_THREADS wins."""
import os
import subprocess
import sys
import time

import pytest

from completer.system import blas
from completer.evaluation.serving import busy


def test_decide_has_hysteresis():
    g = blas.Governor(setter=lambda n: None, cores=2, busy=0.5)
    assert g.decide(0.9) == 1
    g.threads = 1
    assert g.decide(0.4) == 1          # between busy/2 and busy: stay
    assert g.decide(0.1) == 2
    g.threads = 2
    assert g.decide(0.4) == 2


def test_cpu_ticks_count_this_process():
    before = blas.cpu_ticks()
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    after = blas.cpu_ticks()
    assert after[1] - before[1] >= 0.1 * os.sysconf("SC_CLK_TCK")      # our own 0.2 s of CPU
    assert after[0] - before[0] >= after[1] - before[1] - 2             # within the machine's


def test_numpys_openblas_setter_is_found():
    found = blas.openblas()
    assert found is not None, "numpy's bundled OpenBLAS should be found"
    setter, path = found
    assert "openblas" in path.lower()


PROBE = """
import time
from completer.system import blas
g = blas.adapt_threads()
if g is None:
    print("none")
else:
    time.sleep(1.5)
    print(g.threads, round(g.others, 2))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: nothing to adapt")
def test_governor_runs_one_thread_beside_busy_processes_and_honours_the_environment():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    with busy(2):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env)
    threads, others = out.stdout.split()
    assert threads == "1" and float(others) > blas.BUSY, out.stdout
    fixed = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                           env=dict(env, OPENBLAS_NUM_THREADS="2"))
    assert fixed.stdout.strip() == "none"       # the user's setting: nothing adapts
