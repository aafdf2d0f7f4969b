" completer: the public functions (documented in doc/completer.txt), with the lower-case names
" Vim users expect. Vim 9 script only allows capitalised exports, so the work is done in the
" Vim 9 script autoload/completer/core.vim.

" The suggestion currently shown as ghost text, '' when none.
function completer#suggestion() abort
  return completer#core#Suggestion()
endfunction

" Insert the whole suggestion; returns v:false when none is shown.
function completer#accept() abort
  return completer#core#Accept()
endfunction

" Insert the suggestion's next word; the rest stays shown.
function completer#accept_word() abort
  return completer#core#AcceptWord()
endfunction

" Clear the suggestion.
function completer#clear() abort
  call completer#core#Clear()
endfunction

" Server state, options and figures as a Dict (what :CompleterStatus prints).
function completer#status() abort
  return completer#core#Status()
endfunction
