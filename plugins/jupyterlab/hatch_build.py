"""Builds the JupyterLab extension (src/ -> completer_jupyterlab/labextension) before the wheel.

Skipped when the build is newer than every source, so a reinstall does not need npm; rebuilt
otherwise, so a wheel never carries JavaScript older than src/.
"""
import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class LabExtension(BuildHookInterface):
    def initialize(self, version, build_data):
        root = Path(self.root)
        built = root / "completer_jupyterlab" / "labextension" / "package.json"
        sources = [root / "package.json", root / "package-lock.json", *(root / "src").glob("*.js")]
        if built.exists() and all(s.stat().st_mtime <= built.stat().st_mtime for s in sources):
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("completer-jupyterlab: building its JupyterLab extension needs npm (Node.js 18+)")
        if not (root / "node_modules" / ".bin" / "build-labextension").exists():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=root, check=True)
        import jupyterlab  # a build requirement: its staging/ holds the core packages' versions

        core = Path(jupyterlab.__file__).parent / "staging"
        subprocess.run([str(root / "node_modules" / ".bin" / "build-labextension"), "--core-path", str(core), "."],
                       cwd=root, check=True)
