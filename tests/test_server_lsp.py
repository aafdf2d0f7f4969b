"""`completer serve` end to end with a real LSP client (pytest-lsp / pygls) over pipes: lifecycle,
inline and menu completion against the engine's own answers, incremental edits, cancellation,
errors."""
import asyncio

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig

from completer.engine import Engine, Request

URI = "file:///work/demo.py"
TEXT = "import os\n\n\ndef main():\n    path = os.path.join('a', 'b')\n    return pa\n"


@pytest_asyncio.fixture
async def client(tiny_checkpoint, completer_exe):
    config = ClientServerConfig(server_command=[*completer_exe, "serve", "--model", str(tiny_checkpoint),
                                                    "--no-memory"])  # answers compared with the network alone
    client = await config.start()
    yield client
    await client.shutdown_session()
    await client.stop()


@pytest.fixture
def engine(tiny_checkpoint):
    return Engine.from_checkpoint(tiny_checkpoint)


def plain(obj):
    """pygls turns JSON objects of methods it does not know into namedtuples: back to dicts."""
    if hasattr(obj, "_asdict"):
        return {k: plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


async def custom(client, params, **kw):
    return plain(await client.protocol.send_request_async("completer/complete", params, **kw))


async def start(client, encodings=None, options=None):
    caps = types.ClientCapabilities(general=types.GeneralClientCapabilities(position_encodings=encodings))
    result = await client.initialize_session(types.InitializeParams(capabilities=caps,
                                                                     initialization_options={
        "budgetMs": 0, **(options or {})}))  # compared with the engine's own answers: no time limit
    return result


def open_doc(client, text=TEXT):
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=URI, language_id="python", version=0, text=text)))


def edit(client, version, sl, sc, el, ec, text):
    rng = types.Range(start=types.Position(line=sl, character=sc), end=types.Position(line=el, character=ec))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=rng, text=text)]))


async def inline(client, line, character, kind=types.InlineCompletionTriggerKind.Automatic):
    return await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind)))


@pytest.mark.asyncio
async def test_initialize_advertises_what_is_served(client):
    result = await start(client, encodings=[types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16])
    caps = result.capabilities
    assert caps.position_encoding == types.PositionEncodingKind.Utf8
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert caps.inline_completion_provider is True and caps.completion_provider.resolve_provider is False
    assert caps.hover_provider is None and caps.definition_provider is None
    assert result.server_info.name == "completer"


@pytest.mark.asyncio
async def test_inline_completion_follows_incremental_edits(client, engine):
    await start(client)  # no encodings offered: UTF-16
    open_doc(client, "# é𝄞\n" + TEXT)
    # line 0 holds a 4-byte character (2 UTF-16 units); replace "pa" on the last line by "os.pa"
    edit(client, 1, 6, 11, 6, 13, "os.pa")
    edit(client, 2, 0, 2, 0, 5, "")  # delete "é𝄞": UTF-16 units 2..5
    expected_text = "# " + "\n" + TEXT.replace("return pa", "return os.pa")
    want = engine.complete_text(expected_text[:expected_text.rindex("os.pa") + 5], Request(mode="line"))
    got = await inline(client, 6, 16)
    assert [i.insert_text for i in got.items] == [c.text for c in want]
    for item in got.items:
        assert item.range.start == item.range.end == types.Position(line=6, character=16)


@pytest.mark.asyncio
async def test_invoked_inline_completion_is_a_block_and_full_sync_works(client, engine):
    await start(client)
    open_doc(client)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=1),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="def f(x):\n    ")]))
    got = await inline(client, 1, 4, types.InlineCompletionTriggerKind.Invoked)
    want = engine.complete_text("def f(x):\n    ", Request(mode="block"))
    assert [i.insert_text for i in got.items] == [c.text for c in want]


@pytest.mark.asyncio
async def test_completion_menu_lists_the_engines_best_tokens(client, engine):
    await start(client)
    open_doc(client)
    got = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=5, character=13)))
    want = engine.complete_text(TEXT[:TEXT.index("return pa") + 9],
                                Request(mode="token", decoder="beam", n=5, beam=5))
    assert got.is_incomplete is True
    assert [i.label for i in got.items] == ["pa" + c.text for c in want if c.text]
    assert [i.detail for i in got.items] == [f"{c.prob:.1%}" for c in want if c.text]
    for item in got.items:  # the edit replaces the word typed so far, so editors filter on it
        assert item.text_edit.range.start == types.Position(line=5, character=11)


@pytest.mark.asyncio
async def test_custom_request_and_configuration(client, engine):
    await start(client, options={"decoder": "greedy", "maxChars": 12})
    got = await custom(client, {"text": "import o", "n": 1})
    want = engine.complete_text("import o", Request(mode="line", max_chars=12))
    assert [c["text"] for c in got["completions"]] == [c.text for c in want] and got["elapsed_ms"] >= 0
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"completer": {"maxChars": 3}}))
    got = await custom(client, {"text": "import o"})
    assert all(len(c["text"]) <= 3 for c in got["completions"])


@pytest.mark.asyncio
async def test_cancel_stops_a_running_completion(client):
    await start(client)
    # 50 free-running samples of up to 10,000 characters: many seconds of work unless decoding stops
    # (one sample of the tiny model took under the 0.3 s below on a fast machine)
    params = {"text": "x = ", "mode": "free", "decoder": "temperature", "seed": 0, "maxChars": 10_000, "n": 50}
    future = client.protocol.send_request("completer/complete", params, msg_id=77)
    await asyncio.sleep(0.3)
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=77))
    with pytest.raises(JsonRpcException) as err:
        await asyncio.wrap_future(future)
    assert err.value.code == -32800
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    quick = await custom(client, {"text": "x = ", "maxChars": 1})
    assert quick["completions"] is not None and loop.time() - t0 < 2.0  # the worker is free again


@pytest.mark.asyncio
async def test_errors_keep_the_server_serving(client):
    await start(client)
    open_doc(client)
    cases = [("no/such/method", {}, -32601),
             ("textDocument/hover", types.HoverParams(text_document=types.TextDocumentIdentifier(uri=URI),
                                                      position=types.Position(line=0, character=0)), -32601),
             ("textDocument/inlineCompletion", types.InlineCompletionParams(
                 text_document=types.TextDocumentIdentifier(uri="file:///closed.py"),
                 position=types.Position(line=0, character=0),
                 context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)),
              -32602),
             ("completer/complete", {"text": "x", "decoder": "nope"}, -32602),
             ("completer/complete", {"text": "x", "temperature": "hot"}, -32602)]
    for method, params, code in cases:
        with pytest.raises(JsonRpcException) as err:
            await client.protocol.send_request_async(method, params)
        assert err.value.code == code, (method, params)
    got = await inline(client, 5, 13)
    assert got is not None
