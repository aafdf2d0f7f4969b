"""The server's settings accept exactly what the engine and the CLI accept."""
import pytest

from completer.server.handlers import Session
from completer.server.jsonrpc import RpcError


def started(path):
    session = Session(model=str(path))
    session.initialize({"capabilities": {}}, None)
    return session


def test_temperature_zero_is_a_valid_setting_as_on_the_command_line(tiny_checkpoint):
    session = started(tiny_checkpoint)
    session.did_change_configuration({"settings": {"decoder": "temperature", "temperature": 0}})
    assert session.settings["temperature"] == 0
    a = session.complete({"text": "import ", "seed": 1}, None)["completions"]
    b = session.complete({"text": "import ", "seed": 2}, None)["completions"]
    assert [c["text"] for c in a] == [c["text"] for c in b]   # temperature 0 is argmax: seeds do not matter


@pytest.mark.parametrize("value", [-0.5, "hot", True])
def test_bad_temperature_setting_is_refused(tiny_checkpoint, value):
    session = started(tiny_checkpoint)
    with pytest.raises(RpcError, match="setting temperature"):
        session.did_change_configuration({"settings": {"temperature": value}})
    assert session.settings["temperature"] == 1.0


def test_budget_limits_as_you_type_ghost_text_only(tiny_checkpoint):
    session = started(tiny_checkpoint)
    assert session.settings["budgetMs"] > 0          # on by default
    session.did_change_configuration({"settings": {"mode": "free", "maxChars": 20, "budgetMs": 60_000}})
    text = "import os\n\ndef main(argv):\n    return "
    session.did_open({"textDocument": {"uri": "file:///b.py", "text": text}})
    where = {"textDocument": {"uri": "file:///b.py"}, "position": {"line": 3, "character": 11}}
    typing, invoked = {**where, "context": {"triggerKind": 2}}, {**where, "context": {"triggerKind": 1}}
    [whole] = [i["insertText"] for i in session.inline_completion(typing, None)["items"]]
    session.did_change_configuration({"settings": {"budgetMs": 1e-6}})  # out of time at once
    # what comes first, to its first token boundary (a suggestion is never empty for lack of time)
    [first] = [i["insertText"] for i in session.inline_completion(typing, None)["items"]]
    assert whole.startswith(first) and len(first) < len(whole)
    # asked for (Invoked): the user waits for the whole block, whatever the budget
    seen = []
    complete = session.engine.complete
    session.engine.complete = lambda uri, offset, req, cancel=None: seen.append(req) or complete(uri, offset, req, cancel)
    session.inline_completion(invoked, None)
    assert [(r.mode, r.budget_ms) for r in seen] == [("block", 0)]
    session.did_change_configuration({"settings": {"budgetMs": 0}})     # 0: no limit
    assert session.inline_completion(typing, None)["items"]
    with pytest.raises(RpcError, match="setting budgetMs"):
        session.did_change_configuration({"settings": {"budgetMs": -5}})
