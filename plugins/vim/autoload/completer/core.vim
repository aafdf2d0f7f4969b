vim9script
# completer for Vim 9: the implementation behind autoload/completer.vim and plugin/completer.vim.
#
# One `completer serve` job per Vim, spoken to in LSP framing through Vim's "lsp" channel mode.
# Buffers are synced with didOpen/didChange (full text); after typing pauses, a
# textDocument/inlineCompletion request is sent and its first item is shown as grey virtual text
# (a text property) at the cursor. See doc/completer.txt for the user-facing side.

const PROP = 'completer_ghost'
const RESTART_SECONDS = 60.0

var job: job
var chan: channel
var state = 'stopped'          # stopped | starting | running | failed | dead
var stopping = false           # true while we shut the server down on purpose
var last_start = -1000.0       # reltimefloat() of the last start attempt
var reported = false           # a failure message was shown for the current start attempt
var stderr_tail: list<string> = []
var position_encoding = 'utf-16'
var server_info: dict<any> = {}
var request_after_init = false

var docs: dict<number> = {}     # bufnr -> version last sent (present = opened on the server)
var synced_tick: dict<number> = {}  # bufnr -> b:changedtick last sent
var pending_id = 0             # id of the outstanding inlineCompletion request, 0 = none
var timer = 0
var last_key = 0.0             # time of the last TextChangedI
var gap_ema = 0.15             # moving average of the gap between changes, seconds
var last_latency_ms = -1.0
var requests = 0
var dropped = 0
var messages = 0               # messages shown to the user (one per failure)

# The suggestion on screen: {bufnr, lnum, col (bytes, 1-based), tick, text}; empty when none.
var sugg: dict<any> = {}

def Now(): float
  return reltimefloat(reltime())
enddef

def Opt(name: string, default: any): any
  return get(g:, 'completer_' .. name, default)
enddef

def Report(msg: string)
  # At most one message per start attempt: no error storm while the user types.
  if reported
    return
  endif
  reported = true
  messages += 1
  echohl WarningMsg
  echomsg 'completer: ' .. msg
  echohl None
enddef

# ---------------------------------------------------------------------------------------------
# The server job

def Command(): list<string>
  var cmd = Opt('command', 'completer')
  var argv: list<string> = type(cmd) == v:t_list ? copy(cmd) : split(cmd)
  argv += ['serve']
  var model = Opt('model', '')
  if !empty(model)
    argv += ['--model', expand(model)]
  endif
  return argv
enddef

def Start(): bool
  if state == 'running' || state == 'starting'
    return true
  endif
  if Now() - last_start < RESTART_SECONDS
    return false  # failed or died recently: stay quiet until a minute has passed
  endif
  last_start = Now()
  reported = false
  stderr_tail = []
  docs = {}
  synced_tick = {}
  pending_id = 0
  var argv = Command()
  if empty(argv) || !executable(argv[0])
    state = 'failed'
    Report('cannot start the server: ' .. (empty(argv) ? 'g:completer_command is empty' : argv[0] .. ' is not executable'))
    return false
  endif
  try
    job = job_start(argv, {
      in_mode: 'lsp', out_mode: 'lsp', err_mode: 'nl', noblock: true,
      err_cb: (_, line) => OnStderr(line),
      exit_cb: (_, code) => OnExit(code),
    })
  catch
    state = 'failed'
    Report('cannot start the server (' .. join(argv) .. '): ' .. v:exception)
    return false
  endtry
  if job_status(job) == 'fail'
    state = 'failed'
    Report('cannot start the server: ' .. join(argv))
    return false
  endif
  chan = job_getchannel(job)
  state = 'starting'
  var params = {
    processId: getpid(),
    clientInfo: {name: 'completer.vim', version: '0.1'},
    rootUri: v:null,
    capabilities: {
      general: {positionEncodings: ['utf-32', 'utf-8', 'utf-16']},
      textDocument: {synchronization: {dynamicRegistration: false}},
    },
    initializationOptions: {
      mode: Opt('mode', 'line'),
      decoder: Opt('decoder', 'greedy'),
      temperature: 0.0 + Opt('temperature', 1.0),
    },
  }
  ch_sendexpr(chan, {method: 'initialize', params: params}, {callback: (_, msg) => OnInitialized(msg)})
  return true
enddef

def OnInitialized(msg: dict<any>)
  if has_key(msg, 'error') || type(get(msg, 'result', v:null)) != v:t_dict
    Report('the server refused initialize: ' .. string(get(msg, 'error', msg)))
    Stop()
    state = 'failed'
    return
  endif
  var caps = get(msg.result, 'capabilities', {})
  position_encoding = get(caps, 'positionEncoding', 'utf-16')
  server_info = get(msg.result, 'serverInfo', {})
  state = 'running'
  ch_sendexpr(chan, {method: 'initialized', params: {}})
  if request_after_init
    request_after_init = false
    Schedule(0)
  endif
enddef

def OnStderr(line: string)
  add(stderr_tail, line)
  if len(stderr_tail) > 20
    remove(stderr_tail, 0)
  endif
enddef

def OnExit(code: number)
  var was = state
  state = stopping ? 'stopped' : 'dead'
  pending_id = 0
  docs = {}
  synced_tick = {}
  if !stopping && (was == 'running' || was == 'starting')
    var why = empty(stderr_tail) ? '' : ': ' .. stderr_tail[-1]
    Report(printf('the server exited with code %d%s (restarting at most once a minute)', code, why))
    Clear()
  endif
  stopping = false
enddef

export def Stop()
  if state != 'running' && state != 'starting'
    return
  endif
  stopping = true
  if state == 'running'
    # Polite LSP shutdown; the exit notification follows the shutdown answer.
    ch_sendexpr(chan, {method: 'shutdown'}, {callback: (_, _) => ch_sendexpr(chan, {method: 'exit'})})
    timer_start(1000, (_) => job_status(job) == 'run' ? job_stop(job) : 0)
  else
    job_stop(job)
  endif
enddef

# ---------------------------------------------------------------------------------------------
# Documents and requests

def Uri(bufnr: number): string
  var name = bufname(bufnr)
  if empty(name)
    return 'untitled:buffer' .. bufnr
  endif
  var path = fnamemodify(name, ':p')
  return 'file://' .. substitute(path, '[^A-Za-z0-9/._~-]', (m) => printf('%%%02X', char2nr(m[0])), 'g')
enddef

def BufferText(bufnr: number): string
  var text = join(getbufline(bufnr, 1, '$'), "\n")
  return getbufvar(bufnr, '&endofline') || getbufvar(bufnr, '&fixendofline') ? text .. "\n" : text
enddef

def Sync(bufnr: number)
  var tick = getbufvar(bufnr, 'changedtick')
  if !has_key(docs, bufnr)
    docs[bufnr] = 1
    ch_sendexpr(chan, {method: 'textDocument/didOpen', params: {textDocument: {
      uri: Uri(bufnr), languageId: getbufvar(bufnr, '&filetype'), version: 1, text: BufferText(bufnr)}}})
  elseif synced_tick[bufnr] != tick
    docs[bufnr] += 1
    ch_sendexpr(chan, {method: 'textDocument/didChange', params: {
      textDocument: {uri: Uri(bufnr), version: docs[bufnr]},
      contentChanges: [{text: BufferText(bufnr)}]}})
  endif
  synced_tick[bufnr] = tick
enddef

export def Forget(bufnr: number)
  if has_key(docs, bufnr) && state == 'running'
    ch_sendexpr(chan, {method: 'textDocument/didClose', params: {textDocument: {uri: Uri(bufnr)}}})
  endif
  if has_key(docs, bufnr)
    remove(docs, bufnr)
    remove(synced_tick, bufnr)
  endif
enddef

def Character(line: string, col: number): number
  # The cursor's column in the negotiated position encoding.
  var before = strpart(line, 0, col - 1)
  if position_encoding == 'utf-8'
    return len(before)
  endif
  var n = strcharlen(before)
  if position_encoding == 'utf-16'
    n += len(filter(str2list(before), (_, c) => c > 0xFFFF))
  endif
  return n
enddef

def Active(): bool
  if !Opt('enabled', true) || &buftype != ''
    return false
  endif
  var fts = Opt('filetypes', ['python'])
  return index(fts, '*') >= 0 || index(fts, &filetype) >= 0
enddef

def Cancel()
  if pending_id != 0 && state == 'running'
    ch_sendexpr(chan, {method: '$/cancelRequest', params: {id: pending_id}})
  endif
  pending_id = 0
enddef

def Request()
  timer = 0
  if mode() !~# '^i' || !Active()
    return
  endif
  if !Start()
    return
  endif
  if state == 'starting'
    request_after_init = true
    return
  endif
  var bufnr = bufnr()
  Sync(bufnr)
  Cancel()
  var lnum = line('.')
  var col = col('.')
  var ctx = {bufnr: bufnr, lnum: lnum, col: col, tick: b:changedtick, sent: Now()}
  var params = {
    textDocument: {uri: Uri(bufnr)},
    position: {line: lnum - 1, character: Character(getline(lnum), col)},
    context: {triggerKind: 2},
  }
  requests += 1
  var sent = ch_sendexpr(chan, {method: 'textDocument/inlineCompletion', params: params},
                         {callback: (_, msg) => OnAnswer(ctx, msg)})
  pending_id = get(sent, 'id', 0)
  ctx.id = pending_id
enddef

def OnAnswer(ctx: dict<any>, msg: dict<any>)
  if get(ctx, 'id', -1) == pending_id
    pending_id = 0
  endif
  last_latency_ms = (Now() - ctx.sent) * 1000.0
  if has_key(msg, 'error')
    if get(msg.error, 'code', 0) != -32800  # -32800: cancelled by us, expected
      Report('completion failed: ' .. get(msg.error, 'message', string(msg.error)))
    endif
    return
  endif
  # Stale: the buffer changed or the cursor moved since the request was sent.
  if bufnr() != ctx.bufnr || b:changedtick != ctx.tick || line('.') != ctx.lnum
      || col('.') != ctx.col || mode() !~# '^i'
    dropped += 1
    return
  endif
  var result = get(msg, 'result', v:null)
  var items = type(result) == v:t_dict ? get(result, 'items', []) : type(result) == v:t_list ? result : []
  if empty(items)
    return
  endif
  var text = ItemText(items[0], ctx)
  if !empty(text)
    Show(ctx.bufnr, ctx.lnum, ctx.col, text)
  endif
enddef

def ItemText(item: dict<any>, ctx: dict<any>): string
  var text = get(item, 'insertText', '')
  if type(text) == v:t_dict
    text = get(text, 'value', '')
  endif
  # The item may replace a range that starts before the cursor (e.g. the word being typed):
  # what is already typed is not shown again.
  if has_key(item, 'range') && item.range.start.line == ctx.lnum - 1
    var line = getline(ctx.lnum)
    var typed_chars = Character(line, ctx.col) - item.range.start.character
    if typed_chars > 0
      var typed = strpart(line, 0, ctx.col - 1)->strcharpart(strcharlen(strpart(line, 0, ctx.col - 1)) - typed_chars)
      if stridx(text, typed) == 0
        text = strpart(text, len(typed))
      endif
    endif
  endif
  return text
enddef

def Schedule(delay: number)
  if timer != 0
    timer_stop(timer)
  endif
  timer = timer_start(delay, (_) => Request())
enddef

# Adaptive debounce: wait a little longer than the user's recent gap between keystrokes, so a
# fast typist is not interrupted by a request per key and a slow one is not kept waiting.
def Debounce(): number
  var lo = Opt('debounce_min', 40)
  var hi = Opt('debounce_max', 250)
  return min([hi, max([lo, float2nr(gap_ema * 1200.0)])])
enddef

# ---------------------------------------------------------------------------------------------
# Ghost text

def Show(bufnr: number, lnum: number, col: number, text: string)
  Clear()
  var lines = split(substitute(text, "\t", repeat(' ', &tabstop), 'g'), "\n", true)
  if !empty(lines[0])
    prop_add(lnum, col, {type: PROP, text: lines[0], bufnr: bufnr})
  endif
  for extra in lines[1 :]
    prop_add(lnum, 0, {type: PROP, text: empty(extra) ? ' ' : extra, text_align: 'below', bufnr: bufnr})
  endfor
  sugg = {bufnr: bufnr, lnum: lnum, col: col, tick: getbufvar(bufnr, 'changedtick'), text: text}
enddef

export def Clear()
  if !empty(sugg) && bufexists(sugg.bufnr)
    prop_remove({type: PROP, bufnr: sugg.bufnr, all: true})
  endif
  sugg = {}
enddef

export def Suggestion(): string
  return empty(sugg) ? '' : sugg.text
enddef

def Insert(text: string)
  var lnum = line('.')
  var col = col('.')
  var line = getline(lnum)
  var parts = split(text, "\n", true)
  var last_len = len(parts[-1]) + (len(parts) == 1 ? col - 1 : 0)
  parts[0] = strpart(line, 0, col - 1) .. parts[0]
  parts[-1] = parts[-1] .. strpart(line, col - 1)
  setline(lnum, parts[0])
  if len(parts) > 1
    append(lnum, parts[1 :])
  endif
  cursor(lnum + len(parts) - 1, last_len + 1)
enddef

# Accepts the whole suggestion; false when none is shown.
export def Accept(): bool
  if empty(sugg)
    return false
  endif
  var text = sugg.text
  Clear()
  Insert(text)
  return true
enddef

# Accepts the next word (leading space plus a run of keyword or of other non-blank characters);
# the rest stays on screen.
export def AcceptWord(): bool
  if empty(sugg)
    return false
  endif
  var text = sugg.text
  var word = matchstr(text, '^\_s*\%(\k\+\|\%(\k\@!\S\)\+\)')
  if empty(word)
    word = text
  endif
  var rest = strpart(text, len(word))
  var bufnr = sugg.bufnr
  Clear()
  Insert(word)
  if !empty(rest)
    Show(bufnr, line('.'), col('.'), rest)
  endif
  return true
enddef

# For the insert-mode mappings: accept if a suggestion is shown, else the key's usual meaning.
export def TabKey(fallback: string, what: string): string
  if empty(sugg)
    return fallback
  endif
  return "\<Cmd>call completer#" .. what .. "()\<CR>"
enddef

# ---------------------------------------------------------------------------------------------
# Events (autocommands in plugin/completer.vim)

export def OnTextChangedI()
  var now = Now()
  var gap = now - last_key
  last_key = now
  if gap < 1.0
    gap_ema = 0.7 * gap_ema + 0.3 * gap
  endif
  if !Active()
    return
  endif
  if !empty(sugg) && sugg.tick == b:changedtick
    return  # our own insertion (accept word) already re-showed the rest
  endif
  # Typing the suggestion's own next characters keeps the rest of it on screen.
  if !empty(sugg) && sugg.bufnr == bufnr() && sugg.lnum == line('.') && col('.') > sugg.col
    var typed = strpart(getline('.'), sugg.col - 1, col('.') - sugg.col)
    if stridx(sugg.text, typed) == 0 && len(typed) < len(sugg.text)
      Show(bufnr(), line('.'), col('.'), strpart(sugg.text, len(typed)))
      return
    endif
  endif
  Clear()
  Cancel()
  Schedule(Debounce())
enddef

export def OnCursorMovedI()
  # Moving without editing clears; an edit also moves the cursor, TextChangedI handles that.
  if !empty(sugg) && sugg.tick == b:changedtick && (line('.') != sugg.lnum || col('.') != sugg.col)
    Clear()
  endif
enddef

export def OnInsertLeave()
  if timer != 0
    timer_stop(timer)
    timer = 0
  endif
  Cancel()
  Clear()
enddef

# ---------------------------------------------------------------------------------------------
# Commands

export def Enable()
  g:completer_enabled = true
enddef

export def Disable()
  g:completer_enabled = false
  OnInsertLeave()
  Stop()
enddef

export def Status(): dict<any>
  return {
    enabled: Opt('enabled', true), state: state, command: Command(),
    model: empty(Opt('model', '')) ? '(shipped default)' : Opt('model', ''),
    server: server_info, position_encoding: position_encoding,
    mode: Opt('mode', 'line'), decoder: Opt('decoder', 'greedy'), temperature: Opt('temperature', 1.0),
    last_latency_ms: last_latency_ms, requests: requests, dropped: dropped, debounce_ms: Debounce(),
    messages: messages, stderr: stderr_tail,
  }
enddef

export def EchoStatus()
  var s = Status()
  echo printf('completer: %s, server %s, model %s', s.enabled ? 'enabled' : 'disabled', s.state, s.model)
  echo printf('  mode %s, decoder %s, temperature %s, debounce %d ms', s.mode, s.decoder,
              s.temperature, s.debounce_ms)
  echo printf('  last latency %s, %d requests, %d stale answers dropped',
              s.last_latency_ms < 0 ? 'n/a' : printf('%.1f ms', s.last_latency_ms), s.requests, s.dropped)
  if !empty(s.stderr)
    echo '  server stderr: ' .. s.stderr[-1]
  endif
enddef

if empty(prop_type_get(PROP))
  prop_type_add(PROP, {highlight: 'CompleterSuggestion'})
endif
