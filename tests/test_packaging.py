"""Packaging: dependency ranges, the tested versions, and what the wheel ships."""

import importlib.metadata
import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import bayesnn

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEPENDENCIES = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]
# The JAX stack whose tested versions the documentation lists.
JAX_STACK = ("jax", "jaxlib", "blackjax", "numpyro", "optax", "arviz")


def _lower_bounds_module():
    spec = importlib.util.spec_from_file_location("lower_bounds", ROOT / ".ci" / "lower_bounds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dependencies_are_ranges_not_pins():
    for req in DEPENDENCIES:
        ops = {s.operator for s in req.specifier}
        assert "==" not in ops and "~=" not in ops, f"{req} pins a version"
        assert ">=" in ops, f"{req} has no lower bound"
    jax = next(r for r in DEPENDENCIES if r.name == "jax")
    # JAX 0.x minor releases remove APIs: the next minor is excluded, patches are not.
    assert jax.specifier.contains("0.10.9") and not jax.specifier.contains("0.11.0")


def test_installed_versions_satisfy_declared_ranges():
    bad = []
    for req in DEPENDENCIES:
        installed = importlib.metadata.version(req.name)
        if not req.specifier.contains(installed, prereleases=True):
            bad.append(f"{req.name} {installed} not in {req.specifier}")
    assert not bad, bad


def test_documented_tested_versions_are_the_lower_bounds():
    lows = _lower_bounds_module().lower_bounds(ROOT / "pyproject.toml")
    text = (ROOT / "docs" / "installation.md").read_text()
    for name in JAX_STACK:
        match = re.search(rf"^\|\s*{name}\s*\|\s*([0-9][0-9.]*)\s*\|", text, re.M)
        assert match, f"docs/installation.md lists no tested version for {name}"
        assert Version(match.group(1)) == Version(lows[name]), (name, match.group(1), lows[name])


def test_lower_bound_constraints_cover_every_dependency():
    lows = _lower_bounds_module().lower_bounds(ROOT / "pyproject.toml")
    assert set(lows) == {r.name for r in DEPENDENCIES}
    for req in DEPENDENCIES:
        assert req.specifier.contains(lows[req.name]), (req, lows[req.name])


def test_version_has_one_source():
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bayesnn.__version__"}
    Version(bayesnn.__version__)  # a valid PEP 440 version


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the wheel from a copy of the sources (keeps build/ out of the checkout)."""
    pytest.importorskip("setuptools", minversion="77", reason="the test extra installs it")
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("bayesnn", "samplers"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    proc = subprocess.run(
        [*cmd, "-w", str(out), str(src)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("*.whl")
    return path


def test_wheel_ships_license_typing_markers_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    dist_info = f"bayesnn_jax-{bayesnn.__version__}.dist-info"
    assert wheel.name.startswith(f"bayesnn_jax-{bayesnn.__version__}-")
    assert f"{dist_info}/licenses/LICENSE" in names
    assert {"bayesnn/py.typed", "samplers/py.typed"} <= names
    shipped = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "bayesnn/datasets/data").glob("*/*.txt")
    }
    assert shipped and shipped <= names, sorted(shipped - names)
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)


def test_wheel_metadata(wheel):
    archive = zipfile.ZipFile(wheel)
    dist_info = f"bayesnn_jax-{bayesnn.__version__}.dist-info"
    meta = archive.read(f"{dist_info}/METADATA").decode()
    assert re.search(r"^Name: bayesnn-jax$", meta, re.M)
    assert re.search(rf"^Version: {re.escape(bayesnn.__version__)}$", meta, re.M)
    assert re.search(r"^License-Expression: Apache-2.0$", meta, re.M)
    assert "Classifier: Typing :: Typed" in meta
    requires = [
        Requirement(line[len("Requires-Dist: ") :])
        for line in meta.splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    core = {r.name: r.specifier for r in requires if r.marker is None}
    assert core == {r.name: r.specifier for r in DEPENDENCIES}
    entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert "bayesnn = bayesnn.cli:main" in entry_points
