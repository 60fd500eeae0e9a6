"""The installed package, not the clone: `pip install .` must carry every module and data file.

The other tests import the project through its editable install, which maps `faceless.*`
onto the clone's folders, so a module missing from pyproject's package list or a data file
read from a path outside the package would still pass there and break only for a user who
installed the wheel. Here the wheel is built and imported from where it was unpacked,
with the clone out of reach (a few seconds; the full install-and-render check is in docs/usage.md, "Installing without the clone").
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIRS = SETUPTOOLS["package-dir"]  # {"faceless.flows": "flows", "faceless.tasks": "tasks"}


def source_packages() -> dict[str, Path]:
    """Every folder under flows/ and tasks/ that holds Python code, by its import name."""
    found = {}
    for name, folder in PACKAGE_DIRS.items():
        for init in sorted((ROOT / folder).rglob("*.py")):
            parts = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in parts:
                found[".".join((name, *parts))] = init.parent
    return found


def test_every_code_folder_is_a_listed_package_with_an_init():
    packages = source_packages()
    assert sorted(packages) == sorted(SETUPTOOLS["packages"]), "pyproject's [tool.setuptools] packages"
    assert not [str(p) for p in packages.values() if not (p / "__init__.py").is_file()]


def test_every_data_file_is_package_data():
    # Anything in a package folder that is not code is read at run time: a wheel has it
    # only when a package-data pattern names it.
    patterns = SETUPTOOLS["package-data"]
    unshipped = []
    for name, folder in source_packages().items():
        for path in folder.iterdir():
            if path.is_file() and path.suffix not in (".py", ".pyc"):
                if not any(fnmatch.fnmatch(path.relative_to(folder).as_posix(), p) for p in patterns.get(name, ())):
                    unshipped.append(str(path.relative_to(ROOT)))
            elif path.is_dir() and not (path / "__init__.py").exists() and path.name != "__pycache__":
                for data in path.rglob("*"):
                    relative = data.relative_to(folder).as_posix()
                    if data.is_file() and not any(fnmatch.fnmatch(relative, p) for p in patterns.get(name, ())):
                        unshipped.append(str(data.relative_to(ROOT)))
    assert not unshipped, "files a wheel would leave out: add them to [tool.setuptools.package-data]"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` would install, built from a copy of the clone (setuptools
    writes build/ and *.egg-info beside the sources) without build isolation (no index)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in PACKAGE_DIRS.values():
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = work / "dist"
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(dist)!r})"],
                   cwd=source, check=True, capture_output=True, text=True, timeout=300)
    (built,) = dist.glob("faceless-*.whl")
    return built


def test_wheel_holds_every_module_and_data_file_under_faceless_only(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"faceless"}, "only one import root: no top-level flows/ or tasks/"
    expected = set()
    for name, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                expected.add("/".join((*name.split("."), *path.relative_to(ROOT / folder).parts)))
    assert sorted(expected - names) == []
    assert any(n.startswith("faceless/tasks/profiles/") and n.endswith(".yaml") for n in names)
    assert any(n.startswith("faceless/tasks/models/configs/") and n.endswith(".json") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "faceless = faceless.flows.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# Run in a fresh interpreter with no site processing (-S), so the editable install's .pth
# hook never runs and the clone cannot be imported; this environment's site-packages (named
# by the parent: under -S the child no longer knows it is in a venv) are added back by hand
# for the dependencies, after the unpacked wheel.
ISOLATED = """
import json, sys
sys.path[:0] = [sys.argv[1]]
sys.path += sys.argv[2:]
import pkgutil, importlib
import faceless
from faceless.tasks import settings
from faceless.tasks.models import tiny
from faceless.tasks.text import prompts
modules = {}
for info in pkgutil.walk_packages(faceless.__path__, "faceless."):
    spec = importlib.util.find_spec(info.name)
    modules[info.name] = spec.origin
profiles = {name: sorted(settings.load_profile(name)) for name in settings.available()}
print(json.dumps({"path": list(faceless.__path__), "modules": modules, "profiles": profiles,
                  "configs": sorted(p.name for p in tiny.CONFIGS_DIR.glob("*.json")),
                  "config": tiny.CONFIGS_DIR.is_relative_to(sys.argv[1]) and bool(tiny._full_config("sdxl-vae")),
                  "vocab": str(prompts._vocab_file())}))
"""


def test_the_unpacked_wheel_imports_and_finds_its_data_without_the_clone(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    paths = sysconfig.get_paths()
    result = subprocess.run([sys.executable, "-I", "-S", "-c", ISOLATED, str(site), paths["purelib"], paths["platlib"]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["path"] == [str(site / "faceless")]
    assert set(found["modules"]) >= set(source_packages()) | {"faceless.flows.cli", "faceless.tasks.settings"}
    assert all(origin.startswith(str(site)) for origin in found["modules"].values())
    assert sorted(found["profiles"]) == sorted(p.stem for p in (ROOT / "tasks/profiles").glob("*.yaml"))
    assert "offline" in found["profiles"]
    assert found["configs"] == sorted(p.name for p in (ROOT / "tasks/models/configs").glob("*.json"))
    assert found["config"]
    assert found["vocab"].startswith(str(site)) and Path(found["vocab"]).is_file()
