"""The JSON-RPC 2.0 dispatcher: one per server, whatever the framing.

Three threads. The reader thread cuts bodies out of stdin (framing.py), parses and validates them,
answers what is broken (with id null when no id could be read), applies `$/cancelRequest` at once,
and queues everything else. The worker (the caller of `run`) handles queued messages in order,
so a `didChange` is always applied before the completion request that follows it, while a
cancellation reaches a running completion through its token: the engine checks it between
characters and raises, and the request is answered with -32800. The reader never writes stdout
itself: its error answers go through a queue to the writer thread, so it never blocks on a client
that is slow to read (a reader blocked writing could not read the `$/cancelRequest` or the rest of
a pipelined batch: a deadlock). The worker writes its results directly (frames never interleave:
the framing writer holds a lock); when the client does not read, only the worker waits.

Bounds (backpressure): the incoming queue holds at most IN_MESSAGES messages or 2x the message cap
in bytes (16 MB by default), the outgoing one OUT_MESSAGES frames or as many bytes (one message
is always let through, however big). Past a bound the thread that would add to it waits: a worker
blocked on a full pipe lets the incoming queue fill, a full incoming (or outgoing) queue stops the
reader, and the client's own writes then block in the pipe, as with any program that is not read. So a client that pipelines
requests and reads the answers only afterwards is served as long as what it wrote fits in those
bounds (and the pipes' buffers), and a client that never reads stops being read, instead of making
the server's memory grow.

Params: an omitted `params` and `"params": null` mean the same (JSON-RPC allows omitting them; LSP
clients send `shutdown` and `exit` with either), i.e. `{}`; a method that needs some then refuses
what is missing (-32602), and any other non-object is refused as before.

Lifecycle (LSP): before `initialize` requests get -32002 and notifications are dropped; after
`shutdown` requests get -32600; `exit` ends `run` with 0 after shutdown, 1 otherwise (an `exit`
sent with an id is answered first, with result null); end of input ends it with 0. Every request
id gets exactly one answer; notifications never get one. `run` returns once the writer has sent
everything queued, or after DRAIN_SECONDS if the client stopped reading.

Handlers: `requests[method](params, token) -> result` and `notifications[method](params)`.
They raise `RpcError` for protocol errors; a `CompleterError` (bad user value) becomes -32602 and
any other exception -32603 with the traceback in the log; the server keeps serving.
"""
from __future__ import annotations

import collections
import json
import logging
import math
import threading
import traceback

from completer.errors import CompleterError
from completer.server.framing import FrameError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002
REQUEST_CANCELLED = -32800

log = logging.getLogger("completer.server")
_EOF = object()
NEW, RUNNING, SHUTDOWN = "new", "running", "shutdown"
IN_MESSAGES = 10_000    # requests and notifications read but not handled yet
OUT_MESSAGES = 10_000   # frames waiting for the client to read them
DRAIN_SECONDS = 5.0     # how long `run` waits, at the end, for the client to read what is queued


class BoundedQueue:
    """A FIFO of at most max_items items and max_bytes bytes (one item is always admitted): `put`
    waits while it is full. `close()` ends it: puts are refused, gets drain it, then return _EOF;
    `close(discard=True)` also drops what it holds."""

    def __init__(self, max_items: int, max_bytes: int):
        self.max_items, self.max_bytes = max_items, max_bytes
        self.items: collections.deque = collections.deque()
        self.bytes, self.closed = 0, False
        self.cond = threading.Condition()

    def put(self, item, size: int) -> bool:
        with self.cond:
            while (self.items and not self.closed
                   and (len(self.items) >= self.max_items or self.bytes + size > self.max_bytes)):
                self.cond.wait()
            if self.closed:
                return False
            self.items.append((item, size))
            self.bytes += size
            self.cond.notify_all()
            return True

    def get(self, timeout=None):
        with self.cond:
            if not self.cond.wait_for(lambda: self.items or self.closed, timeout):
                return None
            if not self.items:
                return _EOF
            item, size = self.items.popleft()
            self.bytes -= size
            self.cond.notify_all()
            return item

    def close(self, discard: bool = False) -> None:
        with self.cond:
            self.closed = True
            if discard:
                self.items.clear()
                self.bytes = 0
            self.cond.notify_all()


class RpcError(Exception):
    def __init__(self, code: int, message: str, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class Token:
    """A minimal cancel token (tests of the dispatcher alone); serve passes the engine's."""

    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


def encode(obj) -> bytes:
    """Compact ASCII JSON: no raw newline or non-ASCII byte can reach the framing."""
    try:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    except ValueError:  # NaN/inf (e.g. log 0) is not JSON: send null instead
        return encode(_finite(obj))


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _key(id_):
    return (type(id_).__name__, id_)  # 1 and "1" are different ids


def _valid_id(id_) -> bool:
    return isinstance(id_, str) or (isinstance(id_, int) and not isinstance(id_, bool))


class Dispatcher:
    def __init__(self, reader, writer, requests: dict, notifications: dict, token_factory=Token, idle=None):
        """idle: called by the worker when no message waits, before it blocks for the next one."""
        self.reader, self.writer = reader, writer
        self.requests, self.notifications = requests, notifications
        self.token_factory, self.idle = token_factory, idle
        self.state = NEW
        max_bytes = 2 * getattr(reader, "max_bytes", 8 * 1024 * 1024)
        self.queue = BoundedQueue(IN_MESSAGES, max_bytes)   # (has_id, id, method, params), body size
        self.out = BoundedQueue(OUT_MESSAGES, max_bytes)    # encoded bodies, for the writer thread
        self.lock = threading.Lock()
        self.pending: dict = {}      # key(id) -> token, for queued and running requests
        self.cancelled: set = set()  # keys of pending requests the client cancelled
        self.closed = False          # stdout is gone: stop
        self.reader_thread = self.writer_thread = None

    # ---- output ---------------------------------------------------------------------------
    def send(self, obj: dict) -> None:
        """Write one message: the reader thread's go through the writer thread's queue (waiting
        while it is full), the worker's are written at once (a full pipe blocks only the worker:
        backpressure; a hand-off to another thread cost ~0.5 ms per keystroke)."""
        if self.closed:
            return
        body = encode(obj)
        if threading.current_thread() is self.reader_thread:
            self.out.put(body, len(body))
        else:
            self._write(body)

    def _write(self, body: bytes) -> bool:
        try:
            self.writer.send(body)  # whole frames under the writer's lock: the threads never interleave
            return True
        except (OSError, ValueError):  # broken pipe / closed stream: the client is gone
            self.closed = True
            self.out.close(discard=True)
            self.queue.close(discard=True)
            return False

    def write_loop(self) -> None:
        while True:
            body = self.out.get()
            if body is _EOF or not self._write(body):
                return

    def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """Let the writer send what is queued (at most `timeout` seconds), then stop it."""
        self.out.close()
        if self.writer_thread is not None:
            self.writer_thread.join(timeout)

    def reply(self, id_, result) -> None:
        self.send({"jsonrpc": "2.0", "id": id_, "result": result})

    def error(self, id_, code: int, message: str, data=None) -> None:
        err = {"code": code, "message": message}
        if data is not None:
            err["data"] = data
        self.send({"jsonrpc": "2.0", "id": id_, "error": err})

    def notify(self, method: str, params) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    # ---- reader thread --------------------------------------------------------------------
    def read_loop(self) -> None:
        try:
            while not self.closed:
                body = self.reader.read()
                if body is None:
                    break
                if isinstance(body, FrameError):
                    log.warning("bad frame: %s", body.reason)
                    self.error(None, INVALID_REQUEST if body.too_big else PARSE_ERROR, body.reason)
                    continue
                self.accept(body)
        except Exception:  # never reached by design; if it is, end cleanly rather than hang
            log.error("reader failed:\n%s", traceback.format_exc())
        finally:
            self.queue.close()  # the worker handles what was queued, then ends

    def accept(self, body: bytes) -> None:
        """Parse and validate one body; answer it if broken, else cancel or queue it."""
        try:
            msg = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
            self.error(None, PARSE_ERROR, f"parse error: {reason}")
            return
        if not isinstance(msg, dict):
            self.error(None, INVALID_REQUEST, "a message must be a JSON object")
            return
        has_id, id_ = "id" in msg, msg.get("id")
        if "method" not in msg and ("result" in msg or "error" in msg):
            return  # a response: this server sends no requests, so nothing waits for it
        if has_id and not _valid_id(id_):
            self.error(None, INVALID_REQUEST, "id must be a string or an integer")
            return
        method, params = msg.get("method"), msg.get("params")
        if params is None:  # omitted or null: no params (JSON-RPC 2.0 allows omitting them; eglot sends null)
            params = {}
        if msg.get("jsonrpc") != "2.0" or not isinstance(method, str):
            self.error(id_, INVALID_REQUEST, 'expected {"jsonrpc": "2.0", "method": string, ...}')
            return
        if method == "$/cancelRequest":
            self.cancel(params.get("id") if isinstance(params, dict) else None)
            return
        if has_id:
            with self.lock:
                self.pending[_key(id_)] = self.token_factory()
        self.queue.put((has_id, id_, method, params), len(body))  # waits while full: backpressure

    def cancel(self, id_) -> None:
        if not _valid_id(id_):
            return
        with self.lock:
            token = self.pending.get(_key(id_))
            if token is not None:
                self.cancelled.add(_key(id_))
                token.cancel()

    # ---- worker ---------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until `exit` or end of input; the process exit code."""
        self.writer_thread = threading.Thread(target=self.write_loop, name="completer-writer", daemon=True)
        self.reader_thread = threading.Thread(target=self.read_loop, name="completer-reader", daemon=True)
        self.writer_thread.start()
        self.reader_thread.start()
        try:
            while True:
                item = self.queue.get(timeout=0) if self.idle is not None else None
                if item is None:
                    if self.idle is not None:
                        self._idle()
                    item = self.queue.get()
                if item is _EOF:
                    return 0
                has_id, id_, method, params = item
                if method == "exit":
                    if has_id:  # a request by mistake: it still gets its one answer
                        with self.lock:
                            self.pending.pop(_key(id_), None)
                        self.reply(id_, None)
                    return 0 if self.state == SHUTDOWN else 1
                if has_id:
                    self.handle_request(id_, method, params)
                else:
                    self.handle_notification(method, params)
        finally:
            self.drain()

    def _idle(self) -> None:
        try:
            self.idle()
        except Exception:  # idle work is an optimisation: a failure is logged, never fatal
            log.error("idle work failed:\n%s", traceback.format_exc())

    def handle_request(self, id_, method: str, params) -> None:
        key = _key(id_)
        with self.lock:
            token = self.pending.get(key)
        try:
            if key in self.cancelled:
                raise RpcError(REQUEST_CANCELLED, "request cancelled")
            if self.state == NEW and method != "initialize":
                raise RpcError(SERVER_NOT_INITIALIZED, "the server is not initialized")
            if self.state == SHUTDOWN:
                raise RpcError(INVALID_REQUEST, "the server is shutting down")
            if method == "initialize" and self.state != NEW:
                raise RpcError(INVALID_REQUEST, "initialize was already received")
            handler = self.requests.get(method)
            if handler is None:
                raise RpcError(METHOD_NOT_FOUND, f"unknown method {method!r}")
            if not isinstance(params, dict):
                raise RpcError(INVALID_PARAMS, "params must be an object")
            result = handler(params, token)
        except Exception as exc:
            self.error(id_, *self.describe(exc, key, method))
        else:
            if method == "initialize":
                self.state = RUNNING
            elif method == "shutdown":
                self.state = SHUTDOWN
            self.reply(id_, result)
        finally:
            with self.lock:
                self.pending.pop(key, None)
                self.cancelled.discard(key)

    def describe(self, exc: Exception, key, method: str) -> tuple:
        """(code, message) of the error answer for an exception raised while handling."""
        if isinstance(exc, RpcError):
            return exc.code, exc.message
        if key in self.cancelled:
            return REQUEST_CANCELLED, "request cancelled"
        if isinstance(exc, CompleterError):
            return INVALID_PARAMS, str(exc)
        log.error("%s failed:\n%s", method, traceback.format_exc())
        return INTERNAL_ERROR, f"internal error in {method}: {type(exc).__name__}: {exc}"[:500]

    def handle_notification(self, method: str, params) -> None:
        if self.state == NEW:
            return  # LSP: notifications before initialize are dropped
        handler = self.notifications.get(method)
        if handler is None:
            if not method.startswith("$/"):
                log.info("ignoring unknown notification %s", method)
            return
        try:
            if not isinstance(params, dict):
                raise RpcError(INVALID_PARAMS, "params must be an object")
            handler(params)
        except Exception as exc:
            code, message = self.describe(exc, None, method)
            log.warning("%s: %s (%d)", method, message, code)
            self.notify("window/logMessage", {"type": 1, "message": f"completer: {method}: {message}"})
