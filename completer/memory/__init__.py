"""The project memory: models of the text already read, mixed with the network.

The network knows the code it was trained on; the memory knows the user's project. It reads the
project's files (and what the user types) and predicts the next character from them with an online
n-gram and two match models, and a mixer combines those predictions with the network's, log-linearly,
learning its weights online on real characters. Every path predicts through it: the engine's
`Search.logprobs` (so every decoder), `completer eval`, the REPL and `serve`.

    memory = Memory(vocab)                  # fixed-size tables (SIZES), bounded whatever is read
    memory.learn_text(text)                 # real text: counted
    lp, s, inputs = memory.mix(ctx, net_lp) # ctx (L,) int32 ids before the cursor; lp (V,) float32
    memory.update(s, inputs, lp, y)         # the mixer learns that the real next character was y

Files:
    _kernel.c   the per-character loops (n-gram, match models, mixer), compiled by `pip install`
    store.py    Memory: the kernel with the vocabulary, the default sizes and the starting weights
    project.py  Project: reads a workspace in the background with the trainer's discovery rules
"""
from completer.memory.store import SIZES, Memory

__all__ = ["Memory", "SIZES"]
