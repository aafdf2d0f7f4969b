"""Fetch a pinned corpus manifest: `python -m completer_trainers.fetch MANIFEST DEST`.

MANIFEST (e.g. trainers/manifests/python.txt) lists PyPI source distributions, one per line:

    NAME==VERSION [xWEIGHT] [-PATH ...]      # comments and blank lines are ignored

Each one is downloaded with `pip download NAME==VERSION --no-deps --no-binary :all:` into
DEST/sdists/ (skipped when already there), unpacked into DEST/NAME-VERSION/, and then the PATHs the
line names and every folder of vendored third-party code (VENDORED) are deleted from the unpacked
copy. DEST/corpus.txt is written last: the unpacked folders with their weights, the file
`completer train --corpus DEST/corpus.txt` reads. DEST lies outside git (data/ is ignored): the
fetched source is never committed.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

VENDORED = {"_vendor", "_vendored", "vendor", "vendored", "third_party", "extern", "_extern"}
LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)==(?P<version>[A-Za-z0-9_.+\-!]+)$")


class ManifestError(ValueError):
    pass


def parse(text: str, where: str = "manifest") -> list[dict]:
    """[{name, version, weight, drop: [path...]}] of a manifest's lines."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, *rest = line.split()
        m = LINE.match(head)
        if not m:
            raise ManifestError(f"{where}:{n}: expected NAME==VERSION, got {head!r}")
        entry = {"name": m["name"], "version": m["version"], "weight": 1, "drop": []}
        for tok in rest:
            if re.fullmatch(r"x[1-9][0-9]*", tok):
                entry["weight"] = int(tok[1:])
            elif tok.startswith("-") and len(tok) > 1 and ".." not in Path(tok[1:]).parts \
                    and not tok[1:].startswith("/"):
                entry["drop"].append(tok[1:])
            else:
                raise ManifestError(f"{where}:{n}: {tok!r} is neither xWEIGHT nor -PATH (a relative path)")
        out.append(entry)
    if not out:
        raise ManifestError(f"{where}: lists no package")
    return out


def _norm(s: str) -> str:
    return re.sub(r"[-_.]+", "-", s).lower()


def find_sdist(folder: Path, name: str, version: str) -> Path | None:
    """The sdist of NAME VERSION in folder (names compared as PyPI normalises them)."""
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        for ext in (".tar.gz", ".zip", ".tar.bz2"):
            if p.name.endswith(ext):
                stem = p.name[: -len(ext)]
                n, _, v = stem.rpartition("-")
                if _norm(n) == _norm(name) and v == version:
                    return p
    return None


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack an sdist into dest/NAME-VERSION (its single top folder, renamed); the folder."""
    tmp = dest.with_name(dest.name + ".unpacking")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    else:
        with tarfile.open(archive) as t:
            t.extractall(tmp, filter="data")   # no links out of tmp, no devices
    tops = list(tmp.iterdir())
    top = tops[0] if len(tops) == 1 and tops[0].is_dir() else tmp
    shutil.rmtree(dest, ignore_errors=True)
    top.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


def prune(root: Path, drop: list[str]) -> list[str]:
    """Delete the named paths and every vendored folder under root; the deleted paths (relative)."""
    gone = []
    for rel in drop:
        p = root / rel
        if not p.exists():
            raise ManifestError(f"{root.name}: -{rel} does not exist in the sdist")
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        gone.append(rel)
    for p in sorted(root.rglob("*")):
        if p.is_dir() and not p.is_symlink() and p.name in VENDORED and p.exists():
            gone.append(p.relative_to(root).as_posix() + "/")
            shutil.rmtree(p)
    return gone


def fetch(manifest: Path, dest: Path, pip=None, log=print) -> Path:
    entries = parse(manifest.read_text(encoding="utf-8"), str(manifest))
    sdists = dest / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    lines = [f"# written by `python -m completer_trainers.fetch {manifest} {dest}`: FOLDER [xWEIGHT]"]
    for e in entries:
        spec = f"{e['name']}=={e['version']}"
        archive = find_sdist(sdists, e["name"], e["version"])
        if archive is None:
            cmd = pip or [sys.executable, "-m", "pip"]
            r = subprocess.run([*cmd, "download", spec, "--no-deps", "--no-binary", ":all:", "-d", str(sdists),
                                "-q"], capture_output=True, text=True)
            archive = find_sdist(sdists, e["name"], e["version"])
            if r.returncode != 0 or archive is None:
                last = (r.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
                raise ManifestError(f"pip download {spec} failed: {last}")
        folder = unpack(archive, dest / f"{e['name']}-{e['version']}")
        gone = prune(folder, e["drop"])
        n = sum(1 for p in folder.rglob("*.py") if p.is_file())
        log(f"{spec}: {n} .py files" + (f"; deleted {', '.join(gone)}" if gone else "")
            + (f"; weight x{e['weight']}" if e["weight"] != 1 else ""))
        lines.append(folder.name + (f" x{e['weight']}" if e["weight"] != 1 else ""))
    out = dest / "corpus.txt"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m completer_trainers.fetch",
                                description="Download, unpack and prune the sdists of a corpus manifest.")
    p.add_argument("manifest", type=Path, help="e.g. trainers/manifests/python.txt")
    p.add_argument("dest", type=Path, help="folder outside git, e.g. data/python")
    args = p.parse_args(argv)
    try:
        out = fetch(args.manifest, args.dest, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ManifestError, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        print(f"fetch: error: {exc}", file=sys.stderr)
        return 2
    print(f"corpus: {out} (train with `completer train --corpus {out} --out RUN_DIR ...`)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
