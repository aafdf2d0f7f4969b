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
