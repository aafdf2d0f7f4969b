"""The training run: corpus -> vocabulary -> model -> truncated-BPTT loop -> checkpoints in a run directory.

Its parts: options.py (defaults, budget, --resume's rules), rundir.py (the run directory's files
and the resume state), report.py (description, progress line, summary), signals.py (stopping).

`Run(repo, out, options).train()` does everything and returns a summary dict. Every step is a
pure function of (parameters, optimizer slots, hidden state, stream position, dropout RNG), and
all five are in the state file, so `--resume` continues bit for bit. SIGINT/SIGTERM finish the
current window, save, and report through `summary["signal"]`.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from completer.model import checkpoint
from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig
from completer.model.vocab import Vocab
from completer_trainers import corpus as corpus_mod
from completer_trainers import optim
from completer_trainers.batching import Streams
from completer_trainers.validation import Abandoned, evaluate_bpc
from completer_trainers import options as options_mod
from completer_trainers.options import BUDGET_KEYS, DEFAULT_EPOCHS, DEFAULTS  # noqa: F401  (re-exported)
from completer_trainers.report import Report
from completer_trainers.rundir import (METRICS, PLOT, RUN_FILES, STATE, STATE_FORMAT, STATE_KEY,  # noqa: F401
                                       RunFiles, read_state_meta)
from completer_trainers.signals import STOP_SIGNALS, StopSignal  # noqa: F401

LN2 = math.log(2)


class Run(RunFiles, Report):
    """One training run (the run directory's files: RunFiles; what it prints: Report)."""

    def __init__(self, repo, out, options: dict, resume: bool = False, init=None, force: bool = False,
                 verbose: bool = False, log=None):
        # repo: one folder, or [(folder, weight)] (several repositories, `--corpus FILE`)
        self.sources = [(Path(d).expanduser(), int(w)) for d, w in repo] if isinstance(repo, list) else \
            [(Path(repo).expanduser(), 1)]
        self.repo = self.sources[0][0] if len(self.sources) == 1 else Path(os.path.commonpath(
            [str(d.resolve()) for d, _ in self.sources]))
        self.out = Path(out).expanduser()
        self.given = dict(options)
        self.resume, self.init, self.force, self.verbose = resume, init, force, verbose
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.prepare()

    # ---- setup: everything that can fail on bad input happens before the run directory is touched ----
    def prepare(self) -> None:
        out, state_path = self.out, self.out / STATE
        if out.exists() and not out.is_dir():
            raise CompleterError(f"--out {out}: exists and is not a directory")
        saved = None
        if self.resume:
            if self.init is not None:
                raise CompleterError("--resume and --init are contradictory: a resumed run keeps its own weights")
            if self.force:
                raise CompleterError("--resume and --force are contradictory")
            if not state_path.is_file():
                if out.is_dir() and any(out.iterdir()):
                    raise CompleterError(f"--resume: nothing to resume, {out} holds no {STATE} (the run stopped "
                                         f"before its first save); start it over with --force instead of --resume")
                raise CompleterError(f"--resume: nothing to resume in {out} (no {STATE}); start a new run "
                                     f"without --resume")
            saved = read_state_meta(state_path)
        elif out.is_dir() and any(out.iterdir()) and not self.force:
            if state_path.is_file():
                raise CompleterError(f"--out {out}: holds a run; use --resume to continue it or --force to "
                                     f"start over")
            raise CompleterError(f"--out {out}: directory is not empty and holds no {STATE} (nothing to resume; "
                                 f"a run there stopped before its first save?); start over in it with --force")
        self.opts = o = options_mod.resolve(self.given, saved["options"] if saved else None)

        # corpus and split
        for d, _ in self.sources:
            if not d.is_dir():
                raise CompleterError(f"{d}: no such directory")
        c, weights = corpus_mod.discover_many(self.sources, o["include"], o["max_file_bytes"])
        if not c.files:
            raise CompleterError(f"{self.repo}: no usable source files (skipped {c.skip_summary()})")
        self.train_files, self.val_files, self.held_files = corpus_mod.split(
            c.files, o["val_fraction"], o["seed"], o["heldout"], o["val_files"], o["val_chars"])
        self.weights = {f.path: weights[f.path] for f in self.train_files if f.path in weights}
        self.digest = corpus_mod.digest(self.train_files, self.val_files, self.weights)
        if saved and saved["digest"] != self.digest:
            raise CompleterError(f"--resume: the corpus under {self.repo} changed since the run started "
                                 f"(digest differs); start a new run (--force) or fine-tune with --init")
        self.corpus = c

        # vocabulary and model
        self.unknown = None  # (characters, occurrences) of the training text mapped to the unknown symbol
        if saved:
            self.vocab = Vocab(saved["vocab"])
            config = ModelConfig(**saved["model"])
            self.model = CharModel(config, params={})
        elif self.init is not None:
            self.model, self.vocab = self._init_from(self.init, self._char_counts())
        else:
            self.vocab, *self.unknown = corpus_mod.capped_vocab(self._char_counts(), o["vocab_size"], o["min_count"])
            config = ModelConfig(o["cell"], len(self.vocab), o["embed"], o["hidden"], o["layers"], o["dropout"],
                                 o["weight_drop"])
            self.model = CharModel(config, seed=o["seed"])  # CompleterError for an unknown cell or bad size
        docs = []
        for f in self.train_files:  # a file of weight W is W documents (shuffled apart every epoch)
            ids = self.vocab.encode(f.text)
            docs.extend([ids] * self.weights.get(f.path, 1))
        self.streams = Streams(docs, o["batch"], o["seq"], o["seed"])
        # a big repo's 10% would make every validation cost more than the training between them
        self.val_ids = self.vocab.encode("".join(f.text for f in self.val_files))[: o["val_chars"]]
        if self.val_files and len(self.val_ids) < 2:
            raise CompleterError("the validation files hold fewer than 2 characters; raise --val-fraction")
        self.total_steps = (o["steps"] if o["steps"] is not None else
                            math.ceil(o["epochs"] * self.streams.windows_per_epoch) if o["epochs"] is not None else None)
        self.optimizer = None if saved else self._optimizer(self.model.params)
        self.rng = np.random.default_rng(o["seed"])
        self.hidden = self.model.zero_state(o["batch"]) if not saved else None
        self.step, self.seconds, self.train_seconds = 0, 0.0, 0.0
        self.best_val, self.best_step, self.bad_vals, self.last_val, self.validated_step = None, None, 0, None, -1
        self.recent = []  # the last log_every training losses (nats), for the reported train bpc
        self.saved_step = None  # the step of the resume state on disk
        if saved:
            self._load_state(state_path, saved)

    @property
    def warmup(self) -> int:
        """--warmup, else derived from the budget as it is now (so a resume with a larger budget
        warms up as a run started with that budget would)."""
        if self.opts["warmup"] is not None:
            return self.opts["warmup"]
        return min(100, self.total_steps // 10) if self.total_steps else 100

    def _char_counts(self) -> dict:
        counts = {}
        for f in self.train_files:
            w = self.weights.get(f.path, 1)
            for ch, n in corpus_mod.char_counts(f.text).items():
                counts[ch] = counts.get(ch, 0) + n * w
        return counts

    def _init_from(self, path, counts):
        """Fine-tuning: the checkpoint's weights, its vocabulary extended with the new repo's characters
        up to --vocab-size (their embedding rows and output columns initialised fresh)."""
        o = self.opts
        old, old_vocab, meta = checkpoint.load(path)
        for k in ("cell", "hidden", "layers", "embed"):
            if self.given.get(k) is not None and self.given[k] != getattr(old.config, k):
                raise CompleterError(f"--{k} {self.given[k]} contradicts --init {path} ({k} {getattr(old.config, k)})")
            o[k] = getattr(old.config, k)
        vocab, *self.unknown = corpus_mod.capped_vocab(counts, o["vocab_size"], o["min_count"], base=old_vocab)
        config = ModelConfig(old.config.cell, len(vocab), old.config.embed, old.config.hidden,
                             old.config.layers, o["dropout"], o["weight_drop"])
        model = CharModel(config, seed=o["seed"])
        p, q = model.params, old.params
        new_rows = np.array([vocab.id(ch) for ch in old_vocab.chars] + [vocab.unk])   # old id -> new id
        p["embed"][new_rows] = q["embed"]
        p["head.W"][:, new_rows] = q["head.W"]
        p["head.b"][new_rows] = q["head.b"]
        for k in p:
            if k not in ("embed", "head.W", "head.b"):
                p[k][...] = q[k]
        self.log(f"init: from {meta['path']}; vocabulary {len(old_vocab)} -> {len(vocab)} symbols")
        return model, vocab

    def _optimizer(self, params):
        o = self.opts
        return optim.make(o["optimizer"], params, o["weight_decay"], o["ema"])

    # ---- resume state -------------------------------------------------------------------
    # ---- the run ------------------------------------------------------------------------
    def _train_meta(self) -> dict:
        o = self.opts
        return {"options": o, "repo": str(self.repo.resolve()), "step": self.step,
                "epoch": round(self.epoch, 4), "chars": self.step * self.streams.chars_per_window,
                "corpus": {"digest": self.digest, "train_files": len(self.train_files),
                           "train_chars": self.streams.N, "val_files": [f.path for f in self.val_files],
                           "heldout": [f.path for f in self.held_files]}}

    def _metrics(self) -> dict:
        return {"step": self.step, "train_bpc": self.train_bpc, "val_bpc": self.last_val,
                "best_val_bpc": self.best_val, "best_step": self.best_step}

    @property
    def epoch(self) -> float:
        return self.step / self.streams.windows_per_epoch

    @property
    def train_bpc(self):
        return float(np.mean(self.recent)) / LN2 if self.recent else None

    def served(self) -> CharModel:
        """The weights that validation measures and checkpoints hold: the average under --ema."""
        avg = self.optimizer.averaged
        return self.model if avg is None else CharModel(self.model.config, params=avg)

    def validate(self, should_stop) -> float | None:
        """Validation bits per character, None without validation files."""
        if not self.val_files:
            return None
        return evaluate_bpc(self.served(), self.val_ids, batch=16, seq=256, should_stop=should_stop)

    def train(self) -> dict:
        self._start()
        try:
            try:
                with StopSignal() as local:
                    stop = self._stop_for(local)
                    reason = self._loop(stop)
                    summary = self._finish(reason)
            finally:
                self._metrics_file.close()
        except OSError as exc:  # e.g. ENOSPC from a save: atomic writes left every file whole
            raise self._write_error(exc) from None
        summary["signal"] = stop.signum
        return summary

    def _stop_for(self, local: StopSignal):
        """What the loop asks whether to stop: this process's signals (a data-parallel run: the ranks'
        agreed decision)."""
        return local

    def _start(self) -> None:
        """Run directory, the corpus and model description, metrics file."""
        log = self.log
        self._prepare_out()
        log(self.describe())
        if self.verbose:
            for what, d in (("file", self.corpus.skipped), ("directory", self.corpus.skipped_dirs)):
                for reason, paths in sorted(d.items()):
                    for p in paths:
                        log(f"  skipped {what} {corpus_mod.display(p)}: {reason}")
            for f in self.val_files:
                log(f"  validation file {corpus_mod.display(f.path)}")
        if self.resume:
            log(f"resume: {self.out} at step {self.step} (epoch {self.epoch:.2f})")
        try:
            self._metrics_file = self._open_metrics()
        except OSError as exc:
            raise self._write_error(exc) from None

    def _done(self) -> str | None:
        o = self.opts
        if self.total_steps is not None and self.step >= self.total_steps:
            return "epochs" if o["epochs"] is not None else "steps"
        if o["minutes"] is not None and self.seconds >= o["minutes"] * 60:
            return "minutes"
        return None

    def _validate_and_save(self, stop) -> str | None:
        """Validation, checkpoints, early stopping; 'early-stop' or None."""
        t0 = time.perf_counter()
        try:
            bpc = self.validate(stop)
        except Abandoned:
            return None
        self.validated_step, self.last_val = self.step, bpc
        if bpc is None:  # no validation files: the latest weights are the best known
            self.save(best=True)
            return None
        improved = self.best_val is None or bpc < self.best_val
        if improved:
            self.best_val, self.best_step, self.bad_vals = bpc, self.step, 0
        else:
            self.bad_vals += 1
        self._write_metrics({"kind": "val", "step": self.step, "epoch": round(self.epoch, 4),
                             "chars": self.step * self.streams.chars_per_window, "val_bpc": bpc,
                             "best_val_bpc": self.best_val, "seconds": round(self.seconds, 3),
                             "val_seconds": round(time.perf_counter() - t0, 3)})
        self.save(best=improved)
        if o_patience := self.opts["patience"]:
            if self.bad_vals >= o_patience:
                return "early-stop"
        return None

    def _train_step(self, x, y, drop_rng, stop):
        """One optimizer step on a window: (mean loss in nats, gradient norm before clipping, lr)."""
        o = self.opts
        loss, grads, self.hidden = self.model.loss_and_grads(x, y, self.hidden, drop_rng)
        norm = optim.clip_global_norm(grads, o["clip"])
        lr = optim.learning_rate(self.step, o["lr"], self.warmup, self.total_steps)
        self.optimizer.step(self.model.params, grads, lr)
        return loss, norm, lr

    def _loop(self, stop) -> str:
        o, model, streams = self.opts, self.model, self.streams
        # dropout and weight drop draw from the same generator; either one needs it
        drop_rng = self.rng if model.config.dropout > 0 or model.config.weight_drop > 0 else None
        session_start = last_print = time.perf_counter()
        seconds0, session_steps, session_train_s = self.seconds, 0, 0.0
        cpw = streams.chars_per_window
        if self.validated_step < self.step and self.step % o["val_every"] == 0 and self.step:
            # the state was saved right after a step whose validation a signal abandoned
            if self._validate_and_save(stop) == "early-stop":
                return "early-stop"
        while True:
            reason = self._done()
            if reason:
                return reason
            if stop():
                return "interrupted"
            x, y, reset = streams.next()                              # (T, B) each
            if reset:
                self.hidden = model.zero_state(x.shape[1])
            t0 = time.perf_counter()
            loss, norm, lr = self._train_step(x, y, drop_rng, stop)
            dt = time.perf_counter() - t0
            self.step += 1
            session_steps += 1
            session_train_s += dt
            self.train_seconds += dt
            self.seconds = seconds0 + time.perf_counter() - session_start
            if not math.isfinite(loss):
                raise self._diverged(loss)
            self.recent = (self.recent + [loss])[-o["log_every"]:]
            if self.step % o["log_every"] == 0:
                self._write_metrics({"kind": "train", "step": self.step, "epoch": round(self.epoch, 4),
                                     "chars": self.step * cpw, "train_bpc": self.train_bpc, "lr": lr,
                                     "grad_norm": norm, "seconds": round(self.seconds, 3),
                                     "chars_per_s": round(session_steps * cpw / session_train_s, 1)})
            validating = self.step % o["val_every"] == 0 or self._done()
            now = time.perf_counter()
            if validating or now - last_print >= 2.0 or session_steps == 1:
                if validating:
                    if self._validate_and_save(stop) == "early-stop":
                        self.log(self._progress(session_steps, session_train_s, session_start))
                        return "early-stop"
                self.log(self._progress(session_steps, session_train_s, session_start))
                last_print = time.perf_counter()
            self.seconds = seconds0 + time.perf_counter() - session_start

    def _diverged(self, loss) -> CompleterError:
        return CompleterError(f"training diverged at step {self.step} (loss {loss}); start again with a "
                              f"lower --lr (--force), or fine-tune {self.out / 'best.safetensors'} "
                              f"with --init and a lower --lr")

    def _finish(self, reason: str) -> dict:
        if reason == "interrupted":
            self.save(best=False)  # no validation: the user asked to stop now
        elif self.validated_step != self.step:
            self._validate_and_save(lambda: False)
        return self._summary(reason)
