"""What a run prints: the corpus and model description, the progress line (rate, ETA), the summary
(Report, a part of Run)."""
from __future__ import annotations

import time

from completer.model import checkpoint

RECENT_S = 60.0   # seconds of steps behind the progress line's rate and ETA

def _fmt_count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


def _fmt_duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Report:
    """Run's description, progress line and summary (uses its corpus, files, opts, model, vocab,
    streams, step and figures)."""

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

    def _progress(self, session_steps: int, session_train_s: float, session_start: float) -> str:
        """The progress line. Rate and ETA are over the last RECENT_S seconds (the session's start
        when it is younger): a run of hours on a shared machine meets changing loads, and a
        session-long average answers them an hour late."""
        o, now = self.opts, time.perf_counter()
        samples = self.__dict__.setdefault("_rate_samples", [])  # (wall, step, session train seconds)
        if not samples:                                           # the session's start
            samples.append((session_start, self.step - session_steps, 0.0))
        samples.append((now, self.step, session_train_s))
        while len(samples) > 2 and now - samples[1][0] >= RECENT_S:
            samples.pop(0)
        w0, s0, t0 = samples[0]
        steps, wall, train_s = self.step - s0, now - w0, session_train_s - t0
        cps = steps * self.streams.chars_per_window / train_s if train_s > 0 else 0.0
        total = f"/{self.total_steps}" if self.total_steps else ""
        val = f"{self.last_val:.3f}" if self.last_val is not None else "-"
        loss = f"{self.train_bpc:.3f}" if self.train_bpc is not None else "-"
        eta = "?"
        if self.total_steps:
            eta = _fmt_duration(max(0, self.total_steps - self.step) * wall / max(steps, 1))
        elif o["minutes"] is not None:
            eta = _fmt_duration(max(0.0, o["minutes"] * 60 - self.seconds))
        return (f"step {self.step}{total}  epoch {self.epoch:.2f}  loss {loss} bpc  val {val} bpc  "
                f"{_fmt_count(cps)} chars/s  ETA {eta}")

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
