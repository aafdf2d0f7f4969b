"""`completer eval` reads a folder as `completer train` does, and a file of one long line costs no more
per character than ordinary code."""
import difflib
import json
import subprocess

import numpy as np

from test_corpus import make_repo

from completer.evaluation import evaluate
from completer.discovery import discover
from completer.evaluation.evaluate import Doc


def test_eval_of_a_folder_skips_what_train_skips_with_the_same_counts(completer_exe, tiny_checkpoint, tmp_path):
    """A binary and a Latin-1 file used to stop eval ("not UTF-8 text", exit 2); train skips them."""
    repo = make_repo(tmp_path / "r")
    r = subprocess.run(completer_exe + ["eval", str(repo), "--model", str(tiny_checkpoint), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    corpus = discover(repo)  # what training sees
    assert f"completer eval: {repo}: {len(corpus.files)} files, skipped {corpus.skip_summary()}" in r.stderr
    assert "1 binary" in corpus.skip_summary() and "1 not UTF-8" in corpus.skip_summary()
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["files"] == [str(repo / f.path) for f in corpus.files]
    assert report["chars"] == corpus.chars


def test_a_folder_with_nothing_usable_says_why(completer_exe, tiny_checkpoint, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.py").write_bytes(b"\xff\xfe not utf-8")
    r = subprocess.run(completer_exe + ["eval", str(tmp_path / "d"), "--model", str(tiny_checkpoint)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"completer eval: error: {tmp_path / 'd'}: no usable source files (skipped 1 file (1 not UTF-8))"]


def test_scoring_a_long_line_costs_what_a_short_one_does(monkeypatch):
    """Line scores compare each suggestion with the rest of its line through difflib, whose cost
    grows with that rest: on a 200 kB one-line file every cut used to index ~100 kB of truth."""
    sizes = []
    real = difflib.SequenceMatcher

    def spy(isjunk, a, b):
        assert len(b) <= 2 * evaluate.TRUTH_CHARS, f"scoring against {len(b)} characters of truth"
        sizes.append(len(b))
        return real(isjunk, a, b)
    monkeypatch.setattr(difflib, "SequenceMatcher", spy)
    rng = np.random.default_rng(0)
    line = "".join(rng.choice(list("abc = f(x); "), 200_000))
    docs = [Doc("min.py", line + "\n")]
    cuts = evaluate.cut_points(docs)
    em, es, _ = evaluate.line_scores(docs, cuts, [line[p:p + 80] for _, p in cuts])
    assert len(sizes) == len(cuts) == 1000 and 0 < es < 10


def test_ordinary_lines_score_exactly_as_before_the_cap():
    text = "".join(f"    value_{i} = compute(value_{i - 1}, {i})  # step {i}\n" for i in range(400))
    docs = [Doc("a.py", text)]
    cuts = evaluate.cut_points(docs)
    guesses = [text[p:p + 7] for _, p in cuts]
    full = [evaluate.line_match(g, text[p:text.index("\n", p)]) for g, (_, p) in zip(guesses, cuts)]
    em, es, _ = evaluate.line_scores(docs, cuts, guesses)
    assert em == 100.0 * np.mean([f[0] for f in full]) and es == np.mean([f[1] for f in full])
