"""Registry of named components: cells and decoders, found through entry points.

Built-ins are plugins. completer's own pyproject.toml declares `lstm`, `gru`, `rnn` under the
`completer.cells` group and its decoders under `completer.decoders`, exactly as a third-party
distribution does (see plugins/completer-mgu). Loading is lazy and per name, so asking for
`lstm` imports one module; listing everything imports every plugin.

Extension points (what an entry point must name):
  completer.cells     a subclass of `completer.cells.base.Cell`
  completer.decoders         a subclass of `completer.engine.decoders.Decoder`

A plugin that fails to import is reported by name, distribution and error, and never stops the
others. Entry points are read from the dist-info/egg-info folders on sys.path as importlib.metadata
finds them (the first distribution of a name wins), without importing it: its import and the parse
of every distribution's METADATA cost ~90 ms of a 300 ms start to the first completion. `COMPLETER_PLUGINS=a,b` restricts third-party plugins to those component or
distribution names (`COMPLETER_PLUGINS=` with nothing loads none); built-ins always load.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from dataclasses import dataclass, field

from completer.errors import CompleterError

GROUPS = {"cell": "completer.cells", "decoder": "completer.decoders"}
BUILTIN = "completer"


@dataclass
class Component:
    kind: str
    name: str
    target: str  # "module:attr", or "<runtime>" for register()
    dist: str
    version: str
    status: str = "not loaded"  # "ok", "error: ...", "disabled (COMPLETER_PLUGINS)", "shadowed by ..."
    obj: object = field(default=None, repr=False)
    entry_point: object = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "target": self.target, "dist": self.dist,
                "version": self.version, "status": self.status}


@dataclass(frozen=True)
class EntryPoint:
    name: str
    value: str      # "module:attr.sub", optionally followed by " [extras]"
    dist: str
    version: str

    def load(self):
        module, _, attrs = self.value.split("[")[0].partition(":")
        obj = importlib.import_module(module.strip())
        for part in attrs.strip().split(".") if attrs.strip() else ():
            obj = getattr(obj, part)
        return obj


def _header(path: str) -> dict:
    """The Name and Version fields of a METADATA / PKG-INFO file (its header, up to a blank line)."""
    fields = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version"):
                    fields[key] = value.strip()
    except OSError:
        pass
    return fields


def _section(text: str, group: str):
    """(name, value) of the entry points in one [group] of an entry_points.txt."""
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group and "=" in line:
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()


def entry_points(groups) -> dict:
    """{group: [EntryPoint]} for `groups`, from the distributions installed on sys.path. A name's
    first folder wins, names compared as pip normalises them (from the folder's name, as
    importlib.metadata does); METADATA is read only for the distributions that have some."""
    seen, out = set(), {g: [] for g in groups}
    for entry in sys.path:
        root = entry or "."
        try:
            with os.scandir(root) as it:
                infos = sorted(d.name for d in it if d.name.endswith((".dist-info", ".egg-info")) and d.is_dir())
        except OSError:  # missing, a file (a zip on sys.path), unreadable
            continue
        for info in infos:
            stem = info.rsplit(".", 1)[0]
            key = re.sub(r"[-_.]+", "-", stem.split("-")[0]).lower()
            if key in seen:
                continue
            seen.add(key)
            path = os.path.join(root, info)
            try:
                with open(os.path.join(path, "entry_points.txt"), encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            found = {g: list(_section(text, g)) for g in out}
            if not any(found.values()):
                continue
            head = _header(os.path.join(path, "METADATA" if info.endswith(".dist-info") else "PKG-INFO"))
            name = head.get("Name") or stem.split("-")[0]
            version = head.get("Version") or (stem.split("-") + ["?"])[1]
            for g, eps in found.items():
                out[g] += [EntryPoint(n, v, name, version) for n, v in eps]
    return out


def _allowed(name: str, dist: str) -> bool:
    wanted = os.environ.get("COMPLETER_PLUGINS")
    if wanted is None or dist == BUILTIN:
        return True
    names = {w.strip() for w in wanted.split(",") if w.strip()}
    return name in names or dist in names


class Registry:
    def __init__(self):
        self._lock = threading.RLock()
        self._found: dict[str, dict[str, Component]] = {}
        self._installed: dict | None = None

    def _discover(self, kind: str) -> dict[str, Component]:
        with self._lock:
            if kind in self._found:
                return self._found[kind]
            found: dict[str, Component] = {}
            if self._installed is None:  # one pass over sys.path for every group
                self._installed = entry_points(GROUPS.values())
            eps = sorted(self._installed[GROUPS[kind]], key=lambda ep: (ep.dist != BUILTIN, ep.name))
            for ep in eps:
                dist, version = ep.dist, ep.version
                comp = Component(kind, ep.name, ep.value, dist, version, entry_point=ep)
                if ep.name in found:
                    if found[ep.name].target != ep.value:  # same target twice = same dist seen twice
                        comp.status = f"shadowed by {found[ep.name].dist}"
                        found[f"{ep.name}@{dist}"] = comp
                    continue
                if not _allowed(ep.name, dist):
                    comp.status = "disabled (COMPLETER_PLUGINS)"
                found[ep.name] = comp
            self._found[kind] = found
            return found

    def _load(self, comp: Component) -> Component:
        if comp.status == "not loaded":
            try:
                comp.obj = comp.entry_point.load()
                comp.status = "ok"
            except Exception as exc:  # a broken plugin is reported, never fatal
                comp.status = f"error: {type(exc).__name__}: {exc}"
        return comp

    def components(self, kind: str) -> list[Component]:
        """Every component of a kind, each loaded (or its failure recorded)."""
        with self._lock:
            return [self._load(c) for c in self._discover(kind).values()]

    def names(self, kind: str) -> list[str]:
        return [c.name for c in self.components(kind) if c.status == "ok"]

    def get(self, kind: str, name: str):
        """The loaded object registered as `name`, or a CompleterError that says what exists."""
        if not isinstance(name, str):  # e.g. a list from a checkpoint's JSON: not a name at all
            raise CompleterError(f"a {kind} name must be a string, got {type(name).__name__} {name!r:.60}")
        with self._lock:
            comp = self._discover(kind).get(name)
            if comp is not None:
                self._load(comp)
            if comp is None or comp.status != "ok":
                why = f" ({comp.status})" if comp is not None else ""
                avail = ", ".join(self.names(kind)) or "none"
                raise CompleterError(f"unknown {kind} {name!r}{why}; available: {avail}")
            return comp.obj

    def register(self, kind: str, name: str, obj, dist: str = "<runtime>") -> None:
        """Add a component at run time (tests, embedding applications)."""
        with self._lock:
            self._discover(kind)[name] = Component(kind, name, "<runtime>", dist, "-", "ok", obj)

    def unregister(self, kind: str, name: str) -> None:
        with self._lock:
            self._discover(kind).pop(name, None)


registry = Registry()
