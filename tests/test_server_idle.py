"""The dispatcher runs the server's idle work when no message waits (Engine.idle: what keystrokes
deferred), never while messages queue, and a failing idle never stops the server."""
import json
import os
import threading
import time

from completer.server import framing
from completer.server.jsonrpc import Dispatcher


def frame(msg) -> bytes:
    body = json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def start(idle):
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    reader, writer = framing.make(False, os.fdopen(r_in, "rb"), os.fdopen(w_out, "wb"))
    seen = []

    def echo(params, token):
        seen.append(("echo", params["k"]))
        return params

    d = Dispatcher(reader, writer, {"initialize": lambda p, t: {}, "echo": echo}, {}, idle=idle)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    return os.fdopen(w_in, "wb", buffering=0), framing.LspReader(os.fdopen(r_out, "rb")), seen, t


def test_idle_runs_between_messages_not_while_they_queue():
    calls = []
    seen_ref = []

    def idle():
        calls.append(len(seen_ref[0]) if seen_ref else -1)

    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    reader, writer = framing.make(False, os.fdopen(r_in, "rb"), os.fdopen(w_out, "wb"))
    seen = []
    seen_ref.append(seen)
    d = Dispatcher(reader, writer, {"initialize": lambda p, t: {}, "echo": lambda p, t: seen.append(p["k"]) or p},
                   {}, idle=idle)
    # a burst already queued when the worker starts: handled back to back, then idle once
    d.queue.put((True, 0, "initialize", {}), 10)
    for k in range(1, 40):
        d.queue.put((True, k, "echo", {"k": k}), 10)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    answers = framing.LspReader(os.fdopen(r_out, "rb"))
    for _ in range(40):
        answers.read()
    time.sleep(0.1)
    assert calls == [39], calls
    # then a message after a pause: handled, then idle again
    out = os.fdopen(w_in, "wb", buffering=0)
    out.write(frame({"jsonrpc": "2.0", "id": 40, "method": "echo", "params": {"k": 40}}))
    answers.read()
    time.sleep(0.1)
    assert calls == [39, 40], calls
    out.close()
    t.join(10)
    assert not t.is_alive()


def test_a_failing_idle_is_logged_and_the_server_goes_on(caplog):
    def idle():
        raise RuntimeError("idle bug")

    out, answers, seen, t = start(idle)
    out.write(frame({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
    answers.read()
    time.sleep(0.05)
    out.write(frame({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"k": 1}}))
    assert json.loads(answers.read())["result"] == {"k": 1}
    out.close()
    t.join(10)
    assert "idle work failed" in caplog.text
