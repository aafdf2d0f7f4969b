"""`completer train` bad input: one line on stderr, exit 2, no traceback, no checkpoint left behind."""
import subprocess

import pytest

from completer.cli import main
from test_corpus import make_repo

TINY = ["--hidden", "8", "--embed", "4", "--batch", "2", "--seq", "8", "--steps", "2"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("repo") / "r", n_files=3)


def fails(capsys, argv, message):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse refuses before run()
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    return err


def no_checkpoints(out):
    return not out.exists() or not any(p.suffix == ".safetensors" for p in out.iterdir())


def test_bad_repositories(tmp_path, capsys):
    out = tmp_path / "run"
    fails(capsys, ["train", str(tmp_path / "missing"), "--out", str(out), *TINY], "no such directory")
    (tmp_path / "empty").mkdir()
    fails(capsys, ["train", str(tmp_path / "empty"), "--out", str(out), *TINY], "no usable source files")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.py").write_bytes(b"\0\1\2")
    (junk / "b.py").write_text("")
    fails(capsys, ["train", str(junk), "--out", str(out), *TINY], "(skipped 2 files (1 binary, 1 empty))")
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.py").write_text("x = 1\n" * 100)
    fails(capsys, ["train", str(one), "--out", str(out), *TINY], "need at least 2 usable files")
    assert not out.exists()


@pytest.mark.parametrize("flags,message", [
    (["--steps", "5", "--epochs", "2"], "contradictory"),
    (["--steps", "5", "--minutes", "1"], "contradictory"),
    (["--cell", "nope"], "unknown cell 'nope'"),
    (["--hidden", "0"], "--hidden: must be at least 1"),
    (["--dropout", "1.5"], "--dropout: must be in [0, 1)"),
    (["--lr", "-1"], "--lr: must be a positive number"),
    (["--optimizer", "rmsprop"], "invalid choice"),
    (["--batch", "500", "--seq", "500"], "too small for --batch 500 --seq 500"),
    (["--heldout", "nope.py"], "--heldout nope.py: not a usable file"),
    (["--resume"], "nothing to resume"),
    (["--resume", "--init", "x"], "--resume and --init are contradictory"),
    (["--init", "missing.safetensors"], "no such checkpoint"),
])
def test_bad_flags(repo, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    fails(capsys, ["train", str(repo), "--out", str(out), *TINY, *flags], message)
    assert no_checkpoints(out) and not out.exists()


def test_bad_output_paths(repo, tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    fails(capsys, ["train", str(repo), "--out", str(afile), *TINY], "exists and is not a directory")
    fails(capsys, ["train", str(repo), "--out", str(afile / "run"), *TINY], "cannot write there")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    fails(capsys, ["train", str(repo), "--out", str(busy), *TINY], "not empty and holds no state.safetensors")
    assert no_checkpoints(busy)


def test_corrupt_resume_state(repo, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(repo), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    state = out / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    fails(capsys, ["train", str(repo), "--out", str(out), "--resume", "--steps", "4"], "not a completer resume state")


def test_cli_subprocess_error_is_one_line(completer_exe, tmp_path):
    r = subprocess.run([*completer_exe, "train", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such directory" in r.stderr
    assert not (tmp_path / "o").exists()
