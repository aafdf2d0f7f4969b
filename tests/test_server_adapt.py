"""`completer serve --adapt` and the `adapt` / `adaptLr` settings."""
import json
import subprocess

import pytest

from completer.cli import build_parser
from completer.engine import Engine, Request
from completer.server.handlers import Session
from completer.server.jsonrpc import INVALID_PARAMS, RpcError

URI = "file:///work/demo.py"
LINE = "qzv_total = qzv_total + qzv_step\n"


def started(path, options=None, **kw):
    session = Session(model=str(path), memory=False, **kw)   # compared with the network alone
    session.initialize({"capabilities": {}, "initializationOptions": {"budgetMs": 0, **(options or {})}}, None)
    return session


def type_lines(session, lines):
    """Incremental didChange events, one per character, at the end of the document."""
    for version, ch in enumerate("".join(lines), start=1):
        index = session.index(URI)
        end = index.position(len(index.text), session.encoding)
        session.did_change({"textDocument": {"uri": URI, "version": version},
                            "contentChanges": [{"range": {"start": end, "end": end}, "text": ch}]})


def test_settings_switch_adaptation_and_its_rate(tiny_checkpoint):
    session = started(tiny_checkpoint)
    assert session.engine.adapt is False                       # off unless asked
    session.did_change_configuration({"settings": {"completer": {"adapt": True, "adaptLr": 2}}})
    assert session.engine.adapt is True and session.engine.adapt_lr == 2.0
    session.did_change_configuration({"settings": {"adapt": False}})
    assert session.engine.adapt is False
    flagged = started(tiny_checkpoint, adapt=True, adapt_lr=0.5)   # serve --adapt --adapt-lr 0.5
    assert flagged.engine.adapt is True and flagged.engine.adapt_lr == 0.5
    flagged.did_change_configuration({"settings": {"adapt": False, "adaptLr": 1.0}})
    flagged.did_change_configuration({"settings": {"adapt": None, "adaptLr": None}})  # the flags again
    assert flagged.engine.adapt is True and flagged.engine.adapt_lr == 0.5
    for bad in ({"adapt": "yes"}, {"adapt": 1}, {"adaptLr": 0}, {"adaptLr": -1.0}, {"adaptLr": True},
                {"adaptLr": "0.3"}):
        with pytest.raises(RpcError) as err:
            session.did_change_configuration({"settings": bad})
        assert err.value.code == INVALID_PARAMS
    assert session.engine.adapt is False                       # a refused setting changes nothing


def test_typed_text_adapts_the_workspace_and_switching_off_restores_it(tiny_checkpoint):
    session = started(tiny_checkpoint, {"adapt": True, "adaptLr": 1.0})
    session.did_open({"textDocument": {"uri": URI, "text": "import os\n\n"}})
    type_lines(session, [LINE] * 8)
    engine = session.engine
    assert engine.wait_adaptation(timeout=60) and engine.adapt_steps(URI) == len(LINE * 8) // 128
    text = engine.text(URI)
    position = session.index(URI).position(len(text), session.encoding)
    params = {"textDocument": {"uri": URI}, "position": position, "context": {"triggerKind": 2}}
    adapted = session.inline_completion(params, None)
    static = Engine.from_checkpoint(tiny_checkpoint)
    expected = [{"insertText": c.text, "range": {"start": position, "end": position}}
                for c in static.complete_text(text, Request(mode="line", n=5)) if c.text]
    assert adapted["items"] != expected
    # closing and reopening keeps what the workspace learnt; `adapt: false` gives the shipped weights back
    session.did_close({"textDocument": {"uri": URI}})
    session.did_open({"textDocument": {"uri": URI, "text": text}})
    assert session.inline_completion(params, None) == adapted
    session.did_change_configuration({"settings": {"completer": {"adapt": False}}})
    assert session.inline_completion(params, None) == {"items": expected}


def test_serve_flags(tiny_checkpoint, completer_exe):
    args = build_parser().parse_args(["serve", "--adapt", "--adapt-lr", "0.5"])
    assert args.adapt is True and args.adapt_lr == 0.5
    assert build_parser().parse_args(["serve"]).adapt is False
    bad = subprocess.run([*completer_exe, "serve", "--adapt-lr", "0"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    # the server answers with --adapt as without (jsonl: one message per line)
    msgs = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
            {"jsonrpc": "2.0", "id": 2, "method": "completer/complete", "params": {"text": "import o"}},
            {"jsonrpc": "2.0", "id": 3, "method": "shutdown"}, {"jsonrpc": "2.0", "method": "exit"}]
    run = subprocess.run([*completer_exe, "serve", "--jsonl", "--adapt", "--model", str(tiny_checkpoint)],
                         input="".join(json.dumps(m) + "\n" for m in msgs), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    answers = {a["id"]: a for a in map(json.loads, run.stdout.splitlines())}
    assert "completions" in answers[2]["result"]
