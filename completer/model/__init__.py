"""The network and its file: the character model (`network`), its vocabulary (`vocab`) and the
checkpoint format (`checkpoint`). The cells it is built from are in `completer.cells`."""
