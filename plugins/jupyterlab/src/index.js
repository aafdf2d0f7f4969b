// completer for JupyterLab, the page half: an inline completion provider (ghost text; Tab accepts)
// that sends the notebook's earlier code cells and the current cell, as they are now, to the
// server half (completer_jupyterlab/bridge.py), which asks `completer serve`. Plain JavaScript, so
// the build needs no TypeScript: @jupyterlab/builder bundles this file as a prebuilt extension.
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { Notification } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { URLExt } from '@jupyterlab/coreutils';

const CONTEXT_CHARS = 20000;  // of earlier cells; the model reads the last ~2,000 characters anyway

// The text the model continues: earlier code cells, then the current cell; the cursor's offset in it.
function document(request, widget) {
  const notebook = widget && widget.content;
  const active = notebook && notebook.activeCell;
  if (!active || !Array.isArray(notebook.widgets) || active.model.sharedModel.getSource() !== request.text) {
    return { text: request.text, offset: request.offset };  // a console, a file, or not the active cell
  }
  const earlier = [];
  for (const cell of notebook.widgets) {
    if (cell === active) break;
    if (cell.model.type === 'code') earlier.push(cell.model.sharedModel.getSource());
  }
  let before = earlier.length ? earlier.join('\n\n') + '\n\n' : '';
  if (before.length > CONTEXT_CHARS) {  // cut at a line start, so the kept context reads as code
    const cut = before.indexOf('\n', before.length - CONTEXT_CHARS);
    before = before.slice(cut + 1);
  }
  return { text: before + request.text, offset: before.length + request.offset };
}

class CompleterProvider {
  constructor() {
    this.identifier = 'completer';
    this.name = 'completer';
    this.said = new Set();  // each failure's message is shown once, not at every keystroke
  }

  async fetch(request, context) {
    const { text, offset } = document(request, context.widget);
    const path = (context.widget && context.widget.context && context.widget.context.path)
      || (context.widget && context.widget.id) || 'untitled';
    const settings = ServerConnection.makeSettings();
    let response, body;
    try {
      response = await ServerConnection.makeRequest(URLExt.join(settings.baseUrl, 'completer', 'inline'),
        { method: 'POST', body: JSON.stringify({ path, text, offset }) }, settings);
      body = await response.json();
    } catch (err) {
      this.tell(`completer: no answer from the Jupyter server (${err.message || err})`);
      return { items: [] };
    }
    if (!response.ok) {
      this.tell(body.error || body.message || `completer: the Jupyter server answered ${response.status}`
        + (response.status === 404 ? ' (is the completer_jupyterlab server extension enabled?)' : ''));
      return { items: [] };
    }
    if (!body.superseded) this.said.clear();  // the server answered: a later failure is news
    return { items: body.items.map(insertText => ({ insertText })) };
  }

  tell(message) {
    if (this.said.has(message)) return;
    this.said.add(message);
    console.error(message);
    Notification.error(message, { autoClose: false });
  }
}

export default {
  id: 'completer-jupyterlab:inline',
  description: 'Ghost text from completer serve',
  autoStart: true,
  requires: [ICompletionProviderManager],
  activate: (app, manager) => manager.registerInlineProvider(new CompleterProvider()),
};
