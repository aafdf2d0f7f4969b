"""The training run: corpus -> vocabulary -> model -> truncated-BPTT loop -> checkpoints in a run directory.

    RUN/best.safetensors   servable checkpoint with the lowest validation loss so far (the latest
                           save when there are no validation files)
    RUN/last.safetensors   servable checkpoint of the latest save
                           (both hold the weights' moving average under --ema)
    RUN/state.safetensors  resume state: parameters, optimizer slots, carried hidden state, and
                           JSON metadata (config, step, stream position, RNG state, best so far)
    RUN/metrics.jsonl      one JSON object per line: {"kind": "train"|"val", "step", "chars", ...}
    RUN/loss.png           train/validation bits per character against characters seen

`Run(repo, out, options).train()` does everything and returns a summary dict. Every step is a
pure function of (parameters, optimizer slots, hidden state, stream position, dropout RNG), and
all five are in the state file, so `--resume` continues bit for bit. SIGINT/SIGTERM finish the
current window, save, and report through `summary["signal"]`.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from completer.model import checkpoint
from completer.errors import CompleterError, SignalExit
from completer.model.network import CharModel, ModelConfig
from completer.model.vocab import Vocab
from completer_trainers import corpus as corpus_mod
from completer_trainers import optim
from completer_trainers.batching import Streams
from completer_trainers.validation import Abandoned, evaluate_bpc

STATE, METRICS, PLOT = "state.safetensors", "metrics.jsonl", "loss.png"
STATE_KEY, STATE_FORMAT = "completer_state", 1
RUN_FILES = (checkpoint.BEST, checkpoint.LAST, STATE, METRICS, PLOT)

# Defaults of every option; None in `options` means "not given" (so --resume can tell).
DEFAULTS = dict(cell="lstm", hidden=256, layers=1, embed=64, dropout=0.0, weight_drop=0.0,
                batch=32, seq=128, lr=None, optimizer="adam", clip=5.0, warmup=None, weight_decay=0.0, ema=0.0,
                seed=0, val_fraction=0.1, val_files=[], val_every=100, val_chars=250_000, patience=10,
                log_every=10, include=[], heldout=[], max_file_bytes=corpus_mod.MAX_FILE_BYTES,
                vocab_size=None, min_count=1)
BUDGET_KEYS = ("steps", "epochs", "minutes")
DEFAULT_EPOCHS = 20
LN2 = math.log(2)


def _fmt_count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


def _fmt_duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopSignal:
    """SIGINT/SIGTERM/SIGUSR1 set a flag the loop checks between windows; a second one stops at once
    (SignalExit: the exit code is still 128 + the first signal's number)."""

    def __init__(self):
        self.signum, self._old = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise SignalExit(self.signum)
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def __call__(self) -> bool:
        return self.signum is not None


def read_state_meta(path: Path) -> dict:
    """The JSON metadata of a resume-state file; CompleterError if it is not one."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 1 < n <= min(path.stat().st_size - 8, 100_000_000):
                raise ValueError("header length")
            header = json.loads(f.read(n))
        meta = json.loads(header["__metadata__"][STATE_KEY])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompleterError(f"{path}: not a completer resume state ({type(exc).__name__})") from None
    if meta.get("format") != STATE_FORMAT:
        raise CompleterError(f"{path}: resume state format {meta.get('format')!r}, this completer reads {STATE_FORMAT}")
    return meta


class Run:
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
    def _resolve_options(self, saved: dict | None) -> dict:
        given = self.given
        budget = {k: given.get(k) for k in BUDGET_KEYS if given.get(k) is not None}
        if len(budget) > 1:
            raise CompleterError(f"--{' and --'.join(budget)} are contradictory: give one budget")
        if saved is None:
            opts = {k: (given.get(k) if given.get(k) is not None else v) for k, v in DEFAULTS.items()}
        else:
            for k, v in given.items():
                if k in BUDGET_KEYS or v is None or k not in saved:
                    continue
                if v != saved[k]:
                    raise CompleterError(f"--{k.replace('_', '-')} {v} contradicts the run being resumed "
                                         f"({k} {saved[k]}); drop it, or start a new run with --force")
            opts = {k: saved.get(k, v) for k, v in DEFAULTS.items()}
            if not budget:
                budget = {k: saved[k] for k in BUDGET_KEYS if saved.get(k) is not None}
        if not budget:
            budget = {"epochs": DEFAULT_EPOCHS}
        opts.update({k: budget.get(k) for k in BUDGET_KEYS})
        if opts["lr"] is None:
            opts["lr"] = optim.DEFAULT_LR[opts["optimizer"]]
        for key, low in (("batch", 1), ("seq", 1), ("val_every", 1), ("val_chars", 2), ("log_every", 1)):
            if not isinstance(opts[key], int) or opts[key] < low:
                raise CompleterError(f"--{key.replace('_', '-')} must be a whole number >= {low}, got {opts[key]!r}")
        if not (opts["lr"] > 0 and math.isfinite(opts["lr"])):
            raise CompleterError(f"--lr must be a positive number, got {opts['lr']!r}")
        if opts["optimizer"] not in optim.OPTIMIZERS:
            raise CompleterError(f"unknown optimizer {opts['optimizer']!r}; available: {', '.join(optim.OPTIMIZERS)}")
        if opts["vocab_size"] is not None and (not isinstance(opts["vocab_size"], int) or opts["vocab_size"] < 2):
            raise CompleterError(f"--vocab-size must be a whole number >= 2 (one character and the unknown "
                                 f"symbol), got {opts['vocab_size']!r}")
        if not isinstance(opts["min_count"], int) or opts["min_count"] < 1:
            raise CompleterError(f"--min-count must be a whole number >= 1, got {opts['min_count']!r}")
        for key in ("val_fraction", "weight_drop", "ema"):
            if not 0 <= opts[key] < 1:
                raise CompleterError(f"--{key.replace('_', '-')} must be in [0, 1), got {opts[key]!r}")
        if not (opts["weight_decay"] >= 0 and math.isfinite(opts["weight_decay"])):
            raise CompleterError(f"--weight-decay must be a number >= 0, got {opts['weight_decay']!r}")
        return opts

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
        self.opts = o = self._resolve_options(saved["options"] if saved else None)

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
    def _state_meta(self) -> dict:
        return {"format": STATE_FORMAT, "options": self.opts, "model": self.model.config.as_dict(),
                "vocab": self.vocab.chars, "digest": self.digest, "step": self.step,
                "stream": self.streams.position(), "rng": self.rng.bit_generator.state,
                "opt_t": self.optimizer.t, "seconds": self.seconds, "train_seconds": self.train_seconds,
                "best_val": self.best_val, "best_step": self.best_step, "bad_vals": self.bad_vals,
                "last_val": self.last_val, "validated_step": self.validated_step, "recent": self.recent}

    def full_hidden(self) -> list:
        """The carried hidden state of all B streams (a data-parallel run gathers its shards)."""
        return self.hidden

    def state_bytes(self) -> bytes:
        """The resume state as a safetensors file: every tensor and the JSON metadata."""
        from safetensors.numpy import save as st_save

        tensors = {f"param.{k}": v for k, v in self.model.params.items()}
        tensors.update(self.optimizer.state_tensors())
        for l, s in enumerate(self.full_hidden()):
            for i, a in enumerate(s):
                tensors[f"hidden.{l}.{i}"] = a
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
        return st_save(tensors, metadata={STATE_KEY: json.dumps(self._state_meta())})

    def _save_state(self) -> None:
        checkpoint.atomic_write(self.out / STATE, self.state_bytes())
        self.saved_step = self.step

    def _load_state(self, path: Path, meta: dict) -> None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            t = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CompleterError(f"{path}: corrupt resume state ({str(exc).splitlines()[0]})") from None
        self.load_state_tensors(t, meta, path)

    def load_state_tensors(self, t: dict, meta: dict, path="resume state") -> None:
        params = {}
        for k, shape in self.model.expected_shapes().items():
            a = t.get(f"param.{k}")
            if a is None or a.shape != shape:
                raise CompleterError(f"{path}: resume state lacks parameter {k} of shape {shape}")
            params[k] = np.ascontiguousarray(a, dtype=np.float32)
        self.model.params = params
        self.optimizer = self._optimizer(params)
        self.optimizer.load_state_tensors(t, meta["opt_t"])
        hidden = []
        for l, s in enumerate(self.model.zero_state(self.opts["batch"])):
            hidden.append(tuple(np.ascontiguousarray(t[f"hidden.{l}.{i}"]) for i in range(len(s))))
        self.hidden = hidden
        self.rng.bit_generator.state = meta["rng"]
        self.streams.seek(meta["stream"])
        self.step, self.seconds, self.train_seconds = meta["step"], meta["seconds"], meta["train_seconds"]
        self.saved_step = self.step
        self.best_val, self.best_step, self.bad_vals = meta["best_val"], meta["best_step"], meta["bad_vals"]
        self.last_val, self.validated_step, self.recent = meta["last_val"], meta["validated_step"], meta["recent"]

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

    def _write_metrics(self, record: dict) -> None:
        self._metrics_file.write(json.dumps(record) + "\n")
        self._metrics_file.flush()

    def _open_metrics(self):
        """Append to metrics.jsonl, first dropping lines from beyond the state being resumed."""
        path = self.out / METRICS
        lines = []
        if self.resume and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= self.step:
                        lines.append(line)
                except (ValueError, KeyError, TypeError):
                    continue
        checkpoint.atomic_write(path, "".join(l + "\n" for l in lines).encode())
        return open(path, "a", encoding="utf-8")

    def _prepare_out(self) -> None:
        """Create RUN_DIR (or clear our files from it under --force), remove the temporaries an
        earlier, killed run left behind (`.NAME.XXXX.tmp` of atomic_write), prove it is writable."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.force and not self.resume:
                for name in RUN_FILES:
                    (self.out / name).unlink(missing_ok=True)
            for name in RUN_FILES + (".write-test",):
                for tmp in self.out.glob(f".{name}.*.tmp"):
                    tmp.unlink(missing_ok=True)
            checkpoint.atomic_write(self.out / ".write-test", b"")
            (self.out / ".write-test").unlink()
        except OSError as exc:
            raise CompleterError(f"--out {self.out}: cannot write there ({exc.strerror or exc})") from None

    def served(self) -> CharModel:
        """The weights that validation measures and checkpoints hold: the average under --ema."""
        avg = self.optimizer.averaged
        return self.model if avg is None else CharModel(self.model.config, params=avg)

    def validate(self, should_stop) -> float | None:
        """Validation bits per character, None without validation files."""
        if not self.val_files:
            return None
        return evaluate_bpc(self.served(), self.val_ids, batch=16, seq=256, should_stop=should_stop)

    def save(self, best: bool) -> None:
        """last (and best) checkpoints, then the resume state: each written atomically."""
        train, metrics, model = self._train_meta(), self._metrics(), self.served()
        checkpoint.save(self.out / checkpoint.LAST, model, self.vocab, train=train, metrics=metrics)
        if best:
            checkpoint.save(self.out / checkpoint.BEST, model, self.vocab, train=train, metrics=metrics)
        self._save_state()

    def describe(self) -> str:
        c, o = self.corpus, self.opts
        nval = sum(len(f.text) for f in self.val_files)
        used = f", first {len(self.val_ids):,} used" if nval > len(self.val_ids) else ""
        held = (f"; held out {_files(len(self.held_files))} ({sum(len(f.text) for f in self.held_files):,} chars)"
                if self.held_files else "")
        return (f"corpus: {_files(len(c.files))}, {c.chars:,} characters under {self.repo}: train "
                f"{_files(len(self.train_files))} ({self.streams.N:,} chars), validation {_files(len(self.val_files))} "
                f"({nval:,} chars{used}){held}; "
                f"skipped {c.skip_summary()}\n"
                f"{self._describe_vocab()}"
                f"model: {o['cell']} hidden {self.model.config.hidden} x {self.model.config.layers} layers, embed "
                f"{self.model.config.embed}, vocabulary {len(self.vocab)}, {self.model.n_params():,} parameters; "
                f"{o['optimizer']} lr {o['lr']:g}, batch {o['batch']} x seq {o['seq']}, "
                f"{self.streams.windows_per_epoch} steps per epoch")

    def _describe_vocab(self) -> str:
        """'vocabulary: ...' line: what the cap left to the unknown symbol (nothing on --resume)."""
        if not self.unknown:
            return ""
        n, occ = self.unknown
        total = sum(len(f.text) * self.weights.get(f.path, 1) for f in self.train_files)
        cap = f"--vocab-size {self.opts['vocab_size']}" if self.opts["vocab_size"] else ""
        cap += (", " if cap else "") + f"--min-count {self.opts['min_count']}" if self.opts["min_count"] > 1 else ""
        return (f"vocabulary: {len(self.vocab)} symbols" + (f" ({cap})" if cap else "") +
                f"; {n:,} other characters ({occ:,} occurrences, {occ / max(total, 1):.4%} of the training "
                f"text) read as the unknown symbol\n")

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

    def on_disk(self) -> tuple[dict, int | None]:
        """({checkpoint name: step} of the servable checkpoints in RUN_DIR, resume state's step or
        None): what a failed write left, read from the files themselves (a save writes last, best,
        then the state, so a full disk can leave checkpoints without a resume state)."""
        found = {}
        for name in (checkpoint.BEST, checkpoint.LAST):
            try:
                found[name] = checkpoint.read_metadata(self.out / name)["train"]["step"]
            except (CompleterError, OSError, KeyError, TypeError):
                continue
        try:
            state = read_state_meta(self.out / STATE)["step"] if (self.out / STATE).is_file() else None
        except (CompleterError, KeyError, TypeError):
            state = None
        return found, state

    def _write_error(self, exc: OSError) -> CompleterError:
        what = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
        found, state = self.on_disk()
        ckpts = " and ".join(f"{n} (step {st})" for n, st in found.items())
        if state is not None:
            saved = (f"on disk: {ckpts + ' and ' if ckpts else ''}the resume state (step {state}); free space "
                     f"and continue with --resume")
        elif found:
            saved = (f"on disk: {ckpts}, servable, but no resume state; free space and start over with --force, "
                     f"or fine-tune from {self.out / next(iter(found))} with --init")
        else:
            saved = "nothing was saved yet; free space and start over with --force"
        return CompleterError(f"cannot write to {self.out}: {what}; every file there is whole, {saved}")

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

    def _progress(self, session_steps: int, session_train_s: float, session_start: float) -> str:
        o = self.opts
        cps = session_steps * self.streams.chars_per_window / session_train_s if session_train_s else 0.0
        total = f"/{self.total_steps}" if self.total_steps else ""
        val = f"{self.last_val:.3f}" if self.last_val is not None else "-"
        loss = f"{self.train_bpc:.3f}" if self.train_bpc is not None else "-"
        eta = "?"
        wall_per_step = (time.perf_counter() - session_start) / max(session_steps, 1)
        if self.total_steps:
            eta = _fmt_duration(max(0, self.total_steps - self.step) * wall_per_step)
        elif o["minutes"] is not None:
            eta = _fmt_duration(max(0.0, o["minutes"] * 60 - self.seconds))
        return (f"step {self.step}{total}  epoch {self.epoch:.2f}  loss {loss} bpc  val {val} bpc  "
                f"{_fmt_count(cps)} chars/s  ETA {eta}")

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

    def _summary(self, reason: str) -> dict:
        cps = self.step * self.streams.chars_per_window / self.train_seconds if self.train_seconds else 0.0
        best = self.out / checkpoint.BEST
        summary = {"steps": self.step, "epochs": round(self.epoch, 4),
                   "chars": self.step * self.streams.chars_per_window, "train_bpc": self.train_bpc,
                   "val_bpc": self.last_val, "best_val_bpc": self.best_val, "best_step": self.best_step,
                   "chars_per_s": round(cps, 1), "seconds": round(self.seconds, 3),
                   "train_seconds": round(self.train_seconds, 3),
                   "checkpoint": str(best if best.exists() else self.out / checkpoint.LAST),
                   "last": str(self.out / checkpoint.LAST), "run_dir": str(self.out), "stopped": reason}
        return summary
