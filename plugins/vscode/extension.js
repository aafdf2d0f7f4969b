// completer for VS Code: starts `completer serve` for Python files through vscode-languageclient,
// which turns the server's textDocument/inlineCompletion into VS Code's ghost text and its
// textDocument/completion into the suggest menu by itself. This file adds the settings, a status
// item (model, last ghost-text latency) and one clear message for each way the server can fail.
'use strict';
const vscode = require('vscode');
const { LanguageClient, CloseAction, ErrorAction, State } = require('vscode-languageclient/node');

const RESTART_KEYS = ['completer.command', 'completer.model'];  // the rest are sent live
let client, status, output;
let run = { started: false, stopping: false };  // the current client's life: what `closed` reports

// The extension says each failure once itself (fail()); languageclient would also pop up its own
// notifications for the same event ("couldn't create connection to server", "Server initialization
// failed", its raw error), two or three for one cause. They still go to Output > completer.
class Client extends LanguageClient {
  error(message, data) { super.error(message, data, false); }
}

function settings() {
  const c = vscode.workspace.getConfiguration('completer');
  // the names `completer serve` reads (completer/server/handlers.py SETTINGS)
  return { model: c.get('model'), memory: c.get('memory'), threshold: c.get('threshold'),
           gate: c.get('gate'), budgetMs: c.get('budgetMs') };
}

function show(text, tooltip) {
  status.text = text;
  status.tooltip = tooltip;
  status.show();
}

function modelName() {
  const m = settings().model;
  return m ? m.split(/[\\/]/).filter(Boolean).pop() : 'shipped model';
}

function fail(message) {  // one message per failure, in the window and in the status bar
  show('$(error) completer', message);
  vscode.window.showErrorMessage(message);
}

async function start() {
  const [command, ...args] = vscode.workspace.getConfiguration('completer').get('command');
  const initializationOptions = settings();
  const life = run = { started: false, stopping: false };
  client = new Client('completer', 'completer', { command, args }, {
    documentSelector: [{ scheme: 'file', language: 'python' }, { scheme: 'untitled', language: 'python' }],
    initializationOptions,
    outputChannel: output,  // the server's stderr (its log) lands here
    // settings changes arrive as workspace/didChangeConfiguration {settings: {completer: {...}}}
    synchronize: { configurationSection: 'completer' },
    // a failed initialize (a model that does not load): no retry; start() below says why
    initializationFailedHandler: () => false,
    errorHandler: {
      error: () => ({ action: ErrorAction.Continue }),
      closed: () => {
        // the client's default restarts a crashing server 4 times; one message and a restart
        // command are clearer than a loop that ends in the same place. A server that closes while
        // starting is start()'s failure (the client kills it after a failed initialize), said there.
        if (life.started && !life.stopping) fail('completer: the server exited (its log: Output > completer). Run "completer: Restart the server" to start it again.');
        return { action: CloseAction.DoNotRestart, handled: true };
      },
    },
    middleware: {
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const t0 = Date.now();
        const result = await next(document, position, context, token);
        if (!token.isCancellationRequested) show(`$(sparkle) ${modelName()} ${Date.now() - t0} ms`,
          'completer: the model and the last ghost-text request\'s round trip');
        return result;
      },
    },
  });
  show(`$(loading~spin) ${modelName()}`, 'completer: starting the server');
  try {
    await client.start();
    life.started = true;
    show(`$(sparkle) ${modelName()}`, 'completer: ready');
  } catch (err) {
    const why = String(err && err.message || err);
    if (err && err.code === 'ENOENT' || /ENOENT/.test(why)) {
      fail(`completer: command not found: ${command} (install completer, or set "completer.command")`);
    } else {
      // e.g. the model does not load: initialize answers with the server's one-line reason
      fail(`completer: the server did not start: ${why}`);
    }
  }
}

async function stop() {
  if (!client) return;
  run.stopping = true;
  try { if (client.state !== State.Stopped) await client.stop(2000); } catch (_) { /* already gone */ }
  client = undefined;
}

async function restart() {
  await stop();
  await start();
}

function activate(context) {
  output = vscode.window.createOutputChannel('completer', { log: true });  // languageclient 11 logs through its LogOutputChannel API
  status = vscode.window.createStatusBarItem('completer.status', vscode.StatusBarAlignment.Right, 100);
  status.name = 'completer';
  context.subscriptions.push(output, status,
    vscode.commands.registerCommand('completer.restart', restart),
    vscode.workspace.onDidChangeConfiguration(e => {
      if (RESTART_KEYS.some(k => e.affectsConfiguration(k))) restart();
    }));
  return start();
}

// VS Code calls this when the window closes: `shutdown` + `exit`, so no server is left behind
// (if the extension host dies instead, the server sees its stdin close and exits too)
function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
