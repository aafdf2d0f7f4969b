"""The server half: one `completer serve --jsonl` per Jupyter server, and POST /completer/inline.

Why a server extension rather than jupyterlab-lsp's connection: jupyterlab-lsp sends document
changes after a delay, so a request sent over its connection was answered for text older than
what was on screen. Here every request carries the text itself (the notebook's earlier code cells,
then the current cell), which becomes the server's document (a whole-text didChange: the engine
keeps its states up to the first changed character) right before textDocument/inlineCompletion,
so an answer is always for the latest text. Requests are served one at a time; one that is no
longer the newest for its notebook when its turn comes is answered empty without asking the model.

The child's stdin is a pipe from this process: when Jupyter exits, however it exits, the pipe
closes and `completer serve` ends (end of input, exit 0), so no server is left behind.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import signal
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

STDERR_TAIL = 2000  # characters of the server's stderr kept for the message when it exits


class Bridge:
    def __init__(self, config: dict, root: str, log):
        self.config, self.root, self.log = config, root, log
        self.proc = None
        self.pending: dict = {}   # request id -> Future
        self.next_id = 0
        self.lock = asyncio.Lock()
        self.newest: dict = {}    # document uri -> the newest request's number
        self.opened: set = set()
        self.stderr = ""
        self.failure = None       # why the server is not running, said once, then a new start is tried

    def command(self) -> list:
        cmd = self.config.get("command") or ["completer", "serve"]
        return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)

    async def start(self) -> None:
        cmd = self.command()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, "--jsonl", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, limit=16 * 1024 * 1024)
        except FileNotFoundError:
            raise Failure(f"completer: command not found: {cmd[0]} (install completer, or set "
                          f"c.Completer.command in jupyter_server_config.py)") from None
        except PermissionError:
            raise Failure(f"completer: cannot run {cmd[0]} (not executable)") from None
        self.opened, self.stderr = set(), ""
        proc = self.proc
        asyncio.ensure_future(self.read(proc))
        asyncio.ensure_future(self.read_stderr(proc))
        # the server's own names (completer/server/handlers.py SETTINGS); None = its default, or
        # the command's flag (`completer serve --no-memory` stays without memory unless
        # c.Completer.memory says otherwise)
        options = {"model": self.config.get("model"), "memory": self.config.get("memory"),
                   "threshold": self.config.get("threshold", 0.0), "budgetMs": self.config.get("budget_ms", 20)}
        try:
            await self.call("initialize", {"processId": None, "rootUri": Path(self.root).resolve().as_uri(),
                                           "capabilities": {}, "initializationOptions": options})
        except Failure as exc:  # e.g. the model does not load: initialize answers with the reason
            self.stop()
            self.log.warning("completer: the server did not start: %s", exc)
            # JupyterLab cuts a notification at 140 characters: the model's file name, not its
            # whole path, keeps the reason in view (the log above has the path)
            model = self.config.get("model")
            why = str(exc).replace(str(model), Path(model).name) if model else str(exc)
            raise Failure(f"completer: the server did not start: {why}") from None
        self.notify("initialized", {})
        self.log.info("completer: started %s", shlex.join(cmd))

    def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.stdin.close()  # end of input: the server exits 0
        self.proc = None

    async def read(self, proc) -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            future = self.pending.pop(msg.get("id"), None)
            if future is not None and not future.done():
                if "error" in msg:
                    future.set_exception(Failure(msg["error"].get("message", "error")))
                else:
                    future.set_result(msg.get("result"))
        code = await proc.wait()
        await asyncio.sleep(0.05)  # let the stderr reader catch the last lines
        if proc is self.proc:
            self.failure = f"completer: the server exited ({exit_reason(code, self.stderr)}); typing starts it again"
            self.log.warning("%s", self.failure)
            self.proc = None
            # only the current server's requests wait here: after stop() (a failed start), the
            # pending ones already belong to the next server, whose reader answers them
            waiting = [f for f in self.pending.values() if not f.done()]
            for future in waiting:
                future.set_exception(Failure(self.failure))
            self.pending.clear()
            if waiting:
                self.failure = None  # said through those; the next request starts a new server

    async def read_stderr(self, proc) -> None:
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            self.stderr = (self.stderr + line.decode(errors="replace"))[-STDERR_TAIL:]
            self.log.debug("completer serve: %s", line.decode(errors="replace").rstrip())

    def send(self, msg: dict) -> None:
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")

    def notify(self, method: str, params: dict) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    async def call(self, method: str, params: dict):
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return await future

    async def inline(self, uri: str, text: str, offset: int) -> list:
        """The ghost-text candidates for `text` at code-point `offset`, or None when superseded."""
        number = self.newest[uri] = self.newest.get(uri, 0) + 1
        async with self.lock:
            if self.newest[uri] != number:
                return None  # a newer request for this notebook is waiting: its text is the latest
            if self.proc is None:
                if self.failure is not None:
                    failure, self.failure = self.failure, None
                    raise Failure(failure)  # said once; the next request starts a new server
                await self.start()
            if uri not in self.opened:
                self.notify("textDocument/didOpen", {"textDocument": {
                    "uri": uri, "languageId": "python", "version": 0, "text": text}})
                self.opened.add(uri)
            else:
                self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": number},
                                                       "contentChanges": [{"text": text}]})
            before = text[:offset]
            line = before.count("\n")
            # positions in UTF-16 code units, the LSP default the server assumes here
            character = len(before[before.rfind("\n") + 1:].encode("utf-16-le")) // 2
            result = await self.call("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
                "context": {"triggerKind": 2}})
        return [item["insertText"] for item in (result or {}).get("items", [])]


def exit_reason(code: int, stderr: str) -> str:
    """"killed by SIGKILL", or "code 1: <its last stderr line>" (an error exit's last line says why;
    after a signal it is only the last thing logged, so it is left out)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    tail = stderr.strip().splitlines()[-1:]
    return f"code {code}: {tail[0]}" if code and tail else f"code {code}"


class Failure(Exception):
    """A bad state with a one-line message for the user."""


class InlineHandler(APIHandler):
    @web.authenticated
    async def post(self):
        body = json.loads(self.request.body or b"{}")
        path, text, offset = body.get("path"), body.get("text"), body.get("offset")
        if not (isinstance(path, str) and isinstance(text, str) and isinstance(offset, int)
                and 0 <= offset <= len(text)):
            raise web.HTTPError(400, "expected {path: str, text: str, offset: int within text}")
        bridge = self.settings["completer_bridge"]
        try:
            items = await bridge.inline("notebook:" + path, text, offset)
        except Failure as exc:
            self.set_status(503)
            return self.finish(json.dumps({"error": str(exc)}))
        # superseded: no answer from the server, so no news about its state either
        self.finish(json.dumps({"items": items or [], "superseded": items is None}))


def setup(serverapp) -> None:
    section = serverapp.config.get("Completer", {})
    config = {k: section[k] for k in ("command", "model", "memory", "threshold", "budget_ms") if k in section}
    bridge = Bridge(config, serverapp.root_dir, serverapp.log)
    web_app = serverapp.web_app
    web_app.settings["completer_bridge"] = bridge
    route = url_path_join(web_app.settings["base_url"], "completer", "inline")
    web_app.add_handlers(".*$", [(route, InlineHandler)])
