"""`completer serve` with the project memory, end to end over pipes: the workspace from initialize
is read in the background, completion answers before the read is done, and afterwards the
project's own names are completed; files changed on disk are read again."""
import json
import select
import subprocess
import time

import pytest

NAME = "frobnicate_widget_total"
DEFINES = f"def {NAME}(items):\n    return sum(item.price for item in items)\n\n\nprint({NAME}([]))\n"
TYPING = "import os\n\n\ndef main(order):\n    total = frob"
FILLER = "".join(f"def helper_{i}(x, y):\n    return x * {i} + y - {i}\n\n\n" for i in range(600))  # ~30 KB


class Client:
    """JSON lines over the server's pipes, each read bounded by a timeout (a hang fails, not blocks)."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.next_id, self.buf = 1, b""

    def send(self, method, params=None, request=True):
        msg = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        if request:
            msg["id"] = self.next_id
            self.next_id += 1
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        return msg.get("id")

    def answer(self, id_, timeout=60):
        end = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("id") == id_:
                    return msg
            left = end - time.monotonic()
            assert left > 0, f"no answer to {id_}"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = self.proc.stdout.read1(65536)
                assert chunk, "the server closed its output"
                self.buf += chunk

    def request(self, method, params=None, timeout=60):
        return self.answer(self.send(method, params), timeout)

    def close(self):
        self.request("shutdown")
        self.send("exit", request=False)
        return self.proc.wait(30)


def inline(client, uri, text):
    line = text.count("\n")
    col = len(text) - (text.rindex("\n") + 1 if "\n" in text else 0)
    ans = client.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": col},
        "context": {"triggerKind": 2}})
    return [item["insertText"] for item in ans["result"]["items"]]


@pytest.mark.slow
def test_the_workspace_is_read_in_the_background_and_its_names_completed(completer_exe, tmp_path):
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    for i in range(40):                                          # ~1.2 MB: a read that takes a while
        (ws / "pkg" / f"filler_{i}.py").write_text(FILLER)
    (ws / "pkg" / "widgets.py").write_text(DEFINES)
    (ws / "myenv").mkdir()                                      # a virtualenv, whatever its name
    (ws / "myenv" / "pyvenv.cfg").write_text("home = /usr\n")
    (ws / "myenv" / "junk.py").write_text("never_read = 1\n")
    log = tmp_path / "serve.log"
    client = Client([*completer_exe, "serve", "--jsonl", "--log-level", "info", "--log-file", str(log)])
    try:
        t = time.monotonic()
        init = client.request("initialize", {"capabilities": {}, "rootUri": ws.as_uri(),
                                             # no time limit: a name in full; no gate: this test is
                                             # about what the memory read, not whether to show it
                                             "initializationOptions": {"budgetMs": 0, "gate": 0}})
        assert "capabilities" in init["result"] and time.monotonic() - t < 10
        client.send("initialized", request=False)
        uri = (ws / "main.py").as_uri()
        client.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                              "text": TYPING}}, request=False)
        first = inline(client, uri, TYPING)                      # answered while the read goes on
        assert isinstance(first, list)
        assert "loaded from the cache" not in log.read_text() and "characters read in" not in log.read_text()
        end = time.monotonic() + 120
        while "characters read in" not in log.read_text():
            assert time.monotonic() < end, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert "41 files" in text and "virtualenv" in text
        after = inline(client, uri, TYPING)
        assert after and after[0].startswith(NAME[4:]), after
        # a file that appears on disk is read when the client says so (soon after: it is queued)
        (ws / "pkg" / "later.py").write_text("def quuxify_the_gadget(n):\n    return n\n")
        client.send("workspace/didChangeWatchedFiles",
                    {"changes": [{"uri": (ws / "pkg" / "later.py").as_uri(), "type": 1}]}, request=False)
        later = "import os\n\nx = quux"
        client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                               "contentChanges": [{"text": later}]}, request=False)
        end = time.monotonic() + 30                              # read by the worker, not the request
        while not ((got := inline(client, uri, later)) and got[0].startswith("ify_the_gadget")):
            assert time.monotonic() < end, got
            time.sleep(0.1)
        # memory off: the network alone, which cannot know the name
        client.send("workspace/didChangeConfiguration", {"settings": {"completer": {"memory": False}}},
                    request=False)
        client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3},
                                               "contentChanges": [{"text": TYPING}]}, request=False)
        assert not any(NAME[4:] in c for c in inline(client, uri, TYPING))
        assert client.close() == 0
    finally:
        client.proc.kill()
    # a restart loads the read from the cache instead of reading again (the same 41 files)
    (ws / "pkg" / "later.py").unlink()
    log.write_text("")
    client = Client([*completer_exe, "serve", "--jsonl", "--log-level", "info", "--log-file", str(log)])
    try:
        client.request("initialize", {"capabilities": {}, "rootUri": ws.as_uri(),
                                      "initializationOptions": {"budgetMs": 0}})
        end = time.monotonic() + 60
        while "project memory: 41 files, " not in log.read_text():
            assert time.monotonic() < end, log.read_text()
            time.sleep(0.2)
        assert "loaded from the cache" in log.read_text()
        assert client.close() == 0
    finally:
        client.proc.kill()
