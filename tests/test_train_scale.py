"""Training at scale: several repositories or a corpus file, the vocabulary cap (also under --init),
validation by whole files, the warm-up that follows the budget on --resume, and the pinned manifest
with its fetch command (offline: the sdists are made here)."""
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from completer.cli import main
from completer.errors import CompleterError
from completer.model import checkpoint
from completer_trainers import corpus, fetch
from completer_trainers.loop import Run
from test_corpus import make_repo

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "16", "--embed", "8", "--batch", "4", "--seq", "16", "--val-every", "10", "--log-every", "5"]
OPTS = dict(hidden=16, embed=8, batch=4, seq=16, val_every=10, log_every=5)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    base = tmp_path_factory.mktemp("repos")
    a = make_repo(base / "alpha")
    b = make_repo(base / "beta", n_files=3, extra="# caf\xe9 \u2192 na\xefve \u2603\n")
    return a, b


def test_several_repositories_make_one_corpus_with_weights(repos, tmp_path):
    a, b = repos
    c, weights = corpus.discover_many([(a, 1), (b, 3)])
    assert [f.path for f in c.files] == [f"alpha/pkg/mod{i}.py" for i in range(6)] + \
        [f"beta/pkg/mod{i}.py" for i in range(3)]
    assert weights == {f"beta/pkg/mod{i}.py": 3 for i in range(3)}
    assert "alpha/latin1.py" in c.skipped["not UTF-8"]
    one, none = corpus.discover_many([(a, 1)])                      # one folder: repo-relative paths
    assert [f.path for f in one.files] == [f"pkg/mod{i}.py" for i in range(6)] and none == {}
    with pytest.raises(CompleterError, match="both named 'alpha'"):
        corpus.discover_many([(a, 1), (a, 2)])

    # a weight W reads the training files W times per epoch
    run1 = Run([(a, 1), (b, 1)], tmp_path / "w1", dict(OPTS, val_fraction=0.0, steps=1))
    run3 = Run([(a, 1), (b, 3)], tmp_path / "w3", dict(OPTS, val_fraction=0.0, steps=1))
    extra = sum(len(f.text) for f in run1.train_files if f.path.startswith("beta/"))
    assert run3.streams.N == run1.streams.N + 2 * extra
    assert run1.digest != run3.digest


def test_corpus_file_on_the_command_line(repos, tmp_path, capsys):
    a, b = repos
    listing = tmp_path / "corpus.txt"
    listing.write_text(f"# folders\n{a}\n{b} x2\n")
    assert corpus.read_manifest(listing) == [(a, 1), (b, 2)]
    rc = main(["train", "--corpus", str(listing), "--out", str(tmp_path / "run"), *TINY, "--steps", "3"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "corpus: 9 files" in err and "alpha/" not in err.split("\n")[0].split("under")[0]
    meta = checkpoint.read_metadata(tmp_path / "run" / "best.safetensors")
    assert meta["train"]["corpus"]["train_files"] + len(meta["train"]["corpus"]["val_files"]) == 9
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{a} twice\n")
    assert main(["train", "--corpus", str(bad), "--out", str(tmp_path / "r2"), *TINY]) == 2
    assert "expected FOLDER [xWEIGHT]" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r3"), *TINY]) == 2
    assert "give the corpus" in capsys.readouterr().err


def test_vocabulary_cap_counts_what_it_leaves_out(repos, tmp_path, capsys):
    a, b = repos
    counts = corpus.char_counts("aaabbc\u2603")
    assert counts == {"a": 3, "b": 2, "c": 1, "\u2603": 1}
    v, n, occ = corpus.capped_vocab(counts, size=3)
    assert v.chars == ["a", "b"] and (n, occ) == (2, 2)               # ties broken by code point
    v, n, occ = corpus.capped_vocab(counts, min_count=2)
    assert v.chars == ["a", "b"] and (n, occ) == (2, 2)
    v, _, _ = corpus.capped_vocab(counts, size=3, base=corpus.Vocab("xyz"))
    assert v.chars == ["x", "y", "z"]                                 # a full base takes no more

    rc = main(["train", str(a), str(b), "--out", str(tmp_path / "full"), *TINY, "--steps", "2"])
    full = checkpoint.load(tmp_path / "full" / "best.safetensors")[1]
    assert rc == 0 and {"\u2603", "\u2192", "\xe9"} <= set(full.chars)
    capsys.readouterr()
    rc = main(["train", str(a), str(b), "--out", str(tmp_path / "cap"), *TINY, "--steps", "2",
               "--vocab-size", str(len(full) - 3)])
    err = capsys.readouterr().err
    capped = checkpoint.load(tmp_path / "cap" / "best.safetensors")[1]
    assert rc == 0 and len(capped) == len(full) - 3
    m = re.search(r"vocabulary: (\d+) symbols \(--vocab-size \d+\); (\d+) other characters \(([\d,]+) occurrences", err)
    assert m and int(m[1]) == len(full) - 3 and int(m[2]) == 3, err
    assert int(m[3].replace(",", "")) >= 3

    # --init keeps the checkpoint's characters and adds new ones only up to the cap
    base = tmp_path / "base"
    assert main(["train", str(a), "--out", str(base), *TINY, "--steps", "2"]) == 0
    old = checkpoint.load(base / "best.safetensors")[1]
    for cap, want in ((len(old), len(old)), (len(old) + 1, len(old) + 1), (2, len(old))):
        out = tmp_path / f"ft{cap}"
        assert main(["train", str(a), str(b), "--out", str(out), *TINY, "--steps", "2", "--init",
                     str(base / "best.safetensors"), "--vocab-size", str(cap)]) == 0
        new = checkpoint.load(out / "best.safetensors")[1]
        assert len(new) == want and set(old.chars) <= set(new.chars)
    capsys.readouterr()
    assert main(["train", str(a), "--out", str(tmp_path / "x"), *TINY, "--vocab-size", "1"]) == 2
    assert "error" in capsys.readouterr().err


def test_validation_is_whole_files_up_to_val_chars(repos, tmp_path):
    a, b = repos
    files, _ = corpus.discover_many([(a, 1), (b, 1)])
    train, val, _ = corpus.split(files.files, 0.5, seed=1, val_chars=400)
    sizes = {f.path: len(f.text) for f in files.files}
    assert val and sum(sizes[f.path] for f in val) <= 400
    assert len(train) + len(val) == len(files.files)                # beyond the cap, files train
    run = Run([(a, 1), (b, 1)], tmp_path / "v", dict(OPTS, val_fraction=0.5, val_chars=400, steps=1))
    assert len(run.val_ids) == sum(len(f.text) for f in run.val_files)   # whole files, not a cut


def test_resume_with_a_larger_budget_equals_a_run_with_that_budget(repos, tmp_path):
    """The derived warm-up (10% of the budget) follows the budget given on --resume."""
    a, _ = repos
    opts = dict(OPTS, val_every=5)
    Run(a, tmp_path / "short", dict(opts, steps=20)).train()
    Run(a, tmp_path / "short", dict(steps=40), resume=True).train()
    Run(a, tmp_path / "long", dict(opts, steps=40)).train()
    def lrs(run):
        return {json.loads(l)["step"]: json.loads(l)["lr"] for l in (tmp_path / run / "metrics.jsonl").read_text()
                .splitlines() if json.loads(l)["kind"] == "train"}

    resumed, long = lrs("short"), lrs("long")
    assert [resumed[s] for s in (25, 30, 35, 40)] == [long[s] for s in (25, 30, 35, 40)]
    assert json.loads(Path(tmp_path / "short" / "metrics.jsonl").read_text().splitlines()[0])["step"] == 5


# ---- the pinned manifest and its fetch command ------------------------------------------------

ISSUE_LIST = ("flask 3.0.3, werkzeug 3.0.4, jinja2 3.1.4, itsdangerous 2.2.0, pluggy 1.5.0, packaging 24.1, "
              "python-dateutil 2.9.0, idna 3.10, rich 13.8.1, docutils 0.21.2, tornado 6.4.1, paramiko 3.4.1, "
              "marshmallow 3.22.0, black 24.8.0, isort 5.13.2, jedi 0.19.1, parso 0.8.4, networkx 3.3, "
              "pytest 8.3.3, celery 5.4.0, kombu 5.4.2, scrapy 2.11.2, astroid 3.3.4, pylint 3.3.1, "
              "sphinx 8.0.2, tqdm 4.66.5, fastapi 0.115.0, starlette 0.38.6, requests 2.32.3")


def test_the_python_manifest_pins_exactly_the_issues_packages():
    entries = fetch.parse((ROOT / "trainers" / "manifests" / "python.txt").read_text())
    want = [tuple(x.split()) for x in ISSUE_LIST.split(", ")]
    assert sorted((e["name"], e["version"]) for e in entries) == sorted(want)
    req = next(e for e in entries if e["name"] == "requests")
    assert set(req["drop"]) == {"src/requests/sessions.py", "tests/test_lowlevel.py"}   # the held-out pair


def _sdist(path: Path, top: str, files: dict) -> None:
    with tarfile.open(path, "w:gz") as t:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def test_fetch_unpacks_prunes_and_writes_the_corpus_file(tmp_path, capsys):
    dest = tmp_path / "data"
    (dest / "sdists").mkdir(parents=True)
    _sdist(dest / "sdists" / "toy_pkg-1.0.tar.gz", "toy_pkg-1.0",
           {"src/toy/a.py": "x = 1\n", "src/toy/held.py": "y = 2\n", "src/toy/_vendor/six.py": "z = 3\n"})
    _sdist(dest / "sdists" / "other-2.0.tar.gz", "other-2.0", {"o.py": "o = 1\n"})
    manifest = tmp_path / "m.txt"
    manifest.write_text("# toy\ntoy-pkg==1.0 x3 -src/toy/held.py\nother==2.0\n")
    failing_pip = ["false"]                                  # nothing may be downloaded: both are there
    out = fetch.fetch(manifest, dest, pip=failing_pip, log=lambda m: None)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.py")) == \
        ["other-2.0/o.py", "toy-pkg-1.0/src/toy/a.py"]
    assert corpus.read_manifest(out) == [(dest / "toy-pkg-1.0", 3), (dest / "other-2.0", 1)]
    manifest.write_text("missing==9.9\n")
    with pytest.raises(fetch.ManifestError, match="pip download missing==9.9 failed"):
        fetch.fetch(manifest, dest, pip=failing_pip, log=lambda m: None)
    manifest.write_text("toy-pkg==1.0 -../etc\n")
    assert fetch.main([str(manifest), str(dest)]) == 2
    assert "neither xWEIGHT nor -PATH" in capsys.readouterr().err


def test_progress_rate_and_eta_follow_the_recent_steps(repos, tmp_path, monkeypatch):
    """After a slow start, the progress line's rate and ETA are the last minute's, not the session's."""
    from completer_trainers import report

    a, _ = repos
    run = Run(a, tmp_path / "p", dict(OPTS, steps=10_000))
    clock = [0.0]
    monkeypatch.setattr(report.time, "perf_counter", lambda: clock[0])
    cpw = run.streams.chars_per_window
    # 10 steps in the first 100 s (10 s of training each), then 100 steps a second
    run.step, clock[0] = 10, 100.0
    line = run._progress(10, 100.0, 0.0)
    assert f"{report._fmt_count(cpw / 10)} chars/s" in line and "ETA 27h45m" in line
    for k in range(1, 121):
        run.step, clock[0] = 10 + 10 * k, 100.0 + k
        line = run._progress(10 + 10 * k, 100.0 + k, 0.0)
    assert f"{report._fmt_count(10 * cpw)} chars/s" in line and "ETA 14m39s" in line
