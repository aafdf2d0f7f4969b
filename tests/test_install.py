"""The package installs the way users install it, and the shipped model travels with it.

From a clean copy of the repo (its tracked files only, so nothing built or trained in the checkout
can help), end to end:
- `pip install` of a real wheel (not editable) into a fresh virtualenv;
- `pipx install .`, with PIPX_HOME and PIPX_BIN_DIR in temporary folders.
Each installed `completer` then runs from a folder outside the repo: `complete` (plain and --json),
`repl` with stdin not a terminal, `plugins --json`; and the shipped checkpoint it loads must be the
copy inside that environment's site-packages, byte for byte the repo's `checkpoints/default.safetensors`.

Dependencies come from pip's cache and the machine's configured indexes (pip and pipx's pip read the
same pip configuration); nothing here disables them.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "default.safetensors"
PREFIX = "import "
pytestmark = pytest.mark.slow

# Printed by the installed interpreter: where the shipped model resolves, the engine's own view of
# it, and that environment's site-packages.
WHERE = ("import json, sysconfig, completer\n"
         "from completer.model import checkpoint\n"
         "from completer.engine import Engine\n"
         "print(json.dumps({'resolved': str(checkpoint.resolve(None)), 'package': completer.__file__,\n"
         "                  'engine': Engine.from_checkpoint(None).describe()['path'],\n"
         "                  'purelib': sysconfig.get_paths()['purelib']}))")


def clean_env(**extra) -> dict:
    """The caller's environment (pip configuration included) minus what would point at the repo."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


def run(cmd, cwd, stdin=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env or clean_env())
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The repo's tracked files (as they are in the working tree), copied to a temporary folder."""
    dst = tmp_path_factory.mktemp("src") / "completer"
    listed = (subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60)
              if shutil.which("git") else None)
    if listed and listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            src = REPO / name
            if src.is_file():  # a tracked file deleted in the working tree is not part of the copy
                (dst / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst / name)
    else:  # not a git checkout (an unpacked archive): everything but build and run output
        shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "data"))
    assert (dst / "checkpoints" / "default.safetensors").is_file()
    return dst


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, source], cwd=out)
    (whl,) = out.glob("completer-*.whl")
    return whl


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working directory with no repo in sight."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    return d


def check_installed(exe: Path, python: Path, prefix: Path, cwd: Path) -> None:
    """`exe` (an installed `completer`) runs and serves the shipped model from inside `prefix`."""
    where = json.loads(run([python, "-I", "-c", WHERE], cwd=cwd).stdout)
    purelib = Path(where["purelib"]).resolve()
    assert purelib.is_relative_to(prefix.resolve()), where
    for key in ("resolved", "engine", "package"):
        path = Path(where[key]).resolve()
        assert path.is_relative_to(purelib), f"{key} {path} is not in {purelib}"
        assert not path.is_relative_to(REPO), f"{key} {path} is in the repo"
    assert Path(where["resolved"]) == Path(where["engine"])
    assert Path(where["resolved"]).name == "default.safetensors"
    assert sha256(where["resolved"]) == sha256(SHIPPED), "the installed model is not the shipped one"

    got = json.loads(run([exe, "complete", "--json"], cwd=cwd, stdin=PREFIX).stdout.splitlines()[-1])
    assert got["completions"] and got["completions"][0]["text"], got
    assert got["completions"][0]["logprob"] < 0
    plain = run([exe, "complete"], cwd=cwd, stdin=PREFIX).stdout
    assert plain == got["completions"][0]["text"] + "\n"  # greedy: the same continuation both ways
    # The REPL with stdin not a terminal prints the continuation of stdin, the same greedy line.
    assert run([exe, "repl"], cwd=cwd, stdin=PREFIX).stdout == plain

    components = json.loads(run([exe, "plugins", "--json"], cwd=cwd).stdout)["components"]
    builtin = {(c["kind"], c["name"]) for c in components if c["dist"] == "completer" and c["status"] == "ok"}
    assert {("cell", n) for n in ("rnn", "gru", "lstm")} <= builtin, components
    assert {("decoder", n) for n in ("greedy", "temperature", "top-k", "top-p", "beam")} <= builtin, components


def test_pip_installs_a_wheel_that_carries_the_shipped_model(wheel, tmp_path, outside):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=outside)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], cwd=outside)
    direct_url = json.loads(run([venv / "bin" / "python", "-I", "-c",
                                 "from importlib import metadata;"
                                 "print(metadata.distribution('completer').read_text('direct_url.json'))"],
                                cwd=outside).stdout)
    assert not direct_url.get("dir_info", {}).get("editable"), direct_url
    assert direct_url["url"].endswith(".whl"), direct_url
    check_installed(venv / "bin" / "completer", venv / "bin" / "python", venv, outside)


def test_pipx_install_from_the_source_folder(source, tmp_path, outside):
    home, bin_dir = tmp_path / "pipx-home", tmp_path / "pipx-bin"
    env = clean_env(PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir), PIPX_DEFAULT_PYTHON=sys.executable,
                    PIPX_MAN_DIR=str(tmp_path / "pipx-man"))
    # `pipx install .` in the source folder, exactly as a user types it.
    run([sys.executable, "-m", "pipx", "install", "."], cwd=source, env=env, timeout=600)
    exe = bin_dir / "completer"
    assert exe.exists(), sorted(p.name for p in bin_dir.iterdir())
    venv = home / "venvs" / "completer"
    check_installed(exe, venv / "bin" / "python", venv, outside)
