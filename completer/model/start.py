"""The state every text is read from, at serving time and in evaluation (not in training).

The trainer reads its corpus as B long streams of files placed end to end, and carries the state
from window to window: the network meets the zero state once per epoch, and a file's first
characters always follow the end of another file. Read from the zero state, the first characters
of a text (a new file, the REPL's first line, every cold start) were read out of distribution:
`def add(a, b` -> `) - 1`, `import ` -> `or line in ...` from the network alone. Reading PRIMER, the
end of a typical file, first puts the network where a file starts in training: the same prompts
give `):` and `pytest`.

    state = start_state(model, vocab)        # [per layer: the cell's state tuple, each (1, H)]
    rows = repeat(state, B)                  # the same for B rows, each (B, H)
"""
from __future__ import annotations

import numpy as np

PRIMER = '\n\n\nif __name__ == "__main__":\n    main()\n'


def start_state(model, vocab) -> list:
    """The state after PRIMER read from the zero state, one row (computed anew: ~2 ms, so a model
    whose weights change never starts from a stale one; callers reading many texts keep it)."""
    ids = vocab.encode(PRIMER).astype(np.int64)[:, None]                  # (T, 1)
    _, state, _ = model.forward(ids, model.zero_state(1))
    return state


def repeat(state: list, B: int) -> list:
    """A one-row state as B identical rows."""
    return [tuple(np.repeat(x, B, axis=0) for x in s) for s in state]
