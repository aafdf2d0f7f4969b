"""Argument types and flags shared by several subcommands."""
from __future__ import annotations

import argparse


def _checked(cast, ok, rule: str):
    """An argparse type: parse with `cast`, then require `ok(value)`, else say `rule`."""
    what = "a whole number" if cast is int else "a number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    parse.__name__ = cast.__name__  # argparse names the type in its messages
    return parse


positive_int = _checked(int, lambda v: v >= 1, "at least 1")
nonneg_int = _checked(int, lambda v: v >= 0, "0 or more")
positive_float = _checked(float, lambda v: 0 < v < float("inf"), "a positive number")
nonneg_float = _checked(float, lambda v: 0 <= v < float("inf"), "0 or more")
fraction = _checked(float, lambda v: 0.0 <= v < 1.0, "in [0, 1)")


def add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="CKPT", default=None,
                   help="checkpoint file, or a training run directory (its best checkpoint); "
                        "default: the shipped model")


def add_memory_args(p: argparse.ArgumentParser, project_default: str | None) -> None:
    where = "the current directory" if project_default == "." else "none"
    p.add_argument("--project", metavar="DIR", default=project_default,
                   help=f"the project memory reads DIR's Python files (the trainer's rules), so that "
                        f"completions know its names (default: {where})")
    p.add_argument("--no-memory", action="store_true",
                   help="complete with the network alone (no project memory, not even of the text typed)")


def attach_memory(engine, args, log, wait: bool):
    """Turn the engine's memory on unless --no-memory, and read --project into it (in the
    background, or before returning with wait=True). -> the Project, or None."""
    if args.no_memory:
        return None
    engine.set_memory(True)
    if not args.project:
        return None
    from pathlib import Path

    from completer.errors import CompleterError
    from completer.memory.project import read_project

    root = Path(args.project).expanduser()
    if not root.is_dir():
        raise CompleterError(f"--project {args.project}: not a directory")
    project = read_project(engine, [root], log)
    if wait:
        project.wait()
    return project
