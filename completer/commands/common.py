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
