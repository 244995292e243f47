"""A team's step library: transformers in an ordinary installed package, used by import path.

examples/steplib is a small package (distribution ``penguin-steps``) and
examples/penguins-steplib a project whose spec uses its ``penguin_steps.ClipStd``. The
package is really installed (pip, into a folder on ``PYTHONPATH``), as a team would install
it from its index. The manifest records the distribution and its version, the run
reproduces bitwise, and a new version of the package is a code change: the step's cache
entry no longer applies and ``diff`` names the package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES, clean_env, make_project, run_here_json, run_json

pytestmark = pytest.mark.slow


def install(package: Path, site: Path) -> None:
    """pip install the package folder into ``site`` (no network: no dependencies, no build isolation)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--upgrade", "--target", str(site), str(package)],
        check=True,
        capture_output=True,
        timeout=600,
    )  # fmt: skip


def test_a_step_from_an_installed_package_is_versioned_by_its_distribution(tmp_path: Path) -> None:
    package = tmp_path / "steplib"
    shutil.copytree(EXAMPLES / "steplib", package)  # pip builds in the folder: not in the repo
    site = tmp_path / "site"
    install(package, site)
    project = make_project(tmp_path, "penguins-steplib")
    env = clean_env(PYTHONPATH=str(site))

    first = run_json(project, "run", env=env)
    assert first["status"] == "succeeded", first.get("error")
    shown = run_here_json(project, "show", first["run_id"], env=env)
    assert shown["environment"]["packages"]["penguin-steps"] == "1.0.0"
    clip = next(s for s in shown["steps"] if s["name"] == "clip")
    assert clip["class"] == "penguin_steps.clipping.ClipStd" and clip["cache"] == "miss"
    # the package is not project code: nothing of it is stored as a local module
    assert "penguin_steps" not in shown["code"]["local_modules"]
    assert run_json(project, "reproduce", first["run_id"], env=env)["verdict"] == "bitwise"
    again = run_json(project, "run", env=env)
    assert cache_of(project, again["run_id"], env) == "hit"

    # the team releases 1.1.0 (same code): the cached step was made by another version
    pyproject = package / "pyproject.toml"
    pyproject.write_text(re.sub(r'version = "1.0.0"', 'version = "1.1.0"', pyproject.read_text()))
    shutil.rmtree(site)  # pip --target leaves the old version's metadata beside the new one
    install(package, site)
    second = run_json(project, "run", env=env)
    assert cache_of(project, second["run_id"], env) == "miss"
    assert second["fingerprints"]["model"] == first["fingerprints"]["model"]  # same code, same fit
    diff = run_here_json(project, "diff", first["run_id"], second["run_id"], env=env)
    package_rows = [d for d in diff["differences"] if d["name"] == "package penguin-steps"]
    assert package_rows and (package_rows[0]["a"], package_rows[0]["b"]) == ("1.0.0", "1.1.0")


def cache_of(project: Path, run_id: str, env: dict[str, str]) -> str:
    """The step cache's answer for the library's step in that run."""
    shown = run_here_json(project, "show", run_id, env=env)
    return str(next(s for s in shown["steps"] if s["name"] == "clip")["cache"])
