"""The plugin registry with real plugins: fakes registered in-process, fake distributions put on
sys.path (a dist-info folder is what an install leaves behind), and, end to end, the example
plugin plugins/completer-mgu plus a broken distribution pip-installed into a temporary virtualenv
beside completer, then used through the `completer` command line.
"""
import json
import os
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

from completer import cli
from completer.cells.base import Cell
from completer.cells.lstm import LSTM
from completer.cells.rnn import RNN
from completer.errors import CompleterError
from completer.model.network import CharModel, ModelConfig
from completer.registry import Registry, registry

REPO = Path(__file__).resolve().parents[1]
MGU_DIR = REPO / "plugins" / "completer-mgu"
BROKEN_SOURCE = "raise RuntimeError('boom: this plugin cannot load')\n"
GOOD_SOURCE = "from completer.cells.rnn import RNN\n\nclass Good(RNN):\n    name = 'good'\n"


def cells(reg):
    return {c.name: c for c in reg.components("cell")}


# ---- in-process: register / unregister -----------------------------------------------------

class Echo(RNN):
    """A fake third-party cell: the vanilla RNN under another name."""
    name = "echo"


def test_registered_cell_is_found_by_the_model_and_listed(capsys):
    registry.register("cell", "echo", Echo)
    try:
        assert "echo" in registry.names("cell")
        model = CharModel(ModelConfig(cell="echo", vocab_size=5, embed=3, hidden=4))
        assert isinstance(model.cells[0], Echo)
        logits, _ = model.step(np.array([1, 2]), model.zero_state(2))
        assert logits.shape == (2, 5)
        assert cli.main(["plugins", "--json"]) == 0
        rows = {(r["kind"], r["name"]): r for r in json.loads(capsys.readouterr().out)["components"]}
        assert rows["cell", "echo"]["dist"] == "<runtime>" and rows["cell", "echo"]["status"] == "ok"
    finally:
        registry.unregister("cell", "echo")
    assert "echo" not in registry.names("cell")
    with pytest.raises(CompleterError, match="unknown cell 'echo'.*available: .*lstm"):
        CharModel(ModelConfig(cell="echo", vocab_size=5, embed=3, hidden=4))


# ---- in-process: fake installed distributions on sys.path ---------------------------------

def fake_dist(root: Path, dist: str, module: str, source: str, entry_points: dict) -> None:
    """What pip leaves in site-packages: the module and a dist-info with its entry points."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("[completer.cells]\n" + "\n".join(lines) + "\n")


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """A broken third-party cell and a working one, visible to a fresh Registry."""
    monkeypatch.delenv("COMPLETER_PLUGINS", raising=False)
    fake_dist(tmp_path, "completer-broken", "completer_broken_fake", BROKEN_SOURCE,
              {"broken": "completer_broken_fake:Broken"})
    fake_dist(tmp_path, "completer-good", "completer_good_fake", GOOD_SOURCE,
              {"good": "completer_good_fake:Good"})
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("completer_broken_fake", "completer_good_fake"):
        sys.modules.pop(name, None)


def test_broken_plugin_is_reported_and_never_fatal(fake_plugins):
    reg = Registry()
    found = cells(reg)
    broken = found["broken"]
    assert (broken.dist, broken.version) == ("completer-broken", "1.2.3")
    assert broken.status == "error: RuntimeError: boom: this plugin cannot load"
    assert found["good"].status == "ok" and found["good"].dist == "completer-good"
    assert all(found[n].status == "ok" for n in ("rnn", "gru", "lstm"))
    assert set(reg.names("cell")) == {"rnn", "gru", "lstm", "good"}
    with pytest.raises(CompleterError, match="unknown cell 'broken' .*boom"):
        reg.get("cell", "broken")
    assert reg.get("cell", "lstm") is LSTM
    assert issubclass(reg.get("cell", "good"), Cell)


@pytest.mark.parametrize("wanted, good, broken", [
    ("", "disabled", "disabled"),                       # empty: no third-party plugin at all
    ("good", "ok", "disabled"),                         # by component name
    ("completer-broken", "disabled", "error"),          # by distribution name
    (" good , broken ", "ok", "error"),
])
def test_completer_plugins_restricts_third_party_only(fake_plugins, monkeypatch, wanted, good, broken):
    monkeypatch.setenv("COMPLETER_PLUGINS", wanted)
    found = cells(Registry())
    assert found["good"].status.startswith(good)
    assert found["broken"].status.startswith(broken)
    assert all(found[n].status == "ok" for n in ("rnn", "gru", "lstm"))  # built-ins always load


def test_third_party_cannot_replace_a_builtin(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPLETER_PLUGINS", raising=False)
    fake_dist(tmp_path, "completer-shadow", "completer_good_fake", GOOD_SOURCE,
              {"lstm": "completer_good_fake:Good"})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    lstms = [(c.dist, c.status) for c in reg.components("cell") if c.name == "lstm"]
    assert lstms == [("completer", "ok"), ("completer-shadow", "shadowed by completer")]
    assert reg.get("cell", "lstm") is LSTM
    sys.modules.pop("completer_good_fake", None)


def test_plugins_command_shows_name_distribution_and_error(fake_plugins, monkeypatch, capsys):
    monkeypatch.setattr("completer.registry.registry", Registry())
    assert cli.main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line.split(None, 4) for line in lines if " broken " in line)
    assert row == ["cell", "broken", "completer-broken", "1.2.3",
                   "error: RuntimeError: boom: this plugin cannot load"]
    assert any(line.split()[:3] == ["cell", "lstm", "completer"] and line.endswith(" ok") for line in lines)


# ---- end to end: real installs into a temporary virtualenv ---------------------------------

def run(cmd, env=None, cwd=None, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory):
    """A fresh virtualenv that sees this environment's packages (completer, numpy, pytest, pip)
    through a .pth file, with completer-mgu and a broken plugin distribution pip-installed into it.

    Installing completer's dependencies afresh would take a minute; seeing them through
    site.addsitedir (which also runs completer's editable-install hook) takes none."""
    root = tmp_path_factory.mktemp("plugin-venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    own_site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    parents = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if os.path.isdir(p)]
    pth = "".join(f"import site; site.addsitedir({p!r})\n" for p in dict.fromkeys(parents))
    (Path(own_site.stdout.strip()) / "_completer_tests_parent.pth").write_text(pth)

    broken = root / "completer-broken"
    (broken / "completer_broken").mkdir(parents=True)
    (broken / "completer_broken" / "__init__.py").write_text(BROKEN_SOURCE)
    (broken / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "completer-broken"
        version = "0.0.1"
        [project.entry-points."completer.cells"]
        broken = "completer_broken:Broken"
        [tool.setuptools]
        packages = ["completer_broken"]
        """))
    env = clean_env()
    done = run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(MGU_DIR), str(broken)],
               env=env)
    assert done.returncode == 0, done.stderr
    return python


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("COMPLETER_PLUGINS", "PYTHONPATH")}
    env.update(extra)
    return env


def listing(python, **env):
    done = run([str(python), "-m", "completer", "plugins", "--json"], env=clean_env(**env))
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in json.loads(done.stdout)["components"] if r["kind"] == "cell"}


def test_installed_plugin_is_listed_and_broken_one_reported(plugin_venv):
    found = listing(plugin_venv)
    assert found["mgu"] == {"kind": "cell", "name": "mgu", "target": "completer_mgu:MGU",
                            "dist": "completer-mgu", "version": "0.1.0", "status": "ok"}
    assert found["broken"]["dist"] == "completer-broken"
    assert found["broken"]["status"] == "error: RuntimeError: boom: this plugin cannot load"
    assert all(found[n]["status"] == "ok" and found[n]["dist"] == "completer" for n in ("rnn", "gru", "lstm"))


def test_completer_plugins_restricts_installed_plugins(plugin_venv):
    found = listing(plugin_venv, COMPLETER_PLUGINS="completer-mgu")
    assert found["mgu"]["status"] == "ok"
    assert found["broken"]["status"] == "disabled (COMPLETER_PLUGINS)"
    found = listing(plugin_venv, COMPLETER_PLUGINS="")
    assert found["mgu"]["status"] == "disabled (COMPLETER_PLUGINS)"
    assert found["lstm"]["status"] == "ok"


def test_installed_plugin_passes_the_gradient_check(plugin_venv):
    """The same parametrised check as the built-ins, run in the plugin's environment."""
    done = run([str(plugin_venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "mgu",
                "tests/test_gradcheck.py"], env=clean_env(), cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout  # x1, x2, x2 regularised gradients; step == forward


def test_mgu_is_smaller_than_gru(plugin_venv):
    code = ("from completer.model.network import CharModel, ModelConfig\n"
            "print(*(CharModel(ModelConfig(cell=c, vocab_size=50, embed=8, hidden=32)).n_params()"
            " for c in ('mgu', 'gru')))")
    done = run([str(plugin_venv), "-c", code], env=clean_env())
    assert done.returncode == 0, done.stderr
    mgu, gru = map(int, done.stdout.split())
    # per layer: GRU 3 blocks of (E + H + 1) H plus bn, MGU 2 blocks; same embedding and head
    assert gru - mgu == (8 + 32 + 1) * 32 + 32


def test_train_with_plugin_cell(plugin_venv, tmp_path):
    corpus = tmp_path / "repo"
    (corpus / "pkg").mkdir(parents=True)
    (corpus / "pkg" / "a.py").write_text("def add(a, b):\n    return a + b\n" * 40)
    (corpus / "pkg" / "b.py").write_text("import os\n\nprint(os.getcwd())\n" * 40)
    run_dir = tmp_path / "run"
    done = run([str(plugin_venv), "-m", "completer", "train", str(corpus), "--out", str(run_dir),
                "--cell", "mgu", "--hidden", "8", "--embed", "8", "--batch", "4", "--seq", "16",
                "--steps", "3"], env=clean_env())
    assert done.returncode == 0, done.stderr
    code = ("import sys; from completer.model import checkpoint\n"
            "model, vocab, meta = checkpoint.load(sys.argv[1])\n"
            "print(model.config.cell, type(model.cells[0]).__module__)")
    done = run([str(plugin_venv), "-c", code, str(run_dir)], env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mgu", "completer_mgu"]


def test_entry_points_are_read_as_importlib_metadata_reads_them(tmp_path, monkeypatch):
    """dist-info and egg-info folders, `module:attr.sub [extra]` values, and a distribution found
    twice on sys.path counts once (the first folder wins), as importlib.metadata has it."""
    from importlib import metadata

    from completer.registry import entry_points

    first, second = tmp_path / "first", tmp_path / "second"
    for root, version in ((first, "1.0"), (second, "2.0")):
        info = root / f"completer_twice-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: completer-twice\nVersion: {version}\n\nbody: x\n")
        (info / "entry_points.txt").write_text(f"[completer.cells]\ntwice = twice_mod:Outer.Inner [fast]\n")
    egg = first / "completer_egg.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.2\nName: completer-egg\nVersion: 0.3\n")
    (egg / "entry_points.txt").write_text("# a comment\n[completer.decoders]\negg = egg_mod:Dec\n")
    (first / "twice_mod.py").write_text("class Outer:\n    class Inner:\n        pass\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    ours = entry_points(["completer.cells", "completer.decoders"])
    theirs = {g: sorted((e.name, e.value, e.dist.name, e.dist.version) for e in metadata.entry_points(group=g))
              for g in ours}
    assert {g: sorted((e.name, e.value, e.dist, e.version) for e in eps) for g, eps in ours.items()} == theirs
    twice = next(e for e in ours["completer.cells"] if e.name == "twice")
    assert (twice.dist, twice.version) == ("completer-twice", "1.0")
    assert twice.load().__qualname__ == "Outer.Inner"
    sys.modules.pop("twice_mod", None)
