"""Recurrent cells, one module each: init, step, window forward and window backward side by side.

Cells are looked up by name through the registry (`completer.registry`), never imported here, so
plugin cells and built-ins are found the same way.
"""
