"""The run directory's files and the resume state (RunFiles, a part of Run):

    RUN/best.safetensors   servable checkpoint with the lowest validation loss so far (the latest
                           save when there are no validation files)
    RUN/last.safetensors   servable checkpoint of the latest save
                           (both hold the weights' moving average under --ema)
    RUN/state.safetensors  resume state: parameters, optimizer slots, carried hidden state, and
                           JSON metadata (config, step, stream position, RNG state, best so far)
    RUN/metrics.jsonl      one JSON object per line: {"kind": "train"|"val", "step", "chars", ...}
    RUN/loss.png           train/validation bits per character against characters seen

Every write is atomic (checkpoint.atomic_write): a failure (a full disk) leaves each file whole,
and the error names what is on disk.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from completer.errors import CompleterError
from completer.model import checkpoint

STATE, METRICS, PLOT = "state.safetensors", "metrics.jsonl", "loss.png"
STATE_KEY, STATE_FORMAT = "completer_state", 1
RUN_FILES = (checkpoint.BEST, checkpoint.LAST, STATE, METRICS, PLOT)
RUN_FILES = (checkpoint.BEST, checkpoint.LAST, STATE, METRICS, PLOT)


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


class RunFiles:
    """Run's reading and writing of RUN_DIR (uses its out, opts, model, vocab, optimizer, streams,
    rng, hidden, step and the best-so-far bookkeeping)."""

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

    def save(self, best: bool) -> None:
        """last (and best) checkpoints, then the resume state: each written atomically."""
        train, metrics, model = self._train_meta(), self._metrics(), self.served()
        checkpoint.save(self.out / checkpoint.LAST, model, self.vocab, train=train, metrics=metrics)
        if best:
            checkpoint.save(self.out / checkpoint.BEST, model, self.vocab, train=train, metrics=metrics)
        self._save_state()

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
