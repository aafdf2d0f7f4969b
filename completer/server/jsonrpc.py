"""The JSON-RPC 2.0 dispatcher: one per server, whatever the framing.

Two threads. The reader thread cuts bodies out of stdin (framing.py), parses and validates them,
answers what is broken (with id null when no id could be read), applies `$/cancelRequest` at once,
and queues everything else. The worker (the caller of `run`) handles queued messages in order,
so a `didChange` is always applied before the completion request that follows it, while a
cancellation reaches a running completion through its token: the engine checks it between
characters and raises, and the request is answered with -32800.

Lifecycle (LSP): before `initialize` requests get -32002 and notifications are dropped; after
`shutdown` requests get -32600; `exit` ends `run` with 0 after shutdown, 1 otherwise; end of input
ends it with 0. Every request id gets exactly one answer; notifications never get one.

Handlers: `requests[method](params, token) -> result` and `notifications[method](params)`.
They raise `RpcError` for protocol errors; a `CompleterError` (bad user value) becomes -32602 and
any other exception -32603 with the traceback in the log; the server keeps serving.
"""
from __future__ import annotations

import json
import logging
import math
import queue
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
    def __init__(self, reader, writer, requests: dict, notifications: dict, token_factory=Token):
        self.reader, self.writer = reader, writer
        self.requests, self.notifications = requests, notifications
        self.token_factory = token_factory
        self.state = NEW
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.pending: dict = {}      # key(id) -> token, for queued and running requests
        self.cancelled: set = set()  # keys of pending requests the client cancelled
        self.closed = False          # stdout is gone: stop

    # ---- output ---------------------------------------------------------------------------
    def send(self, obj: dict) -> None:
        if self.closed:
            return
        try:
            self.writer.send(encode(obj))
        except (OSError, ValueError):  # broken pipe / closed stream: the client is gone
            self.closed = True
            self.queue.put(_EOF)

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
            self.queue.put(_EOF)

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
        if params is None:  # omitted, or null as eglot 1.9 sends with `shutdown`: no params
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
        self.queue.put((has_id, id_, method, params))

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
        self.reader_thread = threading.Thread(target=self.read_loop, name="completer-reader", daemon=True)
        self.reader_thread.start()
        while True:
            item = self.queue.get()
            if item is _EOF:
                return 0
            has_id, id_, method, params = item
            if method == "exit":
                return 0 if self.state == SHUTDOWN else 1
            if has_id:
                self.handle_request(id_, method, params)
            else:
                self.handle_notification(method, params)

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
