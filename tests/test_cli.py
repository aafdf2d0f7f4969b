"""The command line as a user meets it: --version, --help on every subcommand, and bad input
answered with one line on stderr and exit code 2, never a traceback."""
import argparse
import subprocess
import sys

import pytest

from completer import __version__, cli
from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig

PARSER = cli.build_parser()
SUBPARSERS = PARSER._subparsers._group_actions[0].choices
PYTHON_M = [sys.executable, "-m", "completer"]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def one_line_error(done):
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("completer"), done.stderr
    return lines[0]


def test_version(completer_exe):
    for cmd in (PYTHON_M, completer_exe):
        done = run(cmd + ["--version"])
        assert (done.returncode, done.stdout, done.stderr) == (0, f"completer {__version__}\n", "")


@pytest.mark.parametrize("command", [None] + sorted(SUBPARSERS))
def test_help(command):
    args = [command, "--help"] if command else ["--help"]
    done = run(PYTHON_M + args)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(f"usage: completer {command or ''}".rstrip())


@pytest.mark.parametrize("command", sorted(SUBPARSERS))
def test_every_flag_has_help(command):
    undocumented = [a.dest for a in SUBPARSERS[command]._actions
                    if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not undocumented


def test_bad_flag_is_one_line():
    line = one_line_error(run(PYTHON_M + ["plugins", "--no-such-flag"]))
    assert "--no-such-flag" in line


# ---- impossible model configurations ------------------------------------------------------

@pytest.mark.parametrize("config, message", [
    (dict(cell="no-such-cell"), "unknown cell 'no-such-cell'.*available: .*gru.*lstm.*rnn"),
    (dict(hidden=0), "hidden must be an integer >= 1, got 0"),
    (dict(layers=-1), "layers must be an integer >= 1, got -1"),
    (dict(layers=0), "layers must be an integer >= 1, got 0"),
    (dict(embed=0), "embed must be an integer >= 1"),
    (dict(dropout=1.0), "dropout must be in"),
])
def test_model_rejects_impossible_configs(config, message):
    with pytest.raises(CompleterError, match=message):
        CharModel(ModelConfig(**{"vocab_size": 10, "embed": 4, "hidden": 4, **config}))


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    for name in ("a.py", "b.py", "c.py"):
        (repo / name).write_text("def f(x):\n    return x + 1\n" * 20)
    return repo


@pytest.mark.parametrize("flags, message", [
    (["--cell", "no-such-cell"], "no-such-cell"),
    (["--hidden", "0"], "hidden"),
    (["--layers", "-1"], "layers"),
])
def test_train_rejects_bad_sizes_in_one_line(small_repo, tmp_path, flags, message):
    done = run(PYTHON_M + ["train", str(small_repo), "--out", str(tmp_path / "run"), "--steps", "1",
                           "--hidden", "8", "--batch", "2", "--seq", "8", *flags])
    assert message in one_line_error(done)


def test_no_numpy_on_the_way_to_a_command():
    """The CLI imports every command module to build its parser; none may load NumPy, or
    `mpirun ... completer train` could not give each rank its BLAS threads before OpenBLAS starts."""
    code = "import sys; from completer.cli import build_parser; build_parser(); print('numpy' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "False", p.stderr
    from completer.commands import repl
    from completer.engine import stops

    assert repl.MODES == stops.MODES[:4]                     # the modes repl.py spells out
