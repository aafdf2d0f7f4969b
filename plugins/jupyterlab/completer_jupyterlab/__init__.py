"""completer for JupyterLab: ghost text in notebooks from `completer serve`.

Two halves in one pip package: a prebuilt JupyterLab extension (src/index.js, installed under
share/jupyter/labextensions/completer-jupyterlab) that registers an inline completion provider,
and this jupyter-server extension, which runs one `completer serve` per Jupyter server and answers
the provider's POST /completer/inline (completer_jupyterlab.bridge). Enabled by the
jupyter_server_config.d file the package installs; settings: `c.Completer.command`, `.model`,
`.memory`, `.threshold`, `.budget_ms` in jupyter_server_config.py (see plugins/README.md).
"""
__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "completer-jupyterlab"}]


def _jupyter_server_extension_points():
    return [{"module": "completer_jupyterlab"}]


def _load_jupyter_server_extension(serverapp):
    from completer_jupyterlab.bridge import setup

    setup(serverapp)
