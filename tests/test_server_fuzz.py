"""Property-based fuzzing of the framing and the dispatcher (in process, fake handlers):
whatever arrives, `run` returns, every byte written is a well-formed frame holding a JSON-RPC
message, and every request id is answered exactly once."""
import io
import json
import re

from hypothesis import HealthCheck, given, settings, strategies as st

from completer.errors import CompleterError
from completer.server import framing
from completer.server.jsonrpc import Dispatcher, RpcError

CAP = 200_000


def boom(params, token):
    raise ValueError("a handler bug")


def user_error(params, token):
    raise CompleterError("unknown decoder 'x'")


def rpc_error(params, token):
    raise RpcError(-32602, "bad params")


REQUESTS = {"initialize": lambda p, t: {"capabilities": {}}, "shutdown": lambda p, t: None,
            "echo": lambda p, t: p, "nan": lambda p, t: float("nan"),
            "boom": boom, "user_error": user_error, "rpc_error": rpc_error}
NOTIFICATIONS = {"initialized": lambda p: None, "note_boom": lambda p: 1 / 0}

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
                           max_leaves=8)
methods = st.sampled_from(sorted(REQUESTS) + ["unknown/method", "exit", "$/cancelRequest", "initialized",
                                              "note_boom", "$/setTrace"])


def serve(data: bytes, jsonl=False):
    out = io.BytesIO()
    reader, writer = framing.make(jsonl, io.BytesIO(data), out, CAP)
    rc = Dispatcher(reader, writer, REQUESTS, NOTIFICATIONS).run()
    return rc, out.getvalue()


def parse_frames(out: bytes, jsonl=False) -> list:
    """Every message written; fails on any byte outside a well-formed frame."""
    msgs, pos = [], 0
    while pos < len(out):
        if jsonl:
            end = out.index(b"\n", pos)
            body, pos = out[pos:end], end + 1
        else:
            m = re.compile(rb"Content-Length: (\d+)\r\n\r\n").match(out, pos)
            assert m, f"unframed bytes at {pos}: {out[pos:pos + 40]!r}"
            body, pos = out[m.end():m.end() + int(m[1])], m.end() + int(m[1])
        msg = json.loads(body)
        assert msg["jsonrpc"] == "2.0" and ("method" in msg or ("id" in msg and ("result" in msg) != ("error" in msg)))
        msgs.append(msg)
    return msgs


@st.composite
def sessions(draw):
    """A stream of well-delimited frames: requests with unique ids mixed with broken frames."""
    parts, ids = [], []
    for k in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["request", "request", "notification", "cancel", "garbage", "json",
                                     "bad_header", "oversized", "nested", "wrong_id"]))
        if kind == "request":
            rid = draw(st.sampled_from([k, f"r{k}"]))
            ids.append(rid)
            method = draw(methods.filter(lambda m: m not in ("exit", "$/cancelRequest")))
            params = draw(st.one_of(st.dictionaries(st.text(max_size=4), json_values, max_size=3), json_values))
            parts.append(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode())
        elif kind == "notification":
            method = draw(methods.filter(lambda m: m != "exit"))
            parts.append(json.dumps({"jsonrpc": "2.0", "method": method, "params": draw(json_values)}).encode())
        elif kind == "cancel":
            target = draw(st.sampled_from(ids)) if ids and draw(st.booleans()) else draw(json_values)
            parts.append(json.dumps({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": target}}).encode())
        elif kind == "garbage":
            parts.append(draw(st.binary(min_size=1, max_size=30)).replace(b"\n", b" "))
        elif kind == "json":
            parts.append(json.dumps(draw(json_values)).encode())
        elif kind == "bad_header":
            parts.append(("header", draw(st.sampled_from([b"Foo: bar", b"Content-Length: -1", b"Content-Length: x",
                                                          b"no colon here"]))))
        elif kind == "oversized":
            parts.append(b"[" + b"0," * CAP + b"0]")
        elif kind == "nested":
            parts.append(b"[" * 50_000 + b"]" * 50_000)
        else:
            parts.append(json.dumps({"jsonrpc": "2.0", "id": draw(st.sampled_from([None, 1.5, True, [1]])),
                                     "method": "echo"}).encode())
    exit_at_end = draw(st.booleans())
    if exit_at_end:
        parts.append(b'{"jsonrpc":"2.0","method":"exit"}')
    return parts, ids, exit_at_end


def encode(parts, jsonl):
    out = b""
    for p in parts:
        if isinstance(p, tuple):
            out += (p[1] + b"\n") if jsonl else (p[1] + b"\r\n\r\n")
        else:
            out += (p + b"\n") if jsonl else framing.LspWriter.frame(p)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sessions(), st.booleans())
def test_every_request_answered_exactly_once(session, jsonl):
    parts, ids, exit_at_end = session
    rc, out = serve(encode(parts, jsonl), jsonl)
    msgs = parse_frames(out, jsonl)
    answered = [m["id"] for m in msgs if "id" in m and m["id"] is not None]
    assert sorted(map(repr, answered)) == sorted(map(repr, ids))
    assert rc in (0, 1) if exit_at_end else rc == 0
    for m in msgs:
        if "error" in m:
            assert m["error"]["code"] in (-32700, -32600, -32601, -32602, -32603, -32002, -32800)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_never_break_the_server(data, jsonl):
    rc, out = serve(data + b"\r\n\r\n", jsonl)
    assert rc in (0, 1)
    msgs = parse_frames(out, jsonl)
    ids = [repr(m["id"]) for m in msgs if m.get("id") is not None]
    assert len(ids) == len(set(ids))


def test_lifecycle_order():
    parts = [b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{}}',
             b'{"jsonrpc":"2.0","id":2,"method":"initialize","params":{}}',
             b'{"jsonrpc":"2.0","id":3,"method":"initialize","params":{}}',
             b'{"jsonrpc":"2.0","id":4,"method":"nan","params":{}}',
             b'{"jsonrpc":"2.0","id":5,"method":"user_error","params":{}}',
             b'{"jsonrpc":"2.0","id":6,"method":"shutdown"}',
             b'{"jsonrpc":"2.0","id":7,"method":"echo","params":{}}',
             b'{"jsonrpc":"2.0","method":"exit"}',
             b'{"jsonrpc":"2.0","id":8,"method":"echo","params":{}}']
    rc, out = serve(encode(parts, False))
    msgs = {m["id"]: m for m in parse_frames(out)}
    assert rc == 0 and sorted(msgs) == [1, 2, 3, 4, 5, 6, 7]  # nothing after exit
    assert msgs[1]["error"]["code"] == -32002 and msgs[3]["error"]["code"] == -32600
    assert msgs[4]["result"] is None  # NaN is not JSON: sent as null
    assert msgs[5]["error"] == {"code": -32602, "message": "unknown decoder 'x'"}
    assert msgs[7]["error"]["code"] == -32600
    rc, _ = serve(encode(parts[1:2] + parts[-2:], False))
    assert rc == 1  # exit without shutdown
