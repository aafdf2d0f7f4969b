"""The Vim 9 plugin (plugins/vim) inside a real Vim, against a real `completer serve` on the tiny model.

Each test writes a Vim script that types into a Python buffer with feedkeys(), polls from a timer
until the ghost text arrives, acts (Tab, Ctrl-Right, Left, Esc) and records what it saw; the
assertions run here on that report. The tiny model is random, so the tests assert that *some*
suggestion appears and that accepting inserts exactly it.
"""
import shutil

import pytest

from editor_harness import proxy_command, run_vim, traffic, vim_string

pytestmark = pytest.mark.slow

if shutil.which("vim") is None:  # Vim 9 is part of the test environment (see README)
    raise RuntimeError("these tests need vim (Vim 9) on PATH")


def setup(command, model=None, extra=""):
    lines = [f"let g:completer_command = {vim_string(command)}"]
    if model:
        lines.append(f"let g:completer_model = {vim_string(str(model))}")
    return "\n".join(lines) + "\n" + extra + "\nedit x.py\nset filetype=python\n"


# Poll(then): calls function `then` once a suggestion is shown; gives up after ~15 s.
POLL = """
let g:polls = 0
function Poll(then, timer) abort
  let g:polls += 1
  if completer#suggestion() != ''
    call timer_stop(a:timer)
    call call(a:then, [])
  elseif g:polls > 300
    call timer_stop(a:timer)
    let g:report.timeout = 1
    call feedkeys("\\<Esc>", 't')
  endif
endfunction
function Later(ms, F) abort
  call timer_start(a:ms, {-> call(a:F, [])})
endfunction
"""


def test_suggestion_shown_as_text_property_and_tab_accepts_it(tmp_path, tiny_checkpoint, completer_exe):
    script = setup(completer_exe, tiny_checkpoint) + POLL + """
function Shown() abort
  let g:report.suggestion = completer#suggestion()
  let g:report.props = prop_list(1, {'end_lnum': -1})
  let g:report.cursor = [line('.'), col('.')]
  call feedkeys("\\<Tab>", 't')
  call Later(50, 'Accepted')
endfunction
function Accepted() abort
  let g:report.buffer = getline(1, '$')
  let g:report.cursor_after = [line('.'), col('.')]
  call feedkeys("\\<Esc>", 't')
endfunction
call timer_start(50, function('Poll', ['Shown']), {'repeat': -1})
call feedkeys("idef foo", 'xt!')
let g:report.props_after_esc = prop_list(1, {'end_lnum': -1})
let g:report.status = completer#status()
call Finish()
"""
    r = run_vim(script, tmp_path)
    assert "timeout" not in r, r
    text = r["suggestion"]
    assert text, r
    lines = text.split("\n")
    # Grey virtual text: one property before the cursor column for the first line, one "below"
    # property per further line.
    props = r["props"]
    assert all(p["type"] == "completer_ghost" for p in props), props
    inline = [p for p in props if p["col"] == 8 and p["lnum"] == 1]
    assert len(inline) == (1 if lines[0] else 0), props
    assert len(props) == len(inline) + len(lines) - 1, props
    assert r["cursor"] == [1, 8]
    # Tab inserted exactly the suggestion, and the cursor is at its end.
    expected = ("def foo" + text).split("\n")
    assert r["buffer"] == expected
    assert r["cursor_after"] == [len(expected), len(expected[-1]) + 1]
    assert r["props_after_esc"] == []  # Esc cleared the ghost text
    status = r["status"]
    assert status["state"] == "running" and status["requests"] >= 1 and status["last_latency_ms"] > 0
    assert status["messages"] == 0 and not [m for m in r["messages"] if "completer:" in m]


def test_accept_word_then_moving_clears(tmp_path, tiny_checkpoint, completer_exe):
    script = setup(completer_exe, tiny_checkpoint) + POLL + """
function Shown() abort
  let g:report.suggestion = completer#suggestion()
  call feedkeys("\\<C-Right>", 't')
  call Later(30, 'Worded')
endfunction
function Worded() abort
  let g:report.line_after_word = getline(1, '$')
  let g:report.rest = completer#suggestion()
  call feedkeys("\\<Left>", 't')
  call Later(30, 'Moved')
endfunction
function Moved() abort
  let g:report.after_move = completer#suggestion()
  let g:report.props_after_move = prop_list(1, {'end_lnum': -1})
  call feedkeys("\\<Esc>", 't')
endfunction
call timer_start(50, function('Poll', ['Shown']), {'repeat': -1})
call feedkeys("iimport ", 'xt!')
call Finish()
"""
    r = run_vim(script, tmp_path)
    assert "timeout" not in r, r
    text = r["suggestion"]
    inserted = "\n".join(r["line_after_word"])[len("import "):]
    assert inserted and text.startswith(inserted), r
    # The rest of the suggestion stays on screen after accepting one word.
    assert r["rest"] == text[len(inserted):], r
    if r["rest"]:
        assert inserted.strip(), "a word was accepted, not only blanks"
    assert r["after_move"] == "" and r["props_after_move"] == []


def test_outstanding_request_cancelled_and_stale_answer_dropped(tmp_path, tiny_checkpoint, completer_exe):
    # The proxy holds every answer for 0.6 s, so typing on after the first request leaves it
    # outstanding: the plugin must cancel it, and never show its answer.
    command, log = proxy_command(tmp_path, completer_exe, delay=0.6)
    script = setup(command, tiny_checkpoint, "let g:completer_debounce_min = 0\nlet g:completer_debounce_max = 0")
    script += POLL + """
function Sent(timer) abort
  if completer#status().requests >= 1
    call timer_stop(a:timer)
    call feedkeys("oo", 't')
    call timer_start(50, function('Poll', ['Shown']), {'repeat': -1})
  endif
endfunction
function Shown() abort
  let g:report.suggestion = completer#suggestion()
  let g:report.props = prop_list(1)
  call feedkeys("\\<Esc>", 't')
endfunction
call timer_start(20, 'Sent', {'repeat': -1})
call feedkeys("idef f", 'xt!')
let g:report.status = completer#status()
call Finish()
"""
    r = run_vim(script, tmp_path)
    assert "timeout" not in r, r
    msgs = traffic(log)
    asked = [m["msg"] for m in msgs if m["dir"] == "in" and m["msg"].get("method") == "textDocument/inlineCompletion"]
    cancels = [m["msg"] for m in msgs if m["dir"] == "in" and m["msg"].get("method") == "$/cancelRequest"]
    answers = {m["msg"]["id"]: m["msg"] for m in msgs if m["dir"] == "out" and "id" in m["msg"]}
    assert len(asked) >= 2, asked
    first, last = asked[0], asked[-1]
    assert first["params"]["position"] == {"line": 0, "character": 5}
    assert last["params"]["position"] == {"line": 0, "character": 7}
    assert {"id": first["id"]} in [c["params"] for c in cancels], cancels
    # What is shown is the answer to the last request, at the cursor after "def foo".
    items = answers[last["id"]]["result"]["items"]
    assert r["suggestion"] == items[0]["insertText"]
    inline = [p["col"] for p in r["props"] if p["col"] < 1000]  # "below" properties sit past the end
    assert inline == ([8] if not r["suggestion"].startswith("\n") else [])
    # The first answer either came back cancelled (-32800) or was dropped as stale.
    first_answer = answers.get(first["id"], {})
    cancelled = first_answer.get("error", {}).get("code") == -32800
    assert cancelled or r["status"]["dropped"] >= 1, (first_answer, r["status"])


@pytest.mark.parametrize("broken", ["missing-executable", "server-dies"])
def test_broken_server_reported_once_and_vim_keeps_working(tmp_path, completer_exe, broken):
    if broken == "missing-executable":
        script = setup([str(tmp_path / "no-such-completer")])
    else:  # starts, then exits 2 at once: the model does not exist
        script = setup(completer_exe, tmp_path / "missing.safetensors")
    script += """
function Type(keys, then) abort
  call feedkeys(a:keys, 't')
  call timer_start(800, {-> call(a:then, [])})
endfunction
function Second() abort
  call Type("\\<Esc>oabc\\<Tab>x(", 'Done')
endfunction
function Done() abort
  call feedkeys("\\<Esc>", 't')
endfunction
call timer_start(800, {-> Second()})
call feedkeys("idef foo(", 'xt!')
let g:report.buffer = getline(1, '$')
let g:report.status = completer#status()
call Finish()
"""
    r = run_vim(script, tmp_path)
    reported = [m for m in r["messages"] if m.startswith("completer:")]
    assert len(reported) == 1, r["messages"]
    assert r["status"]["state"] in ("failed", "dead") and r["status"]["messages"] == 1
    if broken == "missing-executable":
        assert "cannot start the server" in reported[0] and "no-such-completer" in reported[0]
    else:
        assert "exited with code 2" in reported[0] and "missing.safetensors" in reported[0]
    # Typing went on normally, and Tab without a suggestion is a plain Tab.
    assert r["buffer"] == ["def foo(", "abc\tx("]
