"""Measure a model on Python files it did not train on: the logic behind `completer eval`.

    docs = read_files(["src/pkg/a.py", "tests/"])
    report = evaluate(model, vocab, docs, train=train_texts(...), adapt=None)

Measures (the protocol of shared/bench/ANCHORS.md, so the figures compare):
- bpc, top1, top5: every character of every file is predicted from the file before it, read from
  the zero state as the engine reads a file. Files are cut into segments of SEGMENT
  characters read side by side as one batch, each after the WARMUP characters before it (read,
  not scored): window forwards of the whole batch, no Python loop per character.
- line completion: CUTS cut points drawn with seed 0 uniformly over the characters of all files,
  skipping cuts whose rest of line is blank; the engine's own greedy line suggestion there
  (completer.evaluation.lines: Engine.complete on the file typed up to the cut, the engine's
  context, memory, stop rules and post-processing, at most MAX_CHARS characters); Exact Match =
  suggestion == truth after stripping trailing whitespace (no suggestion: not exact);
  Edit Similarity = difflib ratio x 100.
- the gate's figures (lines.shown_figures) per configuration: coverage, precision, characters
  accepted per shown suggestion, loops; ungated, and at the gate's threshold when there is a gate.
- keystrokes saved: whole lines sampled with seed 0 (blank ones skipped) until KEYSTROKE_CHARS
  characters, typed one keystroke at a time; wherever the greedy line suggestion matches the rest
  of the line for 2 or more characters, the matching prefix is accepted for one keystroke;
  saved = 1 - keystrokes / characters. A greedy suggestion from the true context matches exactly
  as far as the model's guesses are right one after another, so the replay reads the guesses
  of the pass above instead of decoding. Suggestions, like the engine's, never contain UNK.
- references: lzma (xz -9e) and bz2 (-9) bits per character given the training corpus as
  context, 8 x (len(compress(train + files)) - len(compress(train))) / characters, and a
  Kneser-Ney character n-gram (completer.evaluation.ngram, order NGRAM_ORDER unless asked) trained on the
  same corpus: its bits per character, and its greedy line completion at the same cut points
  (context = the file before the cut), scored as the model's.
- cold start (cold=N): each file's first N characters, a fresh memory per file (a new project).
- with adaptation (completer.engine.adaptation): files are read one after another by one stream; each window
  of ADAPT_WINDOW characters is scored, cut points in it are completed (the engine's decoding from
  the stream's state), then the weights take an SGD step on it. The weights carry over from file
  to file, the recurrent state does not.

Modules: protocol (files, samples, scores), passes (reading with the model, bounded memory),
lines (completions through the engine, the gate's figures), this one (the report).
"""
from __future__ import annotations

import math
import shutil
import time

import numpy as np

from completer.errors import CompleterError
from completer.evaluation import lines as line_figures
from completer.evaluation.lines import Lines
from completer.evaluation.passes import (ADAPT_WINDOW, SEGMENT, WARMUP, WINDOW, Pass, _head, _log_softmax,  # noqa: F401
                                         _window_stats, read_sequential, read_static)
from completer.evaluation.protocol import (CUTS, KEYSTROKE_CHARS, MAX_CHARS, SEED, TRUTH_CHARS,  # noqa: F401
                                           Doc, cold_docs, compressed_bpc, cut_points, keystroke_lines,
                                           keystrokes, line_match, line_scores, read_files, rest_of_line,
                                           train_texts)

NGRAM_ORDER = 8


def summarize(docs, cuts, lines, p: Pass, gate=None) -> dict:
    chars = sum(len(d.text) for d in docs)
    n = max(chars, 1)
    r = {"bpc": sum(float(b.sum(dtype=np.float64)) for b in p.bits) / n,
         "top1": 100.0 * sum(int(h.sum()) for h in p.hit1) / n,
         "top5": 100.0 * sum(int(h.sum()) for h in p.hit5) / n, "chars": chars}
    if cuts:
        em, es, ci = line_scores(docs, cuts, p.completions)
        r.update(line_em=em, line_es=es, line_em_ci95=ci, cuts=len(cuts))
        r["shown"] = line_figures.shown_figures(docs, cuts, p.suggestions)       # ungated
        if gate is not None:
            r["gated"] = line_figures.shown_figures(docs, cuts, p.suggestions, gate.threshold)
            r["curve"] = line_figures.curve(docs, cuts, p.suggestions)
    else:
        r.update(line_em=None, line_es=None, line_em_ci95=None, cuts=0, shown=None)
    typed = sum(e - s for _, s, e in lines)
    keys = sum(keystrokes(p.suggest[d][s:e]) for d, s, e in lines)
    r.update(keystrokes_saved=1.0 - keys / typed if typed else None, keystroke_chars=typed)
    return r


MEASURES = ("bpc", "top1", "top5", "line_em", "line_es", "keystrokes_saved", "shown", "gated")


def evaluate(model, vocab, docs, train=None, adapt=None, ngram_order=NGRAM_ORDER, log=None,
             memory=None, project=None, cold=None, meta=None, gate=None, collect=None, n_cuts=CUTS) -> dict:
    """The full report. train: training texts for the references (None: references are None);
    adapt: an Adapter (completer.engine.adaptation) to measure with dynamic evaluation as well;
    memory: a function returning a new, empty completer.memory.Memory, to measure the network
    mixed with it as well (None: the network alone); project: texts the memory reads first (the
    editor scenario: the rest of the project), else it starts empty and reads the files as typed;
    cold: N to measure the cold start instead (each file's first N characters, a fresh memory per
    file); meta: the checkpoint's (its path); gate: a completer.engine.gate.Gate giving each
    suggestion its confidence (None: no gated figures); collect: a list to which (gate features,
    exact) pairs of every configuration's suggestions are appended (fitting the gate); n_cuts: how
    many cut points (the protocol's CUTS).

    The top-level measures are the last configuration measured (memory, adapted, if asked);
    `runs` holds every configuration: network, adapted, memory, memory+adapted."""
    from completer.engine import Engine

    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    if cold is not None:
        if project:
            raise CompleterError("--cold measures a new project: it cannot read a --project first")
        docs = cold_docs(docs, cold)
    if not docs or not any(d.text for d in docs):
        raise CompleterError("nothing to evaluate: no non-empty files")
    cuts = cut_points(docs, n_cuts)
    lines = keystroke_lines(docs)
    runs = {}
    engine = Engine(model, vocab, meta)
    engine.gate = gate
    typing = Lines(engine)

    def run(name, read, complete):
        t = time.perf_counter()
        p = read()
        if complete is not None:
            p.suggestions = complete()
        runs[name] = summarize(docs, cuts, lines, p, gate)
        if collect is not None:
            truth = line_figures.truths(docs, cuts)
            collect.extend([(s.features, line_match(s.text, t)[0]) for s, t in zip(p.suggestions, truth)
                            if s is not None and s.text])
        del p
        log(f"{name}: {runs[name]['chars']:,} characters, {len(cuts)} cut points in {time.perf_counter() - t:.1f}s")

    def fresh_memory():
        mem = memory()
        t = time.perf_counter()
        for text in project or ():
            mem.learn_text(text)
        if project:
            log(f"memory read {mem.chars:,} characters of the project in {time.perf_counter() - t:.1f}s")
        return mem

    def memory_for():
        """One memory for every file, or (cold) a new one per file: a function of the file's index."""
        if cold is None:
            mem = fresh_memory()
            return lambda d: mem
        current = {}

        def per_file(d):
            if d not in current:
                current.clear()          # the previous file's tables go before the next's come
                current[d] = memory()
            return current[d]
        return per_file

    def engine_lines(with_memory: bool):
        """The engine's suggestions; its memory (another one, as fresh as the scoring pass's) is
        made once that pass has let its own go, so one memory's tables are held at a time."""
        def complete():
            engine.memory = None
            out = typing.typed(docs, cuts, memory_for() if with_memory else None, log=log)
            engine.memory = None
            return out
        return complete

    def sequential(net, state, d, p, mem):   # read_sequential's completions: the engine's decoding
        return typing.at(net, state, docs[d].text, p, mem)

    run("network", lambda: read_static(model, vocab, docs), engine_lines(False))
    if adapt is not None:
        run("adapted", lambda: read_sequential(model, vocab, docs, cuts, sequential, adapter=adapt), None)
        adapt.reset()
    if memory is not None:
        run("memory", lambda: read_static(model, vocab, docs, memory=memory_for()), engine_lines(True))
        if adapt is not None:
            run("memory+adapted", lambda: read_sequential(model, vocab, docs, cuts, sequential,
                                                          adapter=adapt, memory=fresh_memory()), None)
            adapt.reset()
    report = dict(runs[list(runs)[-1]])
    report["runs"] = {name: {k: r.get(k) for k in MEASURES} for name, r in runs.items()}
    report["curves"] = {name: r["curve"] for name, r in runs.items() if r.get("curve")}
    report.pop("curve", None)
    report["scenario"] = "cold" if cold is not None else "project" if project else "static"
    report["cold_chars"] = cold
    report["gate"] = None if gate is None else {"threshold": gate.threshold, **{k: v for k, v in gate.meta.items()
                                                                                 if k in ("fitted_on", "model")}}
    if adapt is not None:
        report["static"] = report["runs"]["memory" if memory is not None else "network"]
        report["adapt"] = {"lr": adapt.lr, "clip": adapt.clip, "window": ADAPT_WINDOW}
    report.update(memory=memory is not None, project_chars=sum(len(t) for t in project or ()))
    report.update(lzma_bpc=None, bz2_bpc=None, zpaq_bpc=None, ngram_bpc=None, ngram_line_em=None, ngram_line_es=None,
                  ngram_line_em_ci95=None, ngram_order=ngram_order)
    if train:
        from completer.evaluation.ngram import NGram

        t = time.perf_counter()
        train_text, test_text = "".join(train), "".join(d.text for d in docs)
        report["lzma_bpc"] = compressed_bpc(train_text, test_text, "lzma")
        report["bz2_bpc"] = compressed_bpc(train_text, test_text, "bz2")
        if shutil.which("zpaq"):  # context mixing: what the memory is measured against (ANCHORS)
            report["zpaq_bpc"] = compressed_bpc(train_text, test_text, "zpaq")
        else:
            log("zpaq -method 5 reference skipped: no zpaq program (Debian: apt-get install zpaq)")
        lm = NGram.train(train, ngram_order)
        report["ngram_bpc"] = lm.bpc([d.text for d in docs])
        if cuts:
            # the n-gram reads the last order - 1 characters: no copy of each file's whole prefix
            completions = lm.greedy_lines([docs[d].text[max(0, pos - ngram_order):pos] for d, pos in cuts], MAX_CHARS)
            em, es, ci = line_scores(docs, cuts, completions)
            report.update(ngram_line_em=em, ngram_line_es=es, ngram_line_em_ci95=ci)
        report["train_chars"] = len(train_text)
        log(f"references on {len(train_text):,} training characters in {time.perf_counter() - t:.1f}s")
    report["seconds"] = time.perf_counter() - t_start
    return report
