"""`completer plugins`: list every registered component (cells, decoders) and its status."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("plugins", help="list registered cells and decoders, built-in and third-party",
                       description="List every registered component: kind, name, distribution, "
                                   "version, status. COMPLETER_PLUGINS=a,b restricts third-party ones.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    from completer.registry import GROUPS, registry

    rows = [c.as_dict() for kind in GROUPS for c in registry.components(kind)]
    if args.json:
        print(json.dumps({"components": rows}))
        return 0
    widths = [max(len(str(r[k])) for r in rows + [dict(kind="kind", name="name", dist="from", version="version")])
              for k in ("kind", "name", "dist", "version")]
    print(f"{'kind':{widths[0]}}  {'name':{widths[1]}}  {'from':{widths[2]}}  {'version':{widths[3]}}  status")
    for r in rows:
        print(f"{r['kind']:{widths[0]}}  {r['name']:{widths[1]}}  {r['dist']:{widths[2]}}  "
              f"{r['version']:{widths[3]}}  {r['status']}")
    return 0
