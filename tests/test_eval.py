"""completer eval: the protocol's pieces against hand computations, the batched passes against a
naive step-by-step reading, and the command's output and bad input."""
import difflib
import json

import numpy as np
import pytest

from completer import cli
from completer.evaluation import evaluate
from completer.model import checkpoint
from completer.engine.adaptation import Adapter
from completer.evaluation.evaluate import Doc
from completer.model.network import CharModel, ModelConfig
from completer.model.start import start_state
from completer.model.vocab import Vocab

CODE = ("import os\n\n\ndef f(x):\n    return x + 1\n\n\nclass A:\n    def g(self, y):\n"
        "        if y:\n            return f(y)   \n        return None\n")


# ---- the protocol's pieces ----------------------------------------------------------------------
def test_cut_points_are_seeded_sorted_and_skip_blank_rests():
    docs = [Doc("a.py", CODE), Doc("b.py", "x = 1\n   \ny = 2\n")]
    cuts = evaluate.cut_points(docs, n=20)
    assert cuts == evaluate.cut_points(docs, n=20) and cuts == sorted(cuts) and len(set(cuts)) == 20
    assert all(evaluate.rest_of_line(docs[d].text, p).strip() for d, p in cuts)
    every = evaluate.cut_points(docs, n=10_000)           # fewer eligible offsets than asked
    eligible = sum(len(line.rstrip()) for doc in docs for line in doc.text.split("\n"))
    assert len(every) == eligible
    assert (1, 6) not in every and (1, 0) in every        # the blank line, the first character


def test_line_match_by_hand():
    assert evaluate.line_match("foo(x)  ", "foo(x)") == (True, 100.0)
    em, es = evaluate.line_match("fob", "foo")
    assert not em and es == pytest.approx(100 * 2 * 2 / 6)
    assert evaluate.line_match("", "abc") == (False, 0.0)


def test_keystrokes_by_hand():
    T, F = True, False
    # 3 right -> accept 3 (1 key); wrong -> type (1); 1 right is not enough -> type (1); type; type
    assert evaluate.keystrokes([T, T, T, F, T, F, F]) == 5
    assert evaluate.keystrokes([T] * 200) == 3            # suggestions stop at 80 characters
    assert evaluate.keystrokes([F] * 7) == 7
    assert evaluate.keystrokes([]) == 0


def test_keystroke_lines_are_whole_nonblank_lines_up_to_the_budget():
    docs = [Doc("a.py", CODE * 5)]
    lines = evaluate.keystroke_lines(docs, min_chars=100)
    assert lines == evaluate.keystroke_lines(docs, min_chars=100)
    total = sum(e - s for _, s, e in lines)
    assert 100 <= total < 100 + max(len(line) for line in CODE.split("\n"))
    for d, s, e in lines:
        text = docs[d].text
        assert (s == 0 or text[s - 1] == "\n") and text[e] == "\n" and text[s:e].strip()


def test_compressors_use_the_training_text_as_context():
    train, test = CODE * 20, CODE
    assert evaluate.compressed_bpc(train, test, "lzma") < 1.0 < evaluate.compressed_bpc("x" * 500, test, "lzma")
    assert evaluate.compressed_bpc(train, test, "bz2") < evaluate.compressed_bpc("x" * 500, test, "bz2")


# ---- the model passes -----------------------------------------------------------------------------
def constant_model(vocab, probs):
    """A model whose prediction ignores the text: softmax(head.b) = probs."""
    model = CharModel(ModelConfig(cell="lstm", vocab_size=len(vocab), embed=4, hidden=8))
    for v in model.params.values():
        v[...] = 0.0
    model.params["head.b"][...] = np.log(probs)
    return model


def test_known_probabilities_by_hand():
    vocab = Vocab("ab\n")                                  # ids: \n 0, a 1, b 2, unknown 3
    probs = np.array([0.1, 0.6, 0.2, 0.1], np.float32)
    model = constant_model(vocab, probs)
    docs = [Doc("x.py", "aaab\naaab\n")]
    report = evaluate.evaluate(model, vocab, docs)
    bits = -np.log2(probs[[1, 1, 1, 2, 0] * 2])
    assert report["bpc"] == pytest.approx(bits.mean(), rel=1e-5)
    assert report["top1"] == pytest.approx(60.0)           # the a's
    assert report["top5"] == pytest.approx(100.0)
    # each line: "aaa" accepted (1 key), "b" typed (1 key): 2 keys for 4 characters
    assert report["keystrokes_saved"] == pytest.approx(0.5)
    # greedy always says "a" for 80 characters: never exact; ES against the rest of the line
    truths = [evaluate.rest_of_line(docs[0].text, p) for _, p in evaluate.cut_points(docs)]
    es = np.mean([difflib.SequenceMatcher(None, "a" * 80, t).ratio() * 100 for t in truths])
    assert report["shown"]["coverage"] == 100.0 and report["shown"]["precision"] == 0.0
    assert report["shown"]["loops"] == 100.0               # "aaaa..." where the truth has at most "aaa"
    assert report["shown"]["accepted_chars"] == pytest.approx(np.mean([len(t) - len(t.lstrip("a")) for t in truths]))
    assert report["line_em"] == 0.0 and report["line_es"] == pytest.approx(es)
    assert report["cuts"] == 8 and report["chars"] == 10


def test_ngram_line_completion_by_hand():
    vocab = Vocab("x =17\n")
    model = constant_model(vocab, np.full(len(vocab), 1 / len(vocab), np.float32))
    docs = [Doc("x.py", "x = 1\nx = 7\n")]
    alone = evaluate.evaluate(model, vocab, docs)
    report = evaluate.evaluate(model, vocab, docs, train=["x = 1\n" * 20], ngram_order=3)
    # 10 cuts, all eligible ones; the 3-gram always completes "x = 1": the first line's 5 cuts are
    # exact, the second's are "x = 1" vs "x = 7", " = 1" vs " = 7", ..., "1" vs "7"
    assert report["cuts"] == 10 and report["ngram_order"] == 3
    assert report["ngram_line_em"] == pytest.approx(50.0)
    es = [100] * 5 + [100 * 2 * m / (2 * n) for m, n in [(4, 5), (3, 4), (2, 3), (1, 2), (0, 1)]]
    assert report["ngram_line_es"] == pytest.approx(np.mean(es))
    assert alone["ngram_line_em"] is None and alone["ngram_line_es"] is None
    for key in ("bpc", "top1", "top5", "line_em", "line_es", "keystrokes_saved"):  # the model's own
        assert report[key] == alone[key], key


def naive(model, vocab, text):
    """Bits per character, one model.step at a time from the start state (completer.model.start)."""
    ids = vocab.encode(text)
    state, bits = start_state(model, vocab), []
    logits = evaluate._head(model, state)
    for t, i in enumerate(ids):
        z = logits[0].astype(np.float64)
        bits.append((np.log(np.exp(z - z.max()).sum()) + z.max() - z[i]) / np.log(2))
        logits, state = model.step(np.array([i]), state)
    return np.array(bits)


@pytest.fixture
def tiny(tiny_checkpoint):
    model, vocab, _ = checkpoint.load(tiny_checkpoint)
    return model, vocab


@pytest.mark.parametrize("batch", [1, 2, 16])
def test_batched_segments_match_a_step_by_step_reading(tiny, batch):
    model, vocab = tiny
    docs = [Doc("a.py", CODE * 3), Doc("b.py", "print('hi')\n")]
    # segments of 40 characters, each read after the whole file before it, `batch` side by side: exact
    got = evaluate.read_static(model, vocab, docs, segment=40, warmup=10_000, window=16, batch=batch)
    for d, doc in enumerate(docs):
        np.testing.assert_allclose(got.bits[d], naive(model, vocab, doc.text), rtol=1e-4, atol=1e-5)
    # a short warmup changes the context, not the bookkeeping: same shapes, close figures
    short = evaluate.read_static(model, vocab, docs, segment=40, warmup=8, window=16, batch=batch)
    assert abs(np.concatenate(short.bits).mean() - np.concatenate(got.bits).mean()) < 0.05


def test_the_memory_pass_does_not_depend_on_the_batch(tiny):
    """Segments read a few at a time (bounded memory) give the memory the same log-probabilities,
    in the same order, as all at once."""
    from completer.memory import Memory

    model, vocab = tiny
    docs = [Doc("a.py", CODE * 3), Doc("b.py", CODE.replace("f(", "h(") * 2)]
    runs = [evaluate.read_static(model, vocab, docs, segment=50, warmup=100, memory=lambda d, m=Memory(vocab): m,
                                 batch=b) for b in (1, 3, 100)]
    for other in runs[1:]:
        for d in range(2):
            np.testing.assert_allclose(other.bits[d], runs[0].bits[d], rtol=1e-5, atol=1e-6)
            assert (other.suggest[d] == runs[0].suggest[d]).all()
    assert np.concatenate(runs[0].bits).mean() < np.concatenate(evaluate.read_static(model, vocab, docs).bits).mean()


@pytest.mark.parametrize("memory", [False, True])
def test_eval_completions_are_the_engines(tiny_checkpoint, memory):
    """One decoding path: at every cut point, eval's suggestion is what an Engine (from the same
    checkpoint) answers there, the file typed up to the cut; with the memory, the engine's memory
    reads the files in order as they are typed."""
    from completer.engine import Engine, Request
    from completer.memory import Memory

    model, vocab, meta = checkpoint.load(tiny_checkpoint)
    docs = [Doc("a.py", CODE * 6), Doc("b.py", CODE.replace("f(", "h(") * 3)]
    cuts = evaluate.cut_points(docs, 150)
    pairs = []
    report = evaluate.evaluate(model, vocab, docs, memory=(lambda: Memory(vocab)) if memory else None,
                               meta=meta, collect=pairs, n_cuts=150)
    engine = Engine.from_checkpoint(tiny_checkpoint, memory=memory)
    mine = []
    for d, doc in enumerate(docs):
        engine.open(f"file:///{d}.py", "")
        for dd, p in cuts:
            if dd == d:
                engine.change(f"file:///{d}.py", doc.text[:p])
                got = engine.complete(f"file:///{d}.py", p, Request(mode="line", max_chars=80))
                mine.append(got[0].text if got else "")
        if memory:
            engine.change(f"file:///{d}.py", doc.text)
            engine.prepare(f"file:///{d}.py", len(doc.text))
            engine.idle()
    em, es, _ = evaluate.line_scores(docs, cuts, mine)
    assert report["line_em"] == em and report["line_es"] == pytest.approx(es)
    # the suggestions themselves: what --save-gate fits on, one per non-empty suggestion
    # (the last configuration's come last)
    exact = [evaluate.line_match(m, evaluate.rest_of_line(docs[d].text, p))[0] for m, (d, p) in zip(mine, cuts) if m]
    assert [bool(e) for _, e in pairs[-len(exact):]] == exact and len(pairs) >= len(exact)


def test_adaptation_with_a_vanishing_rate_is_the_static_reading(tiny):
    """Files shorter than the engine's block: the sequential reading's states are the engine's,
    so its completions (the engine's decoding from the stream's state) are the engine's own."""
    from completer.engine import Engine
    from completer.evaluation.lines import Lines

    model, vocab = tiny
    docs = [Doc("a.py", CODE * 2), Doc("b.py", CODE)]
    cuts = evaluate.cut_points(docs, n=30)
    static = evaluate.read_static(model, vocab, docs, warmup=10_000)
    lines = Lines(Engine(model, vocab))
    complete = lambda net, state, d, p, mem: lines.at(net, state, docs[d].text, p, mem)
    adapted = evaluate.read_sequential(model, vocab, docs, cuts, complete, adapter=Adapter(model, lr=1e-30), window=32)
    for d in range(2):
        np.testing.assert_allclose(adapted.bits[d], static.bits[d], rtol=1e-4, atol=1e-5)
    assert adapted.completions == [c.text if c else "" for c in Lines(Engine(model, vocab)).typed(docs, cuts)]


def test_the_windowed_update_is_one_sgd_step_on_the_whole_window(tiny, tmp_path):
    model, vocab = tiny
    text = CODE[:60]
    cuts = [(0, 11), (0, 30), (0, 31)]                     # split the window into pieces
    reference = checkpoint.load(checkpoint.save(tmp_path / "copy.safetensors", model, vocab))[0]
    adapter = Adapter(model, lr=0.7)
    evaluate.read_sequential(model, vocab, [Doc("a.py", text)], cuts, lambda *a: None, adapter=adapter, window=128)
    ids = vocab.encode(text)
    Adapter(reference, lr=0.7).learn(ids[:-1, None], ids[1:, None], start_state(reference, vocab))
    for k in model.params:
        np.testing.assert_allclose(model.params[k], reference.params[k], rtol=1e-4, atol=1e-6)
    adapter.reset()


def test_adaptation_learns_the_file(tiny, tiny_checkpoint):
    model, vocab = tiny
    docs = [Doc("a.py", "self.value = value\n" * 40)]
    report = evaluate.evaluate(model, vocab, docs, adapt=Adapter(model, lr=2.0, clip=5.0))
    assert report["bpc"] < report["static"]["bpc"] - 1.0
    assert report["top1"] > report["static"]["top1"] + 10
    fresh, _, _ = checkpoint.load(tiny_checkpoint)         # the weights were reset afterwards
    assert all(np.array_equal(model.params[k], fresh.params[k]) for k in model.params)


# ---- the command ------------------------------------------------------------------------------------
def write_repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text(CODE * 4)
    (repo / "pkg" / "b.py").write_text(CODE.replace("f(", "h(") * 3)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_a.py").write_text("from pkg.a import f\n\n\ndef test_f():\n    assert f(1) == 2\n")
    return repo


def test_eval_json_report(tmp_path, tiny_checkpoint, capsys):
    repo = write_repo(tmp_path)
    code = cli.main(["eval", str(repo / "pkg" / "a.py"), str(repo / "tests"), "--model", str(tiny_checkpoint),
                     "--train-corpus", str(repo), "--ngram-order", "12", "--json", "--cuts", "100"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("bpc", "top1", "top5", "line_em", "line_es", "keystrokes_saved", "lzma_bpc", "bz2_bpc",
                "ngram_bpc", "ngram_line_em", "ngram_line_es", "chars", "seconds"):
        assert isinstance(report[key], (int, float)), key
    assert report["chars"] == len(CODE * 4) + len((repo / "tests" / "test_a.py").read_text())
    assert report["train_chars"] == len(CODE.replace("f(", "h(") * 3)   # b.py only: the rest is evaluated
    assert 0 <= report["line_em"] <= 100 and 0 <= report["keystrokes_saved"] <= 1
    assert report["ngram_bpc"] < 6 and report["ngram_order"] == 12
    # b.py is a.py with f( renamed: the 12-gram completes most of a.py's lines exactly
    assert 30 < report["ngram_line_em"] <= 100 and report["ngram_line_es"] > report["ngram_line_em"] * 0.5


def test_eval_table_with_adaptation(tmp_path, tiny_checkpoint, capsys):
    repo = write_repo(tmp_path)
    assert cli.main(["eval", str(repo / "pkg" / "a.py"), "--model", str(tiny_checkpoint), "--adapt", "--cuts", "100"]) == 0
    out = capsys.readouterr().out
    assert "adapted" in out and "bits per character" in out and "no --train-corpus" in out
    assert "8-gram line EM (%)" in out


def test_eval_table_with_an_ngram_order(tmp_path, tiny_checkpoint, capsys):
    repo = write_repo(tmp_path)
    assert cli.main(["eval", str(repo / "pkg" / "a.py"), "--model", str(tiny_checkpoint),
                     "--train-corpus", str(repo), "--ngram-order", "16", "--cuts", "100"]) == 0
    rows = {line[:24].strip(): line[24:].strip() for line in capsys.readouterr().out.splitlines()}
    assert float(rows["16-gram Kneser-Ney bpc"]) < 6
    assert 0 <= float(rows["16-gram line EM (%)"]) <= 100 and 0 <= float(rows["16-gram line ES"]) <= 100


@pytest.mark.parametrize("case", ["no-python", "empty-file", "bad-checkpoint", "missing", "ngram-order"])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, tiny_checkpoint, capsys):
    repo = write_repo(tmp_path)
    model = str(tiny_checkpoint)
    if case == "no-python":
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "notes.txt").write_text("hello\n")
        args = [str(tmp_path / "docs")]
    elif case == "empty-file":
        args = [str(repo / "pkg" / "__init__.py")]
    elif case == "bad-checkpoint":
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
        args, model = [str(repo / "pkg")], str(bad)
    elif case == "ngram-order":
        args = [str(repo / "pkg"), "--train-corpus", str(repo), "--ngram-order", "33"]
    else:
        args = [str(tmp_path / "nowhere.py")]
    assert cli.main(["eval", *args, "--model", model]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("completer eval: error:")


def test_eval_project_memory_runs_and_zpaq_reference(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    """--project: the memory reads the rest of the project first; every configuration is reported;
    zpaq -method 5 is a reference where the program is installed (.ci/run installs it), else a note."""
    import shutil

    repo = write_repo(tmp_path)
    target = [str(repo / "pkg" / "a.py")]
    assert cli.main(["eval", *target, "--model", str(tiny_checkpoint), "--project", str(repo), "--json", "--cuts", "200"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    runs = report["runs"]
    assert list(runs) == ["network", "memory"] and report["memory"] is True
    assert report["project_chars"] == report["train_chars"] > 0           # b.py and the test, not a.py
    # b.py is a.py renamed: the memory that read it predicts a.py far better than the untrained network
    assert runs["memory"]["bpc"] < 0.5 * runs["network"]["bpc"] and report["bpc"] == runs["memory"]["bpc"]
    assert runs["memory"]["line_em"] > runs["network"]["line_em"] + 20
    assert shutil.which("zpaq"), "zpaq is not installed (.ci/run installs it: apt-get install zpaq)"
    assert 0 < report["zpaq_bpc"] < report["lzma_bpc"] + 1
    assert cli.main(["eval", *target, "--model", str(tiny_checkpoint), "--no-memory", "--json", "--cuts", "200"]) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(plain["runs"]) == ["network"] and plain["bpc"] == runs["network"]["bpc"]
    monkeypatch.setenv("PATH", "/nonexistent")                             # no zpaq program
    assert cli.main(["eval", *target, "--model", str(tiny_checkpoint), "--project", str(repo), "--cuts", "200"]) == 0
    captured = capsys.readouterr()
    assert "zpaq -method 5 reference skipped" in captured.err and "- (no zpaq)" in captured.out


def test_the_reading_holds_a_bounded_batch_whatever_the_number_of_files(tiny):
    """Memory of the scoring pass with the memory: one batch of segments at a time, plus a few
    bytes per character of figures, never the (characters, V) log-probabilities of every file
    (524 bytes a character at V = 131; the old pass held them all: 1.5 GB for a 76-file package)."""
    import tracemalloc

    from completer.memory import Memory

    model, vocab = tiny
    text = CODE * 12                                                 # ~1,900 characters a file

    def peak(n, batch=4):
        docs = [Doc(f"{i}.py", text) for i in range(n)]
        mem = Memory(vocab)
        tracemalloc.start()
        evaluate.read_static(model, vocab, docs, segment=500, warmup=100, memory=lambda d: mem, batch=batch)
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    few, many = peak(2), peak(12)
    per_char = (many - few) / (10 * len(text))
    assert per_char < 16, f"{per_char:.0f} bytes per extra character"
    assert (peak(12, batch=1000) - few) / (10 * len(text)) > 100    # all at once: what it would cost


def test_cold_eval_holds_one_memory_at_a_time(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    """--cold makes a memory per file; each one's tables (tens of MB of mappings, invisible to
    tracemalloc) must go before the next file's come: holding them all took a 35-file cold eval to
    3.1 GB of RSS."""
    import weakref

    import completer.memory as memory_pkg

    live, most, made = weakref.WeakSet(), [0], [0]

    class Counted(memory_pkg.Memory):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            live.add(self)
            made[0] += 1
            most[0] = max(most[0], len(live))

    monkeypatch.setattr(memory_pkg, "Memory", Counted)
    repo = write_repo(tmp_path)
    files = []
    for i in range(8):
        files.append(repo / "pkg" / f"m{i}.py")
        files[-1].write_text(CODE.replace("f(", f"f{i}(") * 2)
    assert cli.main(["eval", *map(str, files), "--model", str(tiny_checkpoint), "--cold", "--cuts", "40"]) == 0
    capsys.readouterr()
    assert made[0] >= 8                                       # a fresh memory for each file
    assert most[0] <= 2, f"{most[0]} memories alive at once"
