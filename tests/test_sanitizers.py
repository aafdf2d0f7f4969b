"""The memory's C kernel under AddressSanitizer and UndefinedBehaviorSanitizer (issue 23).

The kernel is compiled again with gcc `-fsanitize=address,undefined` into a temporary folder,
and a separate Python (with the ASan runtime preloaded: Python itself is not instrumented) runs
the memory's tests with that build in place of the installed one: its contract and the engine's
use (test_memory.py), hostile calls, states and workspaces (test_memory_hostile.py), crafted cache
files (test_memory_cache.py) and the hypothesis fuzzers (test_memory_fuzz.py). Any report fails:
UBSan halts on its first error, ASan aborts on its first, and the output is searched for either's
banner. A probe extension with a deliberate heap overflow checks first that the harness does catch
one. 35 s on 2 cores at load average ~10, 90-125 s at 15-18.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "completer" / "memory" / "_kernel.c"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
FLAGS = ["-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", f"-I{sysconfig.get_paths()['include']}"]
REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")

# put the sanitized build where `from completer.memory import _kernel` finds it first
PLUGIN = '''
import importlib.util, os, sys
import completer
spec = importlib.util.spec_from_file_location("completer.memory._kernel", os.environ["SANITIZED_KERNEL"])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.modules["completer.memory._kernel"] = mod
import completer.memory
completer.memory._kernel = mod
'''

PROBE = r'''
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
static PyObject *overflow(PyObject *self, PyObject *arg) {
    volatile int *p = malloc(4 * sizeof(int));
    long i = PyLong_AsLong(arg);
    p[i] = 1;                      /* i = 4: one past the end */
    int v = p[0];
    free((void *)p);
    return PyLong_FromLong(v);
}
static PyMethodDef methods[] = {{"overflow", overflow, METH_O, ""}, {NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_probe", "", -1, methods};
PyMODINIT_FUNC PyInit__probe(void) { return PyModule_Create(&mod); }
'''


def _runtime() -> str | None:
    gcc = shutil.which("gcc")
    if not gcc:
        return None
    lib = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return os.path.realpath(lib) if os.path.isfile(lib) else None


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory):
    """(environment, folder) for a Python that runs the sanitized kernel."""
    runtime = _runtime()
    if runtime is None:  # the suite's machines have gcc with libasan (Debian's gcc-12)
        pytest.fail("gcc with libasan is needed to build the kernel under the sanitizers")
    out = tmp_path_factory.mktemp("sanitized")
    kernel = out / f"_kernel{SUFFIX}"
    subprocess.run(["gcc", *FLAGS, str(KERNEL), "-o", str(kernel), "-lm", "-lpthread"], check=True)
    (out / "probe.c").write_text(PROBE)
    subprocess.run(["gcc", *FLAGS, str(out / "probe.c"), "-o", str(out / f"_probe{SUFFIX}")], check=True)
    (out / "sanitized_kernel.py").write_text(PLUGIN)
    env = dict(os.environ, LD_PRELOAD=runtime, SANITIZED_KERNEL=str(kernel),
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
               PYTHONPATH=os.pathsep.join([str(out), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               FUZZ_EXAMPLES=os.environ.get("FUZZ_EXAMPLES", "40"), OPENBLAS_NUM_THREADS="1")
    return env, out


def _reports(text: str) -> list:
    return [line for line in text.splitlines() if any(r in line for r in REPORTS)]


def test_the_harness_catches_an_overflow(sanitized):
    env, out = sanitized
    p = subprocess.run([sys.executable, "-c", "import _probe; _probe.overflow(4)"], env=env, cwd=out,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and _reports(p.stderr), p.stderr[-2000:]


def test_memory_tests_and_fuzzers_give_no_sanitizer_report(sanitized):
    env, out = sanitized
    check = ("import completer.memory._kernel as k, os; "
             "assert k.__file__ == os.environ['SANITIZED_KERNEL'], k.__file__")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "sanitized_kernel", "-p", "no:cacheprovider",
           "tests/test_memory.py", "tests/test_memory_hostile.py", "tests/test_memory_cache.py",
           "tests/test_memory_fuzz.py"]
    p = subprocess.run([sys.executable, "-c", "import sanitized_kernel; " + check], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]                        # the sanitized build is the one tested
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = p.stdout + p.stderr
    assert not _reports(output), "\n".join(_reports(output)) + "\n" + output[-4000:]
    assert p.returncode == 0, output[-4000:]
    assert " passed" in p.stdout and " failed" not in p.stdout
