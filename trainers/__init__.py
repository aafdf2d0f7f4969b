"""completer_trainers: the learning side of completer (corpus, batching, optimizers, BPTT loop)."""
