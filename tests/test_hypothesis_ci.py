"""Hypothesis's `ci` profile and tests/hypothesis_ci.py's CI_EXAMPLES: fewer examples for the named tests in CI
only, every other test and every local run unchanged; a stale name fails the collection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.hypothesis_ci import CI_EXAMPLES

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
from tests import hypothesis_ci

hypothesis_ci.CI_EXAMPLES.clear()
hypothesis_ci.CI_EXAMPLES.update({NAMES})


def pytest_configure(config):
    config.pluginmanager.register(hypothesis_ci, "tests.hypothesis_ci")
"""

TESTS = """
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st


def _count(name):
    with open(Path(__file__).parent / f"{name}.calls", "a") as calls:
        calls.write("x")


@settings(max_examples=40)
@given(st.integers())
def test_named(n):
    _count("named")


@pytest.mark.parametrize("side", ["left", "right"])
@settings(max_examples=40)
@given(st.integers())
def test_named_and_parametrized(side, n):
    _count(side)


@settings(max_examples=30)
@given(st.integers())
def test_not_named(n):
    _count("not_named")
"""


def _run(directory: Path, names: dict[str, int], *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    (directory / "conftest.py").write_text(CONFTEST.replace("{NAMES}", repr(names)))
    (directory / "test_properties.py").write_text(TESTS)
    for calls in directory.glob("*.calls"):
        calls.unlink()
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for variable in ("CI", "GITHUB_ACTIONS", "BUILD_NUMBER", "TF_BUILD"):  # what makes Hypothesis load `ci`
        environment.pop(variable, None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_hypothesis_pytestplugin", *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run, {calls.stem: len(calls.read_text()) for calls in directory.glob("*.calls")}


def test_the_ci_profile_runs_fewer_examples_of_the_named_tests_only(tmp_path: Path) -> None:
    names = {"test_properties.py::test_named": 5, "test_properties.py::test_named_and_parametrized": 7}
    local, counts = _run(tmp_path, names)
    assert local.returncode == 0, local.stdout + local.stderr
    assert counts == {"named": 40, "left": 40, "right": 40, "not_named": 30}
    ci, counts = _run(tmp_path, names, "--hypothesis-profile=ci")
    assert ci.returncode == 0, ci.stdout + ci.stderr
    assert counts == {"named": 5, "left": 7, "right": 7, "not_named": 30}


def test_a_stale_or_larger_number_fails_the_collection(tmp_path: Path) -> None:
    stale, _ = _run(tmp_path, {"test_properties.py::test_renamed": 5}, "--hypothesis-profile=ci")
    assert stale.returncode != 0
    assert "CI_EXAMPLES names test_properties.py::test_renamed: no such Hypothesis test" in stale.stdout
    larger, _ = _run(tmp_path, {"test_properties.py::test_named": 40}, "--hypothesis-profile=ci")
    assert larger.returncode != 0
    assert "40 examples is not fewer" in larger.stdout


def test_every_number_kept_for_ci_is_at_least_a_floor() -> None:
    """A property run in CI tries a few dozen examples at the least: fewer is no longer a check of it."""
    assert all(examples >= 20 for examples in CI_EXAMPLES.values()), CI_EXAMPLES
