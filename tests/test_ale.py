"""Vim's ALE (Debian's vim-ale; .ci/run installs it) with the linter definition of
plugins/README.md: ALE starts `completer serve` itself and its completion popup shows the
model's items in the model's order (the bigram of test_emacs_tmux: "zabde" 90% first)."""
from pathlib import Path

import pytest

from completer.engine import Engine, Request
from editor_harness import run_vim, vim_string
from test_emacs_tmux import MENU_RULES
from test_repl import make_bigram_checkpoint

ALE = Path("/usr/share/vim-ale")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not ALE.is_dir(), reason="vim-ale is not installed (.ci/run installs it)")]


def test_ale_completion_popup_in_the_models_order(tmp_path, completer_exe):
    model = make_bigram_checkpoint(tmp_path / "menu.safetensors", MENU_RULES)
    command = " ".join(completer_exe[1:] + ["serve", "--model", str(model), "--no-memory"])  # compared with the network
    script = f"""
let g:completer_enabled = 0            " ALE alone, not completer's own Vim plugin
let g:ale_completion_enabled = 1
let &rtp = {vim_string(str(ALE))} .. ',' .. &rtp
runtime plugin/ale.vim
" --- the recipe of plugins/README.md ---
call ale#linter#Define('python', {{
\\   'name': 'completer',
\\   'lsp': 'stdio',
\\   'executable': {vim_string(completer_exe[0])},
\\   'command': '%e {command}',
\\   'project_root': {{buffer -> fnamemodify(bufname(buffer), ':p:h')}},
\\ }})
let g:ale_linters = {{'python': ['completer']}}
" ---
set completeopt=menuone,noinsert,noselect
edit x.py
setf python
call setline(1, ['import os', ''])
function! Poll(t) abort
  let info = complete_info(['items', 'pum_visible'])
  if info.pum_visible
    let g:report.items = map(copy(info.items), 'v:val.word')
    let g:report.menu = map(copy(info.items), 'v:val.menu')
    call timer_stop(a:t)
    call Finish()
  endif
endfunction
call timer_start(50, 'Poll', {{'repeat': -1}})
call timer_start(12000, {{-> Finish()}})
call feedkeys('Goza', 't')
"""
    r = run_vim(script, tmp_path)
    want = []
    for c in Engine.from_checkpoint(model).complete_text(
            "import os\nza", Request(mode="token", decoder="beam", n=5, beam=5)):
        if c.text and "za" + c.text not in want:
            want.append("za" + c.text)
    assert r.get("items") == want and want[0] == "zabde", r
    assert r["menu"][0] == "90.0%" and not r["messages"], r
