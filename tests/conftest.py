"""Shared fixtures: throwaway git projects copied from the examples, and a CLI runner in fresh processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from seedline.core.deeplearning import framework_environment

from .services import (
    PostgresServer,
    S3Server,
    ServiceUnavailable,
    postgres_server,
    s3_server,
    unavailable,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "seedline tests",
    "GIT_AUTHOR_EMAIL": "tests@seedline.invalid",
    "GIT_COMMITTER_NAME": "seedline tests",
    "GIT_COMMITTER_EMAIL": "tests@seedline.invalid",
}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def make_project(tmp: Path, example: str) -> Path:
    """A copy of an example in its own committed git repository."""
    root = tmp / example
    shutil.copytree(EXAMPLES / example, root, ignore=shutil.ignore_patterns(".seedline"))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture(scope="session", autouse=True)
def _session_load_memo(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Models' load memos (execution/loadmemo.py) of this session and its CLI children go to a
    folder of its own, not the user's cache."""
    os.environ["SEEDLINE_LOAD_MEMO"] = str(tmp_path_factory.mktemp("memo") / "load-memo")


@pytest.fixture
def penguins(tmp_path: Path) -> Path:
    return make_project(tmp_path, "penguins")


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    return make_project(tmp_path, "digits")


CliResult = subprocess.CompletedProcess[str]


FRAMEWORK_VARIABLES = (
    "KERAS_BACKEND",
    *framework_environment({"torch", "tensorflow", "jax", "keras"}, 1),
)


def clean_env(**extra: str | None) -> dict[str, str]:
    """The test process's environment with seedline's re-exec marker removed and ``extra`` applied (None unsets)."""
    # pytest-xdist's workers export COLUMNS=80 and LINES=24: a user's pipe has neither; and
    # in-process runs earlier in this worker set the frameworks' import-time variables
    # (XLA_FLAGS, TF_*; see core/deeplearning.py), which a user's shell does not have
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("_SEEDLINE") and k not in ("COLUMNS", "LINES", *FRAMEWORK_VARIABLES)
    }
    env.update(GIT_ENV)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> CliResult:
    """``python -m seedline ARGS`` in a fresh interpreter, as a user's shell would start it."""
    proc = subprocess.run(
        [sys.executable, "-m", "seedline", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return _checked(proc, args, check)


def _checked(proc: CliResult, args: tuple[str, ...], check: bool) -> CliResult:
    """``proc``, or an AssertionError with its output when ``check`` and it exited non-zero."""
    if check and proc.returncode != 0:
        raise AssertionError(
            f"seedline {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def run_json(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(run_cli(cwd, *args, "--json", env=env).stdout)


def run_here(
    cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> CliResult:
    """``seedline ARGS`` in this process (typer's runner), for commands that only read the store.

    ``run_cli`` starts an interpreter, a second or more of imports, to show a manifest or a
    listing; tests that check what such a command prints, not how a shell starts it, read it
    here. ``env`` is a whole environment, as for ``run_cli``: it replaces this process's for the
    call. Each read-only command keeps a fresh-process test of its own (test_cli.py,
    test_registry.py, test_tags.py, test_cache.py, test_inspect.py, the README tour).
    """
    from typer.testing import CliRunner

    from seedline.cli.main import app

    wanted = env or clean_env()
    overlay: dict[str, str | None] = {k: v for k, v in wanted.items() if os.environ.get(k) != v}
    overlay.update({k: None for k in os.environ if k not in wanted})
    before = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), env=overlay, prog_name="seedline")
    finally:
        os.chdir(before)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    proc = CliResult(
        ["seedline", *args], result.exit_code, stdout=result.stdout, stderr=result.stderr
    )
    return _checked(proc, args, check)


def run_here_json(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """``run_here`` with ``--json``, parsed."""
    return json.loads(run_here(cwd, *args, "--json", env=env).stdout)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli


# -- real servers for the storage tests (tests/services.py), started once per session ----------
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on loopback; each test takes its own database with ``fresh_database()``."""
    try:
        with postgres_server() as server:
            yield server
    except ServiceUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A SeaweedFS S3 endpoint on loopback with a bucket; each test takes its own prefix."""
    try:
        with s3_server() as server:
            yield server
    except ServiceUnavailable as exc:
        unavailable(str(exc))


# A test is slow (`-m slow`; `make quick` leaves it out) when it, or a fixture it uses,
# starts fresh interpreters or servers: the CLI in a subprocess, a served model, a Dask
# cluster. Decided here, from the names the test's and its fixtures' code calls, so that the
# rule holds for every test, new ones included, without a marker to remember.
SLOW_CALLS = frozenset(
    {"run_cli", "run_json", "serving", "start_dask_cluster", "subprocess", "Popen"}
)
# helpers that start only git, which is quick
QUICK_HELPERS = frozenset({"git", "make_project"})


def _names(code: Any) -> set[str]:
    """Global names a code object uses, its nested functions' and lambdas' included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names(const)
    return names


def _calls_slow(func: Any, depth: int = 0) -> bool:
    """Does ``func``, or a helper of the tests it calls (two levels down), start processes?"""
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    names = _names(code)
    if not SLOW_CALLS.isdisjoint(names):
        return True
    scope = getattr(func, "__globals__", {})
    helpers = [scope.get(n) for n in names - QUICK_HELPERS]
    return depth < 2 and any(
        _calls_slow(h, depth + 1)
        for h in helpers
        if callable(h) and str(getattr(h, "__module__", "")).startswith("tests")
    )


# The longest test modules, longest first. `make unit` gives pytest-xdist one module at a
# time per worker, in collection order: the long modules start first so that the end of the
# run is not one worker finishing a long module alone (longest-first list scheduling). Figures
# come from `pytest --durations`; the order only changes when the suite takes, not what it tests.
LONGEST_MODULES = (
    # seconds in the last CI run (1 Dec 03:15 UTC: pytest 21 min 45 s, load about 3)
    "test_readme.py",  # 237
    "test_scale.py",  # 211
    "test_check.py",  # 185
    "test_keras_backends.py",  # 182
    "test_reproduce.py",  # 165
    "test_executors.py",  # 156
    "test_deeplearning.py",  # 143
    "test_cli.py",  # 123
    "test_exec.py",  # 98
    "test_serving.py",  # 91
    "test_team_store.py",  # 86
    "test_two_users.py",  # 79
    "test_hostile_input.py",  # 70
    "test_cache.py",  # 68
    "test_portable_code.py",  # 64
    "test_ecosystem.py",  # 59
    "test_ui.py",  # 59
    "test_registry.py",  # 55
    "test_predict.py",  # 42
    "test_workers_anywhere.py",  # 35
    "test_remote.py",  # 35
    "test_crash.py",  # 33
    "test_loadmemo.py",  # 30
    "test_export.py",  # 28
    "test_steplib.py",  # 28
    "test_sweep.py",  # 24
    "test_store_conformance.py",  # 22
    "test_run.py",  # 21
    "test_fingerprint.py",  # 15
    "test_sources.py",  # 14
    "test_inspect.py",  # 12
    "test_listing.py",
    "test_tags.py",
    "test_frozen.py",
)


_MODULE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # setup, call and teardown of every test, summed per module (under xdist this runs in
    # the controller, which receives each worker's reports)
    module = report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    _MODULE_SECONDS[module] = _MODULE_SECONDS.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The longest modules' seconds, for keeping LONGEST_MODULES in order (shown with --durations)."""
    if not terminalreporter.config.getoption("durations", None) or not _MODULE_SECONDS:
        return
    ranked = sorted(_MODULE_SECONDS.items(), key=lambda kv: -kv[1])
    terminalreporter.write_sep("=", "slowest modules (seconds, setup + call + teardown)")
    for module, seconds in ranked[: len(LONGEST_MODULES)]:
        listed = "" if module in LONGEST_MODULES else "  (not in LONGEST_MODULES)"
        terminalreporter.write_line(f"{seconds:8.1f}s  {module}{listed}")


def _module_rank(item: pytest.Item) -> int:
    name = item.path.name
    return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # stable: tests keep their order within a module, and the other modules theirs
    items.sort(key=_module_rank)
    for item in items:
        if item.get_closest_marker("slow") is not None:
            continue
        funcs = [getattr(item, "function", None)]
        info = getattr(item, "_fixtureinfo", None)
        for name in getattr(item, "fixturenames", ()):
            if name == "cli":
                funcs.append(run_cli)
            for fixturedef in info.name2fixturedefs.get(name, ()) if info else ():
                funcs.append(fixturedef.func)
        if any(_calls_slow(f) for f in funcs):
            item.add_marker(pytest.mark.slow)
