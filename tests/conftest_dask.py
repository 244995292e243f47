"""A real Dask cluster for tests: a scheduler and workers started with the ``dask`` command line.

Everything listens on 127.0.0.1 only (the HTTP servers too: with ``--no-dashboard`` alone they
bind 0.0.0.0:8787). The scheduler binds a free port (``--port 0``) and writes
its address to a scheduler file, so no port is guessed. Every wait is bounded, and the
processes are stopped when the fixture is torn down (and stop themselves if the test run
is killed: the scheduler after ``--idle-timeout``, the workers after ``--death-timeout``).

:func:`foreign_worker` starts a scheduler and one worker that runs as another user
(``seedline-worker``, created with ``useradd`` when the tests run as root): with the project
folder at mode 700, that worker can read neither the project nor its store. Tests that use
it carry the :data:`needs_root` mark.

tests/conftest.py is shared with others, so import the fixture into a test module::

    from tests.conftest_dask import DaskCluster, dask_cluster_fixture  # noqa: F401

    def test_on_a_cluster(dask_cluster: DaskCluster) -> None:
        with make_executor("dask", address=dask_cluster.address, workers=dask_cluster.n_workers) as ex:
            ...

Workers get the repository root on ``PYTHONPATH`` (task functions in ``tests/`` must be
importable there, as user code must be on a real cluster), and a pinned ``PYTHONHASHSEED``
(:data:`WORKER_HASH_SEED`) through the nanny's ``pre-spawn-environ`` config: a dask nanny
ignores the ``PYTHONHASHSEED`` of its own environment and sets 6640 unless configured so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).parent / "dask"

WORKER_HASH_SEED = "4242"
"""The PYTHONHASHSEED the fixture's workers run with."""

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass
class DaskCluster:
    """A running external cluster: its scheduler's address, and the processes behind it."""

    address: str
    n_workers: int
    hash_seed: str | None
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> str:
        """The tail of every process's output, for a failure message."""
        parts = []
        for log in sorted(self.directory.glob("*.log")):
            text = log.read_text(errors="replace")
            parts.append(f"--- {log.name} ---\n{text[-3000:]}")
        return "\n".join(parts)


def _spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        # a session of its own: stopping it never signals the test process, and a
        # nanny's worker process can be killed with it if it does not stop
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)
    # the nanny's worker process is in the same session; make sure nothing of it is left
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop_dask_cluster(cluster: DaskCluster) -> None:
    """Stop the workers, then the scheduler; bounded waits, SIGKILL as a last resort."""
    for proc in reversed(cluster.processes):
        _stop(proc)
    cluster.processes.clear()


def _worker_env(directory: Path, hash_seed: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if hash_seed is not None:
        config = directory / "dask-config"
        config.mkdir(exist_ok=True)
        # YAML, not DASK_* variables: dask lowercases keys taken from variable names
        (config / "seedline-tests.yaml").write_text(
            "distributed:\n  nanny:\n    pre-spawn-environ:\n"
            f"      PYTHONHASHSEED: {json.dumps(hash_seed)}\n"
        )
        env["DASK_CONFIG"] = str(config)
        env["PYTHONHASHSEED"] = hash_seed
    return env


def start_dask_cluster(
    directory: Path,
    *,
    n_workers: int = 2,
    nthreads: int = 1,
    hash_seed: str | None = WORKER_HASH_SEED,
) -> DaskCluster:
    """Start ``dask scheduler`` and ``n_workers`` ``dask worker`` processes of ``nthreads`` threads.

    Returns once the scheduler has ``n_workers`` workers, or raises RuntimeError with the
    processes' logs after ``START_TIMEOUT_S``.
    """
    from distributed import Client

    directory.mkdir(parents=True, exist_ok=True)
    env = _worker_env(directory, hash_seed)
    scheduler_file = directory / "scheduler.json"
    cluster = DaskCluster(address="", n_workers=n_workers, hash_seed=hash_seed, directory=directory)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        cluster.processes.append(
            _spawn(
                [
                    str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                    "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                    "--scheduler-file", str(scheduler_file),
                    "--idle-timeout", "900",
                ],
                directory / "scheduler.log",
                env,
                directory,
            )
        )  # fmt: skip
        while not scheduler_file.exists():
            if cluster.processes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the dask scheduler did not start")
            time.sleep(0.1)
        for _ in range(50):  # the file may be seen before it is fully written
            with contextlib.suppress(ValueError, KeyError):
                cluster.address = json.loads(scheduler_file.read_text())["address"]
                break
            time.sleep(0.1)
        if not cluster.address:
            raise RuntimeError(f"no address in {scheduler_file}")
        for i in range(n_workers):
            cluster.processes.append(
                _spawn(
                    [
                        str(DASK), "worker", cluster.address, "--nworkers", "1", "--nthreads", str(nthreads),
                        "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                        "--name", f"worker-{i}",
                        "--local-directory", str(directory / f"worker-{i}"),
                        "--death-timeout", "60",
                    ],
                    directory / f"worker-{i}.log",
                    env,
                    directory,
                )
            )  # fmt: skip
        with Client(cluster.address, timeout=max(1.0, deadline - time.monotonic())) as client:
            client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
    except BaseException as exc:
        stop_dask_cluster(cluster)
        if isinstance(exc, Exception):
            raise RuntimeError(f"could not start a dask cluster: {exc}\n{cluster.logs()}") from exc
        raise
    return cluster


@pytest.fixture(scope="module", name="dask_cluster")
def dask_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and two workers started with the ``dask`` command line on 127.0.0.1."""
    cluster = start_dask_cluster(tmp_path_factory.mktemp("dask-cluster"), n_workers=2)
    try:
        yield cluster
    finally:
        stop_dask_cluster(cluster)


# -- a worker that runs as another user ---------------------------------------------------------
WORKER_USER = "seedline-worker"
RUNUSER = shutil.which("runuser")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or RUNUSER is None, reason="needs root to run a worker as another user"
)
"""Mark for tests that use :func:`foreign_worker`."""


def as_worker_user(*cmd: str) -> list[str]:
    """``cmd`` run as the worker user (``runuser -u seedline-worker -- CMD``)."""
    return [str(RUNUSER), "-u", WORKER_USER, "--", *cmd]


def _ensure_worker_user() -> None:
    if subprocess.run(["id", WORKER_USER], capture_output=True).returncode != 0:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                WORKER_USER,
            ],
            check=True,
            capture_output=True,
        )


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    # the whole process group: runuser and the worker it started as the other user
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def foreign_worker(hash_seed: str) -> Iterator[str]:
    """A scheduler, and one worker running as :data:`WORKER_USER` with ``PYTHONHASHSEED=hash_seed``; yields the address.

    The worker gets seedline's sources on ``PYTHONPATH`` and nothing else: no project
    folder, no store. Skips the test when that user cannot run this interpreter.
    """
    _ensure_worker_user()
    probe = subprocess.run(
        as_worker_user(sys.executable, "-c", "import distributed"), capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(
            f"user {WORKER_USER} cannot run {sys.executable} with distributed: give other users "
            f"execute permission on the interpreter's folders (e.g. chmod o+x /root): {probe.stderr[-300:]!r}"
        )
    work = Path(tempfile.mkdtemp(prefix="seedline-foreign-worker-"))
    work.chmod(0o755)
    scratch = work / "worker"
    scratch.mkdir()
    shutil.chown(scratch, WORKER_USER)
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO / "src"),
        "HOME": str(scratch),
    }
    try:
        scheduler_file = work / "scheduler.json"
        with (work / "scheduler.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                        "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                        "--scheduler-file", str(scheduler_file), "--idle-timeout", "900",
                    ],
                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True,
                )
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        address = ""
        while not address:
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError((work / "scheduler.log").read_text())
            with contextlib.suppress(OSError, ValueError, KeyError):
                address = json.loads(scheduler_file.read_text())["address"]
            time.sleep(0.2)
        with (work / "worker.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    as_worker_user(
                        "env", *(f"{k}={v}" for k, v in env.items()),
                        f"PYTHONHASHSEED={hash_seed}",
                        str(DASK), "worker", address, "--nthreads", "1", "--no-nanny",
                        "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                        "--local-directory", str(scratch), "--death-timeout", "60",
                    ),
                    stdout=log, stderr=subprocess.STDOUT, cwd=scratch, start_new_session=True,
                )
            )  # fmt: skip
        from distributed import Client

        with Client(address, timeout=START_TIMEOUT_S) as client:
            try:
                client.wait_for_workers(1, timeout=START_TIMEOUT_S)
            except TimeoutError as exc:
                raise RuntimeError((work / "worker.log").read_text()) from exc
        yield address
    finally:
        for proc in reversed(procs):
            _stop_group(proc)
        shutil.rmtree(work, ignore_errors=True)
