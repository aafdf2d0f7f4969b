"""The LSP methods of `completer serve`: read the params, call the engine, wrap the result.

`Session` holds one connection's state (the engine, the settings, the position encoding, the
open documents) and exposes `requests` and `notifications` tables for jsonrpc.Dispatcher.
Documents live in the engine (its per-document state cache follows every edit); the session only
keeps a LineIndex per document, rebuilt when the engine's text changes, to turn positions into
str offsets.

Settings come from `initializationOptions` and `workspace/didChangeConfiguration`
(`settings.completer` or `settings` itself): model, mode, decoder, temperature, threshold,
maxChars, n, adapt, adaptLr, memory, budgetMs, gate (inline completions only: shown when the
confidence gate gives them at least this probability of being accepted; null: the gate file's
threshold; 0: every one). See docs/protocol.md.

Project memory (setting `memory`, on unless `serve --no-memory`): the workspace named by
`initialize` (`workspaceFolders`, else `rootUri`, else `rootPath`) is read into the engine's
memory on a background thread (completer.memory.project), never delaying `initialize` or a
completion; open documents feed it as typed (the engine does that); `didSave` and
`workspace/didChangeWatchedFiles` re-read what changed on disk.
"""
from __future__ import annotations

import logging
import os
import re
import time
from urllib.parse import unquote_to_bytes, urlsplit

from completer import __version__
from completer.system import heap
from completer.engine.gate import shown
from completer.engine.requests import TYPING_BUDGET_MS
from completer.registry import registry
from completer.server.jsonrpc import INVALID_PARAMS, RpcError
from completer.server.positions import LineIndex

log = logging.getLogger("completer.server")
INVOKED = 1  # InlineCompletionTriggerKind.Invoked: the user asked, so offer a whole block
WORD = re.compile(r"[A-Za-z0-9_]*\Z")

# setting -> (type(s), check, Request field); None as a value restores the default
SETTINGS = {
    "model": (str, None, None),
    "mode": (str, None, "mode"),
    "decoder": (str, None, "decoder"),
    "temperature": ((int, float), lambda v: v >= 0, "temperature"),  # 0 = most probable, as the CLI
    "threshold": ((int, float), lambda v: 0 <= v < 1, "min_prob"),
    "maxChars": (int, lambda v: v >= 1, "max_chars"),
    "n": (int, lambda v: 1 <= v <= 50, "n"),
    "adapt": (bool, None, None),         # Engine.set_adapt: learn each document's typed text
    "adaptLr": ((int, float), lambda v: 0 < v < float("inf"), None),
    "memory": (bool, None, None),        # mix the project memory in (Engine.set_memory)
    "budgetMs": ((int, float), lambda v: 0 <= v < float("inf"), None),  # as-you-type ghost text: 0 = no limit
    "gate": ((int, float), lambda v: 0 <= v <= 1, None),  # inline only: the confidence gate's threshold
}
DEFAULTS = {"model": None, "mode": "line", "decoder": "greedy", "temperature": 1.0, "threshold": 0.0,
            "maxChars": 80, "n": 5, "adapt": False, "adaptLr": None, "memory": True,
            "budgetMs": TYPING_BUDGET_MS, "gate": None}


def field(obj, path: str, types, default=...):
    """obj["a"]["b"] for path "a.b", type-checked; a missing or mistyped value is -32602."""
    for name in path.split("."):
        if not isinstance(obj, dict) or name not in obj:
            if default is not ...:
                return default
            raise RpcError(INVALID_PARAMS, f"missing {path}")
        obj = obj[name]
    if not isinstance(obj, types) or (isinstance(obj, bool) and bool not in _tuple(types)):
        raise RpcError(INVALID_PARAMS, f"{path} has the wrong type ({type(obj).__name__})")
    return obj


def _tuple(types):
    return types if isinstance(types, tuple) else (types,)


def uri_path(uri) -> str | None:
    """The local path of a `file:` URI (None for other schemes and non-strings). Percent-escapes
    are decoded to bytes and the bytes to a path as the OS names it (`os.fsdecode`: a folder whose
    name is not UTF-8 keeps its bytes as surrogate escapes, and can be read). A `file:` URI that
    names no local path raises ValueError with the one-line reason: a NUL byte, another host, a
    relative path."""
    if not isinstance(uri, str):
        return None
    u = urlsplit(uri)
    if u.scheme.lower() != "file":
        return None
    if u.netloc.lower() not in ("", "localhost"):
        raise ValueError(f"a file on another host ({u.netloc[:80]!r})")
    raw = unquote_to_bytes(u.path)
    if b"\0" in raw:
        raise ValueError("a NUL byte in the path")
    if not raw.startswith(b"/"):
        raise ValueError("not an absolute path")
    return os.fsdecode(raw)


def local_path(uri, what: str) -> str | None:
    """uri_path, or None after one log line if the client's URI names no local file."""
    try:
        return uri_path(uri)
    except ValueError as exc:
        log.warning("%s %.200r refused: %s", what, uri, exc)
        return None


class Session:
    def __init__(self, model=None, adapt=False, adapt_lr=None, memory=True):
        self.defaults = dict(DEFAULTS, model=model, adapt=adapt, adaptLr=adapt_lr, memory=memory)  # serve's flags
        self.settings = dict(self.defaults)
        self.engine = None
        self.roots: list = []      # the workspace folders, from initialize
        self.project = None        # completer.memory.project.Project reading them, when memory is on
        self.encoding = "utf-16"
        self.open_uris: set = set()
        self.indexes: dict = {}  # uri -> LineIndex of the engine's current text
        self.requests = {
            "initialize": self.initialize,
            "shutdown": lambda params, token: None,
            "textDocument/inlineCompletion": self.inline_completion,
            "textDocument/completion": self.completion,
            "completer/complete": self.complete,
        }
        self.notifications = {
            "initialized": lambda params: None,
            "textDocument/didOpen": self.did_open,
            "textDocument/didChange": self.did_change,
            "textDocument/didClose": self.did_close,
            "workspace/didChangeConfiguration": self.did_change_configuration,
            "textDocument/didSave": self.did_save,
            "workspace/didChangeWatchedFiles": self.did_change_watched_files,
        }

    # ---- lifecycle and settings -----------------------------------------------------------
    def initialize(self, params, token):
        offered = field(params, "capabilities.general.positionEncodings", list, [])
        self.encoding = next((e for e in ("utf-32", "utf-8") if e in offered), "utf-16")
        folders = field(params, "workspaceFolders", (list, type(None)), None) or []
        roots = [local_path(f.get("uri"), "workspace folder") for f in folders if isinstance(f, dict)]
        if not folders:
            root_path = field(params, "rootPath", (str, type(None)), None)
            if root_path and "\0" in root_path:
                log.warning("rootPath %.200r refused: a NUL byte in the path", root_path)
                root_path = None
            roots = [local_path(field(params, "rootUri", (str, type(None)), None), "rootUri") or root_path]
        self.roots = [r for r in roots if r]
        self.configure(field(params, "initializationOptions", (dict, type(None)), None) or {})
        return {"capabilities": {
                    "positionEncoding": self.encoding,
                    "textDocumentSync": {"openClose": True, "change": 2,  # 2 = incremental
                                         "save": {"includeText": False}},
                    "inlineCompletionProvider": True,
                    "completionProvider": {"resolveProvider": False, "triggerCharacters": ["."]}},
                "serverInfo": {"name": "completer", "version": __version__}}

    def did_change_configuration(self, params):
        settings = field(params, "settings", dict)
        self.configure(settings.get("completer", settings) if isinstance(settings.get("completer"), dict)
                       else settings)

    def configure(self, options: dict) -> None:
        """Validate and apply settings; (re)load the model when its path changes."""
        new = dict(self.settings)
        for key, value in options.items():
            if key not in SETTINGS:
                continue  # other tools' settings may share the section
            types, check, _ = SETTINGS[key]
            if value is None:
                value = self.defaults[key]
            elif (not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types))
                  or (check and not check(value))):
                raise RpcError(INVALID_PARAMS, f"setting {key}: invalid value {value!r}")
            new[key] = value
        self.request_for(new, new["mode"])  # refuses a bad mode or value now, not at each keystroke
        registry.get("decoder", new["decoder"])
        reload = self.engine is None or new["model"] != self.settings["model"]
        if reload:
            self.load(new["model"])
        self.engine.set_adapt(new["adapt"], new["adaptLr"])  # the same values again change nothing
        if reload or new["memory"] != self.settings["memory"]:
            self.start_memory(new["memory"])
        self.settings = new

    def start_memory(self, on: bool) -> None:
        """A new memory for the engine (and a new reading of the workspace), or none."""
        from completer.memory.project import read_project

        self.engine.set_memory(False)
        self.project = None
        if on:
            self.engine.set_memory(True)
            if self.roots:
                self.project = read_project(self.engine, self.roots, log)

    def load(self, model) -> None:
        from completer.engine import Engine

        engine = Engine.from_checkpoint(model)  # CompleterError -> -32602 with its one-line message
        # the new model learns afresh (configure sets adapt): documents start from its weights
        for uri in self.open_uris:  # the documents move to the new model
            engine.open(uri, self.engine.text(uri))
        self.engine, self.indexes = engine, {}
        log.info("model loaded: %s", engine.describe())

    def idle(self) -> None:
        """No message waits: the engine catches up on what keystrokes deferred (Engine.idle)."""
        if self.engine is not None:
            self.engine.idle()

    def request_for(self, settings: dict, mode: str, **overrides):
        from completer.engine import Request

        fields = {f: settings[k] for k, (_, _, f) in SETTINGS.items() if f}
        return Request(**dict(fields, mode=mode, **overrides)).validated()

    # ---- documents ------------------------------------------------------------------------
    def did_open(self, params):
        uri, text = field(params, "textDocument.uri", str), field(params, "textDocument.text", str)
        self.engine.open(uri, text, read=self.project is not None and self.project.knows(text))
        self.open_uris.add(uri)

    def did_save(self, params):
        self.reread(field(params, "textDocument.uri", str))

    def did_change_watched_files(self, params):
        for change in field(params, "changes", list):
            if isinstance(change, dict) and change.get("type") in (1, 2):  # created, changed
                self.reread(field(change, "uri", str))

    def reread(self, uri) -> None:
        """Queue a file changed on disk for the project reader (which never makes this wait)."""
        if self.project is None:
            return
        path = local_path(uri, "changed file")
        if path and path.endswith(".py"):
            self.project.reread(path)

    def did_change(self, params):
        uri = self.document(params)
        for change in field(params, "contentChanges", list):
            text = field(change, "text", str)
            if "range" in change:
                index = self.index(uri)
                start, end = sorted((self.offset(index, change, "range.start"), self.offset(index, change, "range.end")))
                self.engine.edit(uri, start, end, text)
                self.indexes[uri] = index.edited(start, end, text, self.engine.text(uri))
            else:
                self.engine.change(uri, text)

    def did_close(self, params):
        uri = self.document(params)
        self.engine.close(uri)
        self.open_uris.discard(uri)
        self.indexes.pop(uri, None)
        heap.trim()  # the document's buffers go back to the OS, not only to malloc's free lists

    def document(self, params) -> str:
        uri = field(params, "textDocument.uri", str)
        if uri not in self.open_uris:
            raise RpcError(INVALID_PARAMS, f"document not open: {uri}")
        return uri

    def index(self, uri) -> LineIndex:
        text = self.engine.text(uri)
        index = self.indexes.get(uri)
        if index is None or index.text is not text:
            index = self.indexes[uri] = LineIndex(text)
        return index

    def offset(self, index: LineIndex, obj, path: str) -> int:
        return index.offset(field(obj, f"{path}.line", int), field(obj, f"{path}.character", int), self.encoding)

    # ---- completions ----------------------------------------------------------------------
    def inline_completion(self, params, token):
        uri = self.document(params)
        index = self.index(uri)
        offset = self.offset(index, params, "position")
        invoked = field(params, "context.triggerKind", int, 2) == INVOKED
        if invoked:  # asked for: the user waits for a whole block
            req = self.request_for(self.settings, "block")
        else:        # as you type: what the budget allows (Request.budget_ms)
            req = self.request_for(self.settings, self.settings["mode"], budget_ms=self.settings["budgetMs"])
        at = index.position(offset, self.encoding)  # the position as the engine read it (clamped)
        here = {"start": at, "end": at}
        completions = self.engine.complete(uri, offset, req, cancel=token)
        if completions and completions[0].cut:  # (what `completer bench` counts)
            log.debug("inline completion cut by the budget at %d characters", len(completions[0].text))
        completions = shown(completions, self.engine.gate, self.settings["gate"])  # None: the gate's default
        return {"items": [{"insertText": c.text, "range": here} for c in completions if c.text]}

    def completion(self, params, token):
        uri = self.document(params)
        index = self.index(uri)
        offset = self.offset(index, params, "position")
        word = WORD.search(index.text, index.starts[index.position(offset, "utf-32")["line"]], offset).group()
        n = self.settings["n"]
        req = self.request_for(self.settings, "token", decoder="beam", n=n, beam=max(n, 4))
        edit = {"start": index.position(offset - len(word), self.encoding), "end": index.position(offset, self.encoding)}
        items, seen = [], set()
        for c in self.engine.complete(uri, offset, req, cancel=token):
            label = word + c.text
            if c.text and label not in seen:
                seen.add(label)
                items.append({"label": label, "kind": 1, "detail": f"{c.prob:.1%}", "filterText": label,
                              "sortText": f"{len(items):04d}", "textEdit": {"range": edit, "newText": label}})
        return {"isIncomplete": True, "items": items}

    def complete(self, params, token):
        text = field(params, "text", str)
        overrides = {f: field(params, k, t) for k, t, f in (
            ("mode", str, "mode"), ("decoder", str, "decoder"), ("temperature", (int, float), "temperature"),
            ("seed", (int, type(None)), "seed"), ("n", int, "n"), ("maxChars", int, "max_chars"))
            if k in params}
        req = self.request_for(self.settings, overrides.pop("mode", "line"), **overrides)
        start = time.perf_counter()
        completions = self.engine.complete_text(text, req, cancel=token, suffix=field(params, "suffix", str, ""))
        return {"completions": [{"text": c.text, "logprob": c.logprob} for c in completions],
                "elapsed_ms": round((time.perf_counter() - start) * 1000, 3)}
