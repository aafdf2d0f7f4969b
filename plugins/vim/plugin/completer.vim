vim9script
# completer: ghost-text code completion from `completer serve`. See :help completer.

if exists('g:loaded_completer') || v:version < 900 || !has('channel') || !has('textprop')
  finish
endif
g:loaded_completer = 1

highlight default link CompleterSuggestion Comment

command! -bar CompleterEnable completer#core#Enable()
command! -bar CompleterDisable completer#core#Disable()
command! -bar CompleterStatus completer#core#EchoStatus()

inoremap <Plug>(completer-accept) <Cmd>call completer#accept()<CR>
inoremap <Plug>(completer-accept-word) <Cmd>call completer#accept_word()<CR>
inoremap <Plug>(completer-clear) <Cmd>call completer#clear()<CR>

if !get(g:, 'completer_no_maps', false)
  # Tab accepts a shown suggestion and is a plain Tab otherwise; same for Ctrl-Right and a word.
  if empty(maparg('<Tab>', 'i'))
    inoremap <silent><expr> <Tab> completer#core#TabKey("\<Tab>", 'accept')
  endif
  if empty(maparg('<C-Right>', 'i'))
    inoremap <silent><expr> <C-Right> completer#core#TabKey("\<C-Right>", 'accept_word')
  endif
endif

augroup completer
  autocmd!
  autocmd TextChangedI * completer#core#OnTextChangedI()
  autocmd CursorMovedI * completer#core#OnCursorMovedI()
  autocmd InsertLeave,BufLeave * completer#core#OnInsertLeave()
  autocmd BufDelete,BufWipeout * completer#core#Forget(str2nr(expand('<abuf>')))
  autocmd VimLeavePre * completer#core#Stop()
augroup END
