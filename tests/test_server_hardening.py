"""`completer serve` against clients an audit used: eglot's `"params": null`, `exit` sent with an id,
positions past the end of a line, and clients that pipeline without reading. Real pipes, and every
wait has a timeout, so a regression fails instead of hanging the suite."""
import json
import subprocess
import threading
import time

import pytest

from conftest import make_checkpoint
from test_server_fuzz import parse_frames

from completer.server.framing import LspReader


def frame(obj, jsonl: bool) -> bytes:
    body = json.dumps(obj).encode()
    return body + b"\n" if jsonl else b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def rpc(id_, method, params=..., **extra):
    m = {"jsonrpc": "2.0", "method": method, **extra}
    if id_ is not None:
        m["id"] = id_
    if params is not ...:
        m["params"] = params
    return m


def run_serve(cmd, model, messages, jsonl=False, timeout=60):
    data = b"".join(frame(m, jsonl) for m in messages)
    flags = ["--jsonl"] if jsonl else []
    p = subprocess.run([*cmd, "serve", "--model", str(model), *flags], input=data, capture_output=True,
                       timeout=timeout)
    return p.returncode, {m.get("id"): m for m in parse_frames(p.stdout, jsonl) if "id" in m}, p.stderr.decode()


@pytest.mark.parametrize("jsonl", [False, True], ids=["lsp", "jsonl"])
def test_null_params_mean_no_params(completer_exe, tiny_checkpoint, jsonl):
    """eglot 1.9 sends shutdown and exit with "params": null; a null where params are needed
    is still refused, and so is a wrong type."""
    rc, by_id, err = run_serve(completer_exe, tiny_checkpoint, [
        rpc(1, "initialize", {"capabilities": {}}),
        rpc(2, "completer/complete", None),                                # needs text: refused
        rpc(3, "textDocument/inlineCompletion", None),                      # needs a document
        rpc(4, "completer/complete", 5),                                    # a wrong type
        rpc(5, "shutdown", None),
        rpc(None, "exit", None)], jsonl)
    assert rc == 0 and err == ""
    assert by_id[5] == {"jsonrpc": "2.0", "id": 5, "result": None}
    assert by_id[2]["error"] == {"code": -32602, "message": "missing text"}
    assert by_id[3]["error"]["code"] == -32602 and by_id[4]["error"]["code"] == -32602
    assert "params must be an object" in by_id[4]["error"]["message"]


def test_params_omitted_and_empty_are_accepted_too(completer_exe, tiny_checkpoint):
    rc, by_id, _ = run_serve(completer_exe, tiny_checkpoint, [
        rpc(1, "initialize"), rpc(2, "shutdown", {}), rpc(None, "exit")])
    assert rc == 0 and "capabilities" in by_id[1]["result"] and by_id[2]["result"] is None


@pytest.mark.parametrize("shutdown, code", [(True, 0), (False, 1)])
def test_exit_sent_with_an_id_is_answered_then_exits(completer_exe, tiny_checkpoint, shutdown, code):
    msgs = [rpc(1, "initialize", {"capabilities": {}})] + ([rpc(2, "shutdown")] if shutdown else [])
    rc, by_id, _ = run_serve(completer_exe, tiny_checkpoint, msgs + [rpc(3, "exit"), rpc(4, "shutdown")])
    assert rc == code and by_id[3] == {"jsonrpc": "2.0", "id": 3, "result": None} and 4 not in by_id


def test_ranges_are_clamped_as_the_engine_reads_the_position(completer_exe, tiny_checkpoint):
    doc = {"textDocument": {"uri": "file:///a.py", "languageId": "python", "version": 0, "text": "ab\nxy = 1\n"}}
    past = {"textDocument": {"uri": "file:///a.py"}, "position": {"line": 0, "character": 99}}
    below = {"textDocument": {"uri": "file:///a.py"}, "position": {"line": 40, "character": 7}}
    rc, by_id, _ = run_serve(completer_exe, tiny_checkpoint, [
        rpc(1, "initialize", {"capabilities": {}, "initializationOptions": {"threshold": 0, "mode": "char"}}),
        rpc(None, "initialized", {}), rpc(None, "textDocument/didOpen", doc),
        rpc(2, "textDocument/inlineCompletion", dict(past, context={"triggerKind": 2})),
        rpc(3, "textDocument/completion", past),
        rpc(4, "textDocument/inlineCompletion", dict(below, context={"triggerKind": 2}))])
    end_of_line, end_of_doc = {"line": 0, "character": 2}, {"line": 2, "character": 0}
    items = by_id[2]["result"]["items"]
    assert items and all(i["range"] == {"start": end_of_line, "end": end_of_line} for i in items)
    edits = [i["textEdit"]["range"] for i in by_id[3]["result"]["items"]]
    assert edits and all(r == {"start": {"line": 0, "character": 0}, "end": end_of_line} for r in edits)
    below_items = by_id[4]["result"]["items"]
    assert below_items and all(i["range"]["start"] == end_of_doc for i in below_items)


class Raw:
    """A client over real pipes whose writes and reads run in threads joined with a timeout."""

    def __init__(self, cmd, model, *flags):
        self.proc = subprocess.Popen([*cmd, "serve", "--model", str(model), *flags], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def write_in_background(self, data: bytes) -> threading.Thread:
        def write():
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except OSError:
                pass
        t = threading.Thread(target=write, daemon=True)
        t.start()
        return t

    def read_frames(self, n: int, timeout: float) -> list:
        got = []

        def read():
            reader = LspReader(self.proc.stdout)
            while len(got) < n:
                body = reader.read()
                if not isinstance(body, bytes):
                    return
                got.append(json.loads(body))
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        return got

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


def test_unparseable_frames_pipelined_without_reading_are_all_answered(completer_exe, tiny_checkpoint):
    """1,000 broken frames (~250 kB, each answered with a parse error) written before reading a
    byte: the reader must keep reading while the answers wait (it used to block writing one)."""
    server = Raw(completer_exe, tiny_checkpoint)
    try:
        junk = b"".join(b"Content-Length: 200\r\n\r\n" + b"{" + b"x" * 199 for _ in range(1000))
        writer = server.write_in_background(junk)
        writer.join(30)
        assert not writer.is_alive(), "the server stopped reading: deadlock"
        answers = server.read_frames(1000, timeout=30)
        assert len(answers) == 1000 and {a["error"]["code"] for a in answers} == {-32700}
        assert all(a["id"] is None for a in answers)
    finally:
        server.kill()


def test_a_client_that_never_reads_is_not_buffered_without_bound(completer_exe, tiny_checkpoint):
    """Requests answered with 100 kB each (the method name comes back in the error), 60 MB of them,
    never read: the server holds at most ~2x its message cap per direction and then stops reading
    (the client's write blocks); once the client reads, everything it wrote is answered."""
    server = Raw(completer_exe, tiny_checkpoint, "--max-message-bytes", "1000000")
    try:
        big = "m" * 100_000
        n = 600
        server.write_in_background(frame(rpc(0, "initialize", {"capabilities": {}}), False)).join(10)
        assert "capabilities" in server.read_frames(1, timeout=60)[0]["result"]
        base = server.rss_mb()
        writer = server.write_in_background(b"".join(frame(rpc(i, big), False) for i in range(1, n + 1)))
        writer.join(8)
        assert writer.is_alive(), "the server read 60 MB nobody was reading the answers of"
        grown = server.rss_mb() - base
        print(f"RSS {base:.0f} MB -> +{grown:.0f} MB with the client's write blocked")
        assert grown < 30, f"RSS grew {grown:.0f} MB"
        answers = server.read_frames(n, timeout=120)  # reading unblocks everything
        writer.join(30)
        assert len(answers) == n and not writer.is_alive()
        assert sorted(a["id"] for a in answers) == list(range(1, n + 1))
        assert all(a["error"]["code"] == -32601 for a in answers)
    finally:
        server.kill()


def test_closed_documents_give_their_memory_back(completer_exe, tmp_path):
    """200 documents of 100 KB open, each completed once (LSTM-256), add ~32 MB of RSS; once they are
    closed glibc's malloc used to keep ~13 MB of it in its free lists; the server trims them after
    each close (+2 MB measured). Without the project memory, which keeps what it read by design
    (bounded by its fixed tables, see docs/memory.md)."""
    server = Raw(completer_exe, make_checkpoint(tmp_path / "h256.safetensors", hidden=256),  # states of 2 KB
                 "--no-memory")
    try:
        text = "".join(f"    value_{i} = compute(value_{i - 1}, {i})  # step\n" for i in range(2000))[:100_000]

        def roundtrip(msgs, id_):  # the messages, then a request whose answer says they are handled
            done = server.write_in_background(b"".join(frame(m, False) for m in msgs + [
                rpc(id_, "completer/complete", {"text": "x", "maxChars": 1})]))
            answers = server.read_frames(1 + sum("id" in m for m in msgs), timeout=60)
            done.join(30)
            assert answers and answers[-1]["id"] == id_ and "result" in answers[-1]
        roundtrip([rpc(100, "initialize", {"capabilities": {}}), rpc(None, "initialized", {})], 0)
        start = server.rss_mb()
        uris = [f"file:///doc{i}.py" for i in range(200)]
        roundtrip([m for i, u in enumerate(uris) for m in (
            rpc(None, "textDocument/didOpen", {"textDocument": {"uri": u, "languageId": "python", "version": 0,
                                                                "text": text}}),
            rpc(1000 + i, "textDocument/inlineCompletion", {"textDocument": {"uri": u}, "position": {
                "line": 1000, "character": 4}, "context": {"triggerKind": 2}}))], 1)
        opened = server.rss_mb()
        roundtrip([rpc(None, "textDocument/didClose", {"textDocument": {"uri": u}}) for u in uris], 2)
        closed = server.rss_mb()
        print(f"RSS {start:.0f} MB, {opened:.0f} with 200 documents open, {closed:.0f} once closed")
        assert opened - start > 15 and closed - start < 6
    finally:
        server.kill()
