"""The package layout: what gets installed under which import name, and which side imports which.

- trainers/ is installed as `completer_trainers` through [tool.setuptools.package-dir] (no generic
  top-level `trainers` name), and imports through the installed package, not the repo root.
- a wheel built from the repo holds every package of completer/ and the mapped folders.
- the serving path (`completer repl`, `serve`, `complete`) never imports `completer_trainers`.
"""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from completer import cli

REPO = Path(__file__).resolve().parents[1]
SERVING = ("repl", "complete", "serve")
SUBCOMMANDS = sorted(cli.build_parser()._subparsers._group_actions[0].choices)


def isolated(code: str, cwd: Path, stdin: str | None = None, flags=()) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter that sees only installed packages: -I drops the current
    directory, PYTHONPATH and user site from sys.path, and cwd is outside the repo."""
    return subprocess.run([sys.executable, "-I", *flags, "-c", code], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_trainers_import_through_the_installed_package(tmp_path):
    done = isolated(
        "import importlib.util, json, sys, completer, completer_trainers\n"
        "from importlib import metadata\n"
        "print(json.dumps({'trainers': completer_trainers.__file__, 'completer': completer.__file__,"
        " 'generic': importlib.util.find_spec('trainers') is not None, 'path': sys.path,"
        " 'direct_url': metadata.distribution('completer').read_text('direct_url.json')}))", tmp_path)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert str(REPO) not in got["path"] and "" not in got["path"]
    assert not got["generic"], "a generic top-level `trainers` package is importable"
    if json.loads(got["direct_url"] or "{}").get("dir_info", {}).get("editable"):
        # editable install: the mapping points the name at the repo's trainers/ folder
        assert Path(got["trainers"]) == REPO / "trainers" / "__init__.py"
        assert Path(got["completer"]) == REPO / "completer" / "__init__.py"
    else:
        installed = Path(got["trainers"])
        assert installed.parent.name == "completer_trainers"
        assert installed.read_text() == (REPO / "trainers" / "__init__.py").read_text()


def test_wheel_holds_every_package_under_its_import_name(tmp_path):
    # Build from a clean copy: setuptools reuses build/ in the source tree, which can hide a
    # missing package behind a stale file from an earlier build.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "data",
        "tests", "plugins"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"),
                           str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "w").glob("completer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    expected = {f"completer/{p.relative_to(REPO / 'completer')}" for p in (REPO / "completer").rglob("*.py")}
    expected |= {f"completer_trainers/{p.relative_to(REPO / 'trainers')}" for p in (REPO / "trainers").rglob("*.py")}
    expected |= {f"completer/checkpoints/{p.name}" for p in (REPO / "checkpoints").iterdir()
                 if p.suffix in (".py", ".safetensors", ".json")}
    missing = sorted(n for n in expected if "__pycache__" not in n and n not in names)
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
    tops = {n.split("/")[0] for n in names if not n.startswith("completer-")}
    assert tops == {"completer", "completer_trainers"}

    dist_info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(dist_info).decode()
    assert "completer = completer.cli:main" in entry_points
    for cell in ("rnn", "gru", "lstm"):
        assert f"{cell} = completer.cells.{cell}:" in entry_points


def test_serving_startup_never_imports_trainers(tmp_path):
    """Everything the serving commands import before they run: the CLI with all command modules,
    their --help, and the serving modules that exist."""
    code = f"""
import contextlib, importlib, importlib.util, io, json, sys
from completer import cli
commands = cli.build_parser()._subparsers._group_actions[0].choices
for name in {SERVING!r}:
    if name in commands:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            cli.main([name, "--help"])
for mod in ("completer.engine", "completer.engine.decoders", "completer.repl", "completer.server",
            "completer.frontends", "completer.model.checkpoint", "completer.model.network", "completer.model.vocab"):
    if importlib.util.find_spec(mod):
        importlib.import_module(mod)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("completer"))))
"""
    done = isolated(code, tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert {"completer.cli", "completer.model.network", "completer.commands.plugins"} <= set(loaded)
    assert not [m for m in loaded if m.startswith("completer_trainers")], loaded


@pytest.mark.parametrize("command", [c for c in ("complete", "serve") if c in SUBCOMMANDS])
def test_serving_commands_never_import_trainers(command, tiny_checkpoint, tmp_path):
    """A real run, every import traced by -X importtime (complete: a prefix; serve: end of input)."""
    stdin = "def add(a, b):\n    return" if command == "complete" else ""
    done = isolated(f"from completer.cli import main; raise SystemExit(main({[command, '--model', str(tiny_checkpoint)]!r}))",
                    tmp_path, stdin=stdin, flags=("-X", "importtime"))
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "completer.model.network" in imported  # it did load a model
    assert not [m for m in imported if m.startswith("completer_trainers")]


def test_the_package_root_holds_only_the_cli_registry_discovery_and_errors():
    """Each concern has a folder named for it (docs/architecture.md); a module that lands at the
    root of completer/ instead belongs in one."""
    root = {p.stem for p in (REPO / "completer").glob("*.py")}
    assert root <= {"__init__", "__main__", "cli", "registry", "discovery", "errors"}, sorted(root)


def test_no_python_module_is_over_about_400_lines():
    """Small modules, split along their seams (issue: 'no module over ~400 lines')."""
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines())
             for folder in ("completer", "trainers") for p in (REPO / folder).rglob("*.py")}
    assert not {p: n for p, n in sizes.items() if n > 420}
