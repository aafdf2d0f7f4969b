--- completer for Neovim (0.7+): ghost-text completion from `completer serve` through vim.lsp.
---
---   require('completer').setup{ cmd = {'completer'}, model = nil, filetypes = {'python'} }
---
--- Neovim 0.10+ draws the suggestion inline at the cursor; 0.7-0.9 (Debian 12 ships 0.7.2) have no
--- inline virtual text, so there it is drawn over the empty space after the end of the line when
--- the cursor is there, and after the line's end otherwise. Older Neovims get one message.
--- The server is an ordinary LSP client of vim.lsp (one per Neovim), so buffers are synced by
--- Neovim itself and the completion menu (`textDocument/completion`, <C-x><C-o>) comes for free.
--- On top of it this module asks `textDocument/inlineCompletion` after typing pauses and shows the
--- first item as an inline extmark; Tab accepts it, <C-Right> accepts a word. See doc/completer.txt
--- in plugins/vim for the behaviour both plugins share.
local M = {}
local uv = vim.uv or vim.loop                     -- vim.uv is 0.10+
local INLINE = vim.fn.has('nvim-0.10') == 1       -- virt_text_pos = 'inline'
local SUPPORTED = vim.fn.has('nvim-0.7') == 1
local METHODS = vim.fn.has('nvim-0.11') == 1      -- client:request(...); before, client.request(...)

--- Calls the LSP client's method `name` the way this Neovim defines it.
local function call(c, name, ...)
  if METHODS then return c[name](c, ...) end
  return c[name](...)
end

local ns = vim.api.nvim_create_namespace('completer')
local RESTART_SECONDS = 60

local defaults = {
  cmd = { 'completer' },     -- the command before `serve`
  model = nil,               -- checkpoint path; nil = the shipped model
  mode = 'line',
  decoder = 'greedy',
  temperature = 1.0,
  filetypes = { 'python' },  -- '*' for every filetype
  debounce_min = 40,         -- ms; the debounce adapts to typing speed between these bounds
  debounce_max = 250,
  keymaps = { accept = '<Tab>', accept_word = '<C-Right>' },  -- false to map nothing
  menu_autotrigger = false,  -- pop the completion menu on trigger characters too
}

local config = vim.deepcopy(defaults)
local st = {
  enabled = true,
  client_id = nil,
  stopping = false,
  last_start = -math.huge,
  reported = false,
  messages = 0,
  pending = nil,        -- id of the outstanding inlineCompletion request
  timer = nil,
  last_key = 0,
  gap_ema = 0.15,       -- seconds between changes, moving average
  last_latency_ms = nil,
  requests = 0,
  dropped = 0,
  sugg = nil,           -- { buf, row, col (0-based bytes), tick, text }
}

local function now() return uv.hrtime() / 1e9 end

local function report(msg)
  -- One message per start attempt: no error storm while the user types.
  if st.reported then return end
  st.reported = true
  st.messages = st.messages + 1
  vim.notify('completer: ' .. msg, vim.log.levels.WARN)
end

local function active(buf)
  if not st.enabled or vim.bo[buf].buftype ~= '' then return false end
  local ft = vim.bo[buf].filetype
  return vim.tbl_contains(config.filetypes, '*') or vim.tbl_contains(config.filetypes, ft)
end

local function client()
  return st.client_id and vim.lsp.get_client_by_id(st.client_id) or nil
end

local function command()
  local cmd = type(config.cmd) == 'string' and vim.split(config.cmd, ' ', { trimempty = true })
    or vim.deepcopy(config.cmd)
  table.insert(cmd, 'serve')
  if config.model then vim.list_extend(cmd, { '--model', vim.fn.expand(config.model) }) end
  return cmd
end

--- vim.lsp.start (0.8+) or, on 0.7, start_client + buf_attach_client; returns the client id.
local function start_client(conf, buf)
  if vim.lsp.start then return vim.lsp.start(conf, { bufnr = buf, silent = true }) end
  local id = vim.lsp.start_client(conf)
  if id then vim.lsp.buf_attach_client(buf, id) end
  return id
end

local request  -- defined below; on_init asks it again when typing came before the server was up

--- Attaches `buf` to the server, starting it if needed (at most once a minute after a failure).
local function attach(buf)
  local c = client()
  if c then
    if not call(c, 'is_stopped') then
      vim.lsp.buf_attach_client(buf, c.id)
      return c
    end
  end
  if now() - st.last_start < RESTART_SECONDS then return nil end
  st.last_start, st.reported, st.client_id = now(), false, nil
  local cmd = command()
  if vim.fn.executable(cmd[1]) ~= 1 then
    report('cannot start the server: ' .. table.concat(cmd, ' '))
    return nil
  end
  st.client_id = start_client({
    name = 'completer',
    cmd = cmd,
    root_dir = vim.fn.getcwd(),
    init_options = { mode = config.mode, decoder = config.decoder, temperature = config.temperature },
    -- 0.7 counts in UTF-16 whatever the server answers: before 0.10, offer only the default (UTF-16)
    capabilities = INLINE and vim.tbl_deep_extend('force', vim.lsp.protocol.make_client_capabilities(),
      { general = { positionEncodings = { 'utf-32', 'utf-8', 'utf-16' } } })
      or vim.lsp.protocol.make_client_capabilities(),
    on_init = function()
      if st.request_after_init then
        st.request_after_init = false
        vim.schedule(request)
      end
    end,
    on_attach = function(cl, b)
      if vim.lsp.completion and vim.lsp.completion.enable then
        vim.lsp.completion.enable(true, cl.id, b, { autotrigger = config.menu_autotrigger })
      elseif vim.bo[b].omnifunc == '' then
        vim.bo[b].omnifunc = 'v:lua.vim.lsp.omnifunc'  -- what 0.8+ sets itself: <C-x><C-o> opens the menu
      end
    end,
    on_exit = function(code, signal)
      local stopping = st.stopping
      st.stopping, st.pending = false, nil
      vim.schedule(M.clear)
      -- Neovim itself warns once when a client quits with a non-zero code; add nothing then.
      if not stopping and code == 0 and (signal == 0 or signal == 15) then
        report('the server exited (restarting at most once a minute)')
      elseif not stopping then
        st.reported = true
        st.messages = st.messages + 1
      end
    end,
  }, buf)
  if not st.client_id then report('cannot start the server: ' .. table.concat(cmd, ' ')) end
  return client()
end

-- ---------------------------------------------------------------------------------------------
-- Ghost text

function M.clear()
  if st.sugg and vim.api.nvim_buf_is_valid(st.sugg.buf) then
    vim.api.nvim_buf_clear_namespace(st.sugg.buf, ns, 0, -1)
  end
  st.sugg = nil
end

local function show(buf, row, col, text)
  M.clear()
  local lines = vim.split(text:gsub('\t', string.rep(' ', vim.bo[buf].tabstop)), '\n', { plain = true })
  local virt_lines = {}
  for i = 2, #lines do virt_lines[#virt_lines + 1] = { { lines[i], 'CompleterSuggestion' } } end
  local pos = 'inline'
  if not INLINE then  -- overlay covers the cells after the cursor: only where there are none
    pos = col >= #(vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or '') and 'overlay' or 'eol'
  end
  vim.api.nvim_buf_set_extmark(buf, ns, row, col, {
    virt_text = lines[1] ~= '' and { { lines[1], 'CompleterSuggestion' } } or nil,
    virt_text_pos = pos,
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
  st.sugg = { buf = buf, row = row, col = col, tick = vim.b[buf].changedtick, text = text }
end

--- The suggestion currently shown, '' when none.
function M.suggestion()
  return st.sugg and st.sugg.text or ''
end

local function insert(text)
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local lines = vim.split(text, '\n', { plain = true })
  vim.api.nvim_buf_set_text(0, row - 1, col, row - 1, col, lines)
  local last = #lines == 1 and col + #lines[1] or #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { row + #lines - 1, last })
end

--- Inserts the whole suggestion; false when none is shown.
function M.accept()
  if not st.sugg then return false end
  local text = st.sugg.text
  M.clear()
  insert(text)
  return true
end

--- Inserts the suggestion's next word; the rest stays shown.
function M.accept_word()
  if not st.sugg then return false end
  local text, buf = st.sugg.text, st.sugg.buf
  local word = vim.fn.matchstr(text, [[^\_s*\%(\k\+\|\%(\k\@!\S\)\+\)]])
  if word == '' then word = text end
  M.clear()
  insert(word)
  local rest = text:sub(#word + 1)
  if rest ~= '' then
    local row, col = unpack(vim.api.nvim_win_get_cursor(0))
    show(buf, row - 1, col, rest)
  end
  return true
end

-- ---------------------------------------------------------------------------------------------
-- Requests

local function cancel()
  local c = client()
  if st.pending and c then call(c, 'cancel_request', st.pending) end
  st.pending = nil
end

local function item_text(item)
  local text = item.insertText
  if type(text) == 'table' then text = text.value end
  return type(text) == 'string' and text or ''
end

request = function()
  local buf = vim.api.nvim_get_current_buf()
  if not vim.api.nvim_get_mode().mode:match('^i') or not active(buf) then return end
  local c = attach(buf)
  if not c then return end
  if not c.initialized then
    st.request_after_init = true  -- asked again from on_init
    return
  end
  cancel()
  local win = vim.api.nvim_get_current_win()
  local params = vim.lsp.util.make_position_params(win, c.offset_encoding)
  params.context = { triggerKind = 2 }  -- Automatic: the server answers in `mode`
  local row, col = unpack(vim.api.nvim_win_get_cursor(win))
  local tick, sent = vim.b[buf].changedtick, now()
  st.requests = st.requests + 1
  local ok, id
  ok, id = call(c, 'request', 'textDocument/inlineCompletion', params, function(err, result)
    if st.pending == id then st.pending = nil end
    st.last_latency_ms = (now() - sent) * 1000
    if err then
      if err.code ~= -32800 then report('completion failed: ' .. (err.message or vim.inspect(err))) end
      return
    end
    local r, cc = unpack(vim.api.nvim_win_get_cursor(0))
    -- Stale: the buffer changed or the cursor moved since the request was sent.
    if vim.api.nvim_get_current_buf() ~= buf or vim.b[buf].changedtick ~= tick or r ~= row or cc ~= col
        or not vim.api.nvim_get_mode().mode:match('^i') then
      st.dropped = st.dropped + 1
      return
    end
    local items = result and (result.items or result) or {}
    local text = items[1] and item_text(items[1]) or ''
    if text ~= '' then show(buf, row - 1, col, text) end
  end, buf)
  if ok then st.pending = id end
end

-- Adaptive debounce: a little longer than the user's recent gap between keystrokes.
local function debounce()
  return math.min(config.debounce_max, math.max(config.debounce_min, math.floor(st.gap_ema * 1200)))
end

local function schedule(delay)
  if st.timer then st.timer:stop() else st.timer = uv.new_timer() end
  st.timer:start(delay, 0, vim.schedule_wrap(request))
end

local function on_text_changed(ev)
  local t = now()
  local gap = t - st.last_key
  st.last_key = t
  if gap < 1 then st.gap_ema = 0.7 * st.gap_ema + 0.3 * gap end
  if not active(ev.buf) then return end
  local s = st.sugg
  if s and s.tick == vim.b[ev.buf].changedtick then return end  -- our own insertion
  -- Typing the suggestion's own next characters keeps the rest of it on screen.
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  if s and s.buf == ev.buf and s.row == row - 1 and col > s.col then
    local typed = vim.api.nvim_get_current_line():sub(s.col + 1, col)
    if s.text:sub(1, #typed) == typed and #typed < #s.text then
      show(ev.buf, row - 1, col, s.text:sub(#typed + 1))
      return
    end
  end
  M.clear()
  cancel()
  schedule(debounce())
end

local function on_cursor_moved(ev)
  local s = st.sugg
  if s and s.tick == vim.b[ev.buf].changedtick then
    local row, col = unpack(vim.api.nvim_win_get_cursor(0))
    if row - 1 ~= s.row or col ~= s.col then M.clear() end
  end
end

local function on_insert_leave()
  if st.timer then st.timer:stop() end
  cancel()
  M.clear()
end

-- ---------------------------------------------------------------------------------------------
-- Commands and setup

function M.enable() st.enabled = true end

function M.disable()
  st.enabled = false
  on_insert_leave()
  local c = client()
  if c then
    st.stopping = true
    call(c, 'stop')
  end
end

function M.status()
  local c = client()
  return {
    enabled = st.enabled,
    state = c and (call(c, 'is_stopped') and 'stopped' or c.initialized and 'running' or 'starting')
      or (st.messages > 0 and 'failed' or 'stopped'),
    command = command(),
    model = config.model or '(shipped default)',
    mode = config.mode, decoder = config.decoder, temperature = config.temperature,
    last_latency_ms = st.last_latency_ms, requests = st.requests, dropped = st.dropped,
    debounce_ms = debounce(), messages = st.messages,
  }
end

local function echo_status()
  local s = M.status()
  print(('completer: %s, server %s, model %s; mode %s, decoder %s, temperature %s; last latency %s, '
    .. '%d requests, %d stale answers dropped'):format(s.enabled and 'enabled' or 'disabled', s.state,
    s.model, s.mode, s.decoder, s.temperature,
    s.last_latency_ms and ('%.1f ms'):format(s.last_latency_ms) or 'n/a', s.requests, s.dropped))
end

local function map(lhs, fn)
  vim.keymap.set('i', lhs, function()
    if st.sugg then return ('<Cmd>lua require("completer").%s()<CR>'):format(fn) end
    return lhs
  end, { expr = true, silent = true, desc = 'completer: ' .. fn })
end

function M.setup(opts)
  if not SUPPORTED then
    vim.notify('completer: needs Neovim 0.7 or newer (this is ' .. tostring(vim.version and
      vim.version() and ('%d.%d'):format(vim.version().major, vim.version().minor) or 'older') .. ')',
      vim.log.levels.WARN)
    return
  end
  config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  if opts and opts.filetypes then config.filetypes = opts.filetypes end  -- replace, not merge
  vim.cmd('highlight default link CompleterSuggestion Comment')
  local group = vim.api.nvim_create_augroup('completer', { clear = true })
  vim.api.nvim_create_autocmd('FileType', { group = group, callback = function(ev)
    if active(ev.buf) then attach(ev.buf) end
  end })
  vim.api.nvim_create_autocmd('TextChangedI', { group = group, callback = on_text_changed })
  vim.api.nvim_create_autocmd('CursorMovedI', { group = group, callback = on_cursor_moved })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, { group = group, callback = on_insert_leave })
  vim.api.nvim_create_user_command('CompleterEnable', M.enable, {})
  vim.api.nvim_create_user_command('CompleterDisable', M.disable, {})
  vim.api.nvim_create_user_command('CompleterStatus', echo_status, {})
  if config.keymaps then
    if config.keymaps.accept then map(config.keymaps.accept, 'accept') end
    if config.keymaps.accept_word then map(config.keymaps.accept_word, 'accept_word') end
  end
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) and active(buf) then attach(buf) end
  end
end

return M
