"""Python-aware Enter for the multi-line prompt: when to submit, and how far to indent.

Like the Python REPL: a one-line statement submits on Enter; after a line ending in ':' (or inside
open brackets) Enter starts a new, indented line; a block opened with ':' is submitted by an empty
line. Text that is not valid Python submits too: this prompt never refuses input.
"""
from __future__ import annotations

import codeop
import re
import warnings

INDENT = "    "
_DEDENT_AFTER = re.compile(r"^\s*(return|pass|break|continue|raise)\b")


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].rstrip() if "#" in line else line.rstrip()


def is_incomplete(text: str) -> bool:
    """True when Python would wait for more lines (open brackets, a block header)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return codeop.compile_command(text, "<repl>", "exec") is None
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError):
        return False


def should_submit(text: str) -> bool:
    """Does Enter at the end of `text` submit it (rather than start a new line)?"""
    if not text.strip() or text.lstrip().startswith(":"):
        return True  # empty, or a REPL command
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1].strip():
        if any(_strip_comment(l).endswith(":") for l in lines):
            return False  # a block: an empty line ends it
    if len(text) > 20_000:
        return True  # a huge paste: don't compile it on the UI thread
    return not is_incomplete(text)


def next_indent(line: str) -> str:
    """The indentation of the line after `line`."""
    indent = line[:len(line) - len(line.lstrip(" \t"))]
    if _strip_comment(line).endswith(":"):
        return indent + INDENT
    if _DEDENT_AFTER.match(line):
        if indent.endswith(INDENT):
            return indent[:-len(INDENT)]
        return indent[:-1] if indent.endswith("\t") else indent
    return indent
