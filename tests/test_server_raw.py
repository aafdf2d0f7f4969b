"""`completer serve` as a subprocess fed raw bytes: malformed framing and bodies get the right
JSON-RPC errors, stdout holds frames only, end of input and exit codes behave."""
import json
import subprocess

from test_server_fuzz import parse_frames

from completer.server.framing import LspWriter


def msg(id_=None, method="completer/complete", params=None) -> bytes:
    m = {"jsonrpc": "2.0", "method": method, "params": {} if params is None else params}
    if id_ is not None:
        m["id"] = id_
    return LspWriter.frame(json.dumps(m).encode())


def serve(cmd, data: bytes, *flags, timeout=60):
    proc = subprocess.run([*cmd, "serve", *flags], input=data, capture_output=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr.decode()


INIT = msg(0, "initialize", {"capabilities": {}})


def test_malformed_input_gets_the_right_errors(completer_exe, tiny_checkpoint):
    data = (msg(1, params={"text": "x"})                                       # before initialize
            + INIT
            + b"Content-Length: 12x\r\n\r\n"                                   # bad header
            + LspWriter.frame(b'{"jsonrpc": "2.0", "id": 2,')                  # invalid JSON
            + LspWriter.frame(b"[" * 100_000 + b"]" * 100_000)                 # deeply nested
            + LspWriter.frame(b'"just a string"')                              # not an object
            + LspWriter.frame(b'{"jsonrpc":"2.0","id":3,"method":"x","params":{"a":"\xff"}}')  # bad UTF-8
            + b"Content-Length: 400000\r\n\r\n" + b"z" * 400_000                   # over the cap, skipped
            + msg(4, "no/such/method")
            + msg(5, "textDocument/inlineCompletion", {"textDocument": {"uri": "u"}, "position": {"line": "x"}})
            + msg(6, "textDocument/completion", [1, 2])                         # params not an object
            + msg(7, params={"text": "def f(", "maxChars": 0})                  # engine refuses the value
            + msg(None, "textDocument/didOpen", {"textDocument": {"uri": "u", "text": 1}})  # notification: silent
            + msg(8, params={"text": "def f("}))
    rc, out, err = serve(completer_exe, data, "--model", str(tiny_checkpoint), "--max-message-bytes", "300000")
    msgs = parse_frames(out)
    by_id = {m["id"]: m for m in msgs if "id" in m and m["id"] is not None}
    nulls = [m["error"]["code"] for m in msgs if "id" in m and m["id"] is None]
    assert rc == 0 and "Traceback" not in err
    assert by_id[1]["error"]["code"] == -32002 and "capabilities" in by_id[0]["result"]
    assert nulls == [-32700, -32700, -32700, -32600, -32700, -32600]
    assert [by_id[i]["error"]["code"] for i in (4, 5, 6, 7)] == [-32601, -32602, -32602, -32602]
    assert "completions" in by_id[8]["result"] and sorted(by_id) == [0, 1, 4, 5, 6, 7, 8]
    logs = [m for m in msgs if m.get("method") == "window/logMessage"]
    assert len(logs) == 1 and "didOpen" in logs[0]["params"]["message"]


def test_exit_codes_and_end_of_input(completer_exe, tiny_checkpoint):
    model = ["--model", str(tiny_checkpoint)]
    rc, out, err = serve(completer_exe, INIT + msg(1, "shutdown") + msg(None, "exit") + msg(2), *model)
    assert rc == 0 and [m.get("id") for m in parse_frames(out)] == [0, 1]
    rc, out, _ = serve(completer_exe, INIT + msg(None, "exit"), *model)
    assert rc == 1
    rc, out, err = serve(completer_exe, INIT + b"Content-Length: 100\r\n\r\n{", *model)  # EOF mid-body
    assert rc == 0 and err == ""


def test_json_lines_framing(completer_exe, tiny_checkpoint, tmp_path):
    lines = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
             {"jsonrpc": "2.0", "id": 2, "method": "completer/complete", "params": {"text": "import "}}]
    data = b"".join(json.dumps(m).encode() + b"\n" for m in lines) + b"not json\n"
    rc, out, err = serve(completer_exe, data, "--jsonl", "--model", str(tiny_checkpoint),
                         "--log-file", str(tmp_path / "log"), "--log-level", "info")
    msgs = parse_frames(out, jsonl=True)
    # the reader answers unparsable input at once, possibly before the worker's earlier answers
    by_id = {m["id"]: m for m in msgs}
    assert rc == 0 and err == "" and len(msgs) == 3 and "completions" in by_id[2]["result"]
    assert by_id[None]["error"]["code"] == -32700 and "model loaded" in (tmp_path / "log").read_text()


def test_bad_model_is_one_line_and_exit_2(completer_exe, tmp_path):
    rc, out, err = serve(completer_exe, b"", "--model", str(tmp_path / "missing.safetensors"))
    assert rc == 2 and out == b"" and len(err.strip().splitlines()) == 1 and "no such checkpoint" in err
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("not a checkpoint at all\n")
    rc, out, err = serve(completer_exe, b"", "--model", str(not_a_checkpoint))
    assert rc == 2 and out == b"" and len(err.strip().splitlines()) == 1 and "not a safetensors checkpoint" in err


def test_model_from_initialization_options(completer_exe, tiny_checkpoint, tmp_path):
    data = (msg(0, "initialize", {"capabilities": {}, "initializationOptions": {"model": str(tmp_path / "nope")}})
            + msg(1, "initialize", {"capabilities": {}, "initializationOptions": {"model": str(tiny_checkpoint),
                                                                                  "decoder": "beam"}})
            + msg(2, params={"text": "import "}))
    rc, out, _ = serve(completer_exe, data)
    by_id = {m["id"]: m for m in parse_frames(out)}
    assert by_id[0]["error"]["code"] == -32602 and "no such checkpoint" in by_id[0]["error"]["message"]
    assert "capabilities" in by_id[1]["result"] and by_id[2]["result"]["completions"]


def test_shutdown_with_params_null_as_eglot_sends_it(completer_exe, tiny_checkpoint):
    """eglot 1.9 sends `"params": null` with shutdown (and exit): null means no params."""
    null = lambda id_, method: LspWriter.frame(json.dumps(  # noqa: E731
        {"jsonrpc": "2.0", "method": method, "params": None, **({"id": id_} if id_ else {})}).encode())
    code, out, err = serve(completer_exe, INIT + null(1, "shutdown") + null(None, "exit"),
                           "--model", str(tiny_checkpoint))
    answers = {m.get("id"): m for m in parse_frames(out)}
    assert answers[1] == {"jsonrpc": "2.0", "id": 1, "result": None}
    assert code == 0, err                           # exit after a successful shutdown
