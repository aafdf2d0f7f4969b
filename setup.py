"""Which packages go into the wheel, found rather than listed (two past fixes were "package X
missing from the wheel"; tests/test_layout.py checks a built wheel holds every one). Everything
else is in pyproject.toml; this file exists only because [tool.setuptools.packages.find] cannot
rename folders, and trainers/ and checkpoints/ install under other names (see package-dir there)."""
from setuptools import find_packages, setup


def renamed(folder: str, name: str) -> list[str]:
    return [name + p[len(folder):] for p in find_packages(include=[folder, folder + ".*"])]


setup(packages=find_packages(include=["completer", "completer.*"])
      + renamed("trainers", "completer_trainers") + renamed("checkpoints", "completer.checkpoints"))
