"""Measuring completer: the evaluation scenarios and metrics (`evaluate`), the reference n-gram
model (`ngram`), and the benchmarks of completion latency (`latency`), the server (`serving`) and
training throughput (`throughput`). Nothing on the serving path imports this package."""
