"""The interactive REPL (`completer`, `completer repl`): a prompt_toolkit prompt whose ghost text is
the model's continuation.

  session.py   the growing document and the current settings; the only module that calls the engine
  suggest.py   ghost text (AutoSuggest) and the Ctrl-Space menu (Completer), both off the UI thread
  editing.py   Python-aware Enter: auto-indent after ':', submit a complete statement
  keys.py      key bindings (accepting all, a word or a character of the suggestion; the menu)
  commands.py  `:mode`, `:decoder`, `:temp`, `:model`, `:reset`, `:save`, `:help`, `:quit`
  app.py       wires the PromptSession in one place and runs the read loop
"""
