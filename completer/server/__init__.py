"""The editor protocol behind `completer serve`: JSON-RPC 2.0 over stdin/stdout.

  framing.py    byte streams <-> message bodies: LSP `Content-Length` frames or JSON lines, size-capped
  jsonrpc.py    the dispatcher: parse, validate, route, answer every request id once, cancellation
  positions.py  LSP positions (line, character in UTF-16/UTF-8/UTF-32 units) <-> str offsets
  handlers.py   the LSP methods, thin: read params, call completer.engine, wrap the result
  bench.py      keystroke -> inlineCompletion latency over real pipes (for `completer bench`)

The protocol layer never computes completions; the engine never sees JSON.
"""
