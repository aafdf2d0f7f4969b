"""completer: local code completion from a character-level recurrent network in NumPy.

The runtime package: the model (cells/, model.py), checkpoint I/O, the completion engine and
its frontends. Training lives in the separate `completer_trainers` package.
"""
__version__ = "0.1.0"
