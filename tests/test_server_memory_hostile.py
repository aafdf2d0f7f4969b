"""`completer serve`'s project memory against hostile clients and workspaces (issue 23), over real
pipes: URIs with NUL bytes, other hosts or bytes that are not UTF-8; a storm of saves while the
workspace is read (the keystroke's completion must not wait for the read). Every wait has a timeout."""
import os
import time

import numpy as np
import pytest

from test_server_memory import FILLER, Client, inline


def serve(completer_exe, tiny_checkpoint, log, level="info"):
    return Client([*completer_exe, "serve", "--jsonl", "--model", str(tiny_checkpoint), "--log-level", level,
                   "--log-file", str(log)])


def wait_for(log, text, timeout=60):
    end = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < end, log.read_text()
        time.sleep(0.1)


def test_uris_that_name_no_local_file_cost_one_line_each_and_initialize_succeeds(completer_exe, tiny_checkpoint,
                                                                                   tmp_path):
    log = tmp_path / "serve.log"
    client = serve(completer_exe, tiny_checkpoint, log)
    try:
        init = client.request("initialize", {"capabilities": {}, "rootUri": "file:///tmp/a%00b"})
        assert "capabilities" in init["result"], init
        client.close()
    finally:
        client.proc.kill()
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "m.py").write_text("x = 1\n")
    client = serve(completer_exe, tiny_checkpoint, log)
    try:
        init = client.request("initialize", {"capabilities": {}, "workspaceFolders": [
            {"uri": (tmp_path / "ws").as_uri(), "name": "ws"}, {"uri": "file:///tmp/a%00b", "name": "nul"}]})
        assert "capabilities" in init["result"], init
        for uri in ("file:///tmp/a%00b.py", "file://elsewhere/x.py", "file:rel.py"):
            client.send("textDocument/didSave", {"textDocument": {"uri": uri}}, request=False)
        client.send("workspace/didChangeWatchedFiles", {"changes": [{"uri": "file:///x%00.py", "type": 2}]},
                    request=False)
        assert "result" in client.request("completer/complete", {"text": "x = "})   # still serving
        assert client.close() == 0
    finally:
        client.proc.kill()
    lines = log.read_text().splitlines()
    assert "Traceback" not in log.read_text()
    refused = [line for line in lines if "refused" in line]
    assert len(refused) == 2 + 4, lines                  # the root twice, three saves, one watched file
    assert "NUL" in refused[0] and "NUL" in refused[1] and "another host" in refused[3] and "absolute" in refused[4]


def test_a_folder_whose_name_is_not_utf8_is_read(completer_exe, tiny_checkpoint, tmp_path):
    folder = os.fsencode(str(tmp_path)) + b"/ws\xff"
    os.mkdir(folder)
    with open(folder + b"/m.py", "w") as f:
        f.write("def quuxify(n):\n    return n\n")
    log = tmp_path / "serve.log"
    client = serve(completer_exe, tiny_checkpoint, log)
    try:
        client.request("initialize", {"capabilities": {}, "rootUri": tmp_path.as_uri() + "/ws%FF"})
        wait_for(log, "project memory: 1 files")
        assert client.close() == 0
    finally:
        client.proc.kill()


def test_an_empty_workspace_reads_nothing_and_says_nothing(completer_exe, tiny_checkpoint, tmp_path):
    (tmp_path / "ws").mkdir()
    log = tmp_path / "serve.log"
    client = serve(completer_exe, tiny_checkpoint, log)
    try:
        client.request("initialize", {"capabilities": {}, "rootUri": (tmp_path / "ws").as_uri()})
        client.request("completer/complete", {"text": "x = "})
        time.sleep(0.5)
        assert client.close() == 0
    finally:
        client.proc.kill()
    assert "project memory" not in log.read_text(), log.read_text()


@pytest.mark.slow
def test_a_storm_of_saves_during_the_read_never_delays_a_keystroke(completer_exe, tmp_path):
    """2,000 didSave and didChangeWatchedFiles while a ~1.2 MB workspace is read (the shipped model):
    each keystroke's inline completion is answered while the read goes on (before: the first
    waited 9.7 s for the read's lock). Prints the keystrokes' p50 and p99."""
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(40):
        (ws / f"filler_{i}.py").write_text(FILLER)
    log = tmp_path / "serve.log"
    client = Client([*completer_exe, "serve", "--jsonl", "--log-level", "info", "--log-file", str(log)])
    try:
        client.request("initialize", {"capabilities": {}, "rootUri": ws.as_uri()})
        client.send("initialized", request=False)
        uri = (ws / "main.py").as_uri()
        text = "import os\n\n\ndef main(order):\n    total = "
        client.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                              "text": text}}, request=False)
        inline(client, uri, text)                                 # the model's first step, as an editor's
        for i in range(1000):
            saved = (ws / f"filler_{i % 40}.py").as_uri()
            client.send("textDocument/didSave", {"textDocument": {"uri": saved}}, request=False)
            client.send("workspace/didChangeWatchedFiles", {"changes": [{"uri": saved, "type": 2}]}, request=False)
        times = []
        for k, ch in enumerate("helper_1(order, 3) + helper_2(total, order) - len(order)"):
            client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2 + k}, "contentChanges": [
                {"range": {"start": {"line": 4, "character": len("    total = ") + k},
                           "end": {"line": 4, "character": len("    total = ") + k}}, "text": ch}]}, request=False)
            text += ch
            t = time.perf_counter()
            inline(client, uri, text)
            times.append(time.perf_counter() - t)
        during = "characters read in" not in log.read_text()
        wait_for(log, "characters read in", 180)
        assert client.close() == 0
    finally:
        client.proc.kill()
    p50, p99 = np.percentile(np.array(times) * 1000, [50, 99])
    print(f"keystrokes {'during' if during else 'partly after'} the read and a storm of 2,000 saves: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(times) * 1000:.1f} ms")
    assert during, "the read ended before the keystrokes: nothing was measured during it"
    assert times[0] < 2.0 and p99 < 500, (p50, p99)               # generous: a shared machine
