"""Dask workers anywhere: a worker that can read neither the project folder nor the store runs a sweep.

The worker runs as another user (created with ``useradd`` when the tests run as root) and
the project folder is mode 700, so the worker can import the spec's project-local module
only from the sources the client ships, and can record nothing itself: trials come back
to the client, which records them. Needs root (to create the user and drop to it).
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
from pathlib import Path
from typing import Any

import pytest

from .conftest import git, make_project, run_cli

REPO = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).parent / "dask"
WORKER_USER = "seedline-worker"
RUNUSER = shutil.which("runuser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or RUNUSER is None, reason="needs root to run a worker as another user"
    ),
]

FEATLIB = '''"""Helpers of the features module: a second project-local module, imported by the first."""
import numpy as np


def product(a, b):
    return np.asarray(a, dtype=float) * np.asarray(b, dtype=float)
'''

FEATURES = '''"""A project-local transformer: appends the product of the first two columns."""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from featlib import product


class Interactions(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        return np.hstack([X, product(X[:, :1], X[:, 1:2])])
'''


def project_with_features(tmp: Path) -> Path:
    """The penguins example with a project-local ``features.Interactions`` step, committed."""
    root = make_project(tmp, "penguins")
    (root / "featlib.py").write_text(FEATLIB)
    (root / "features.py").write_text(FEATURES)
    spec = root / "seedline.yaml"
    spec.write_text(
        spec.read_text().replace(
            "  - name: clf\n", "  - name: inter\n    class: features.Interactions\n  - name: clf\n"
        )
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "local features")
    return root


def _ensure_user() -> None:
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


def _as_worker(*cmd: str) -> list[str]:
    return [str(RUNUSER), "-u", WORKER_USER, "--", *cmd]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def spec_hash_seed() -> str:
    """The PYTHONHASHSEED the CLI pins for the penguins spec (the workers are started with it)."""
    import yaml

    from seedline.core.seeding import SeedPlan

    seed = yaml.safe_load((REPO / "examples" / "penguins" / "seedline.yaml").read_text())["seed"]
    return str(SeedPlan(seed).hash_seed())


@pytest.fixture(scope="module")
def foreign_worker() -> Iterator[str]:
    """A scheduler, and one worker running as another user with the spec's hash seed; yields the address."""
    _ensure_user()
    probe = subprocess.run(
        _as_worker(sys.executable, "-c", "import distributed"), capture_output=True
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
        deadline = time.monotonic() + 60
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
                    _as_worker(
                        "env", *(f"{k}={v}" for k, v in env.items()),
                        f"PYTHONHASHSEED={spec_hash_seed()}",
                        str(DASK), "worker", address, "--nthreads", "1", "--no-nanny",
                        "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                        "--local-directory", str(scratch), "--death-timeout", "60",
                    ),
                    stdout=log, stderr=subprocess.STDOUT, cwd=scratch, start_new_session=True,
                )
            )  # fmt: skip
        from distributed import Client

        with Client(address, timeout=60) as client:
            try:
                client.wait_for_workers(1, timeout=60)
            except TimeoutError as exc:
                raise RuntimeError((work / "worker.log").read_text()) from exc
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def _sweep(root: Path, *args: str) -> dict[str, Any]:
    out = run_cli(
        root, "sweep", "--param", "pipeline.clf.n_estimators=3,5", "--json", "--no-cache", *args
    )
    return dict(json.loads(out.stdout))


def manifest(root: Path, run_id: str) -> dict[str, Any]:
    from seedline.records.tracking import Store

    store = Store.open(root)
    try:
        return store.manifest(run_id).to_dict()
    finally:
        store.close()


def test_a_worker_without_the_project_or_the_store_sweeps_like_serial(
    foreign_worker: str, tmp_path: Path
) -> None:
    """Trials on a worker that cannot read the project give the serial fingerprints; the client records them."""
    root = project_with_features(tmp_path)
    root.chmod(0o700)
    denied = subprocess.run(_as_worker("test", "-r", str(root / "features.py")))
    assert denied.returncode != 0, "the worker user must not be able to read the project"

    serial = _sweep(root)
    dask = _sweep(root, "--executor", "dask", "--address", foreign_worker)
    assert [t["status"] for t in dask["trials"]] == ["succeeded", "succeeded"], dask
    for key in ("model", "predictions"):
        assert [t["fingerprints"][key] for t in dask["trials"]] == [
            t["fingerprints"][key] for t in serial["trials"]
        ]
    assert [t["metrics"] for t in dask["trials"]] == [t["metrics"] for t in serial["trials"]]
    assert dask["warnings"] == []
    # recorded by the client, with the local sources stored and the worker's true hash seed
    shown = manifest(root, dask["trials"][1]["run_id"])
    assert set(shown["code"]["local_modules"]) == {"features", "featlib"}
    assert all(m["object"] for m in shown["code"]["local_modules"].values())
    assert shown["seeds"]["hash_seed"]["pinned"] is True
    assert shown["fingerprints"]["code"] == serial["trials"][1]["fingerprints"]["code"]
    assert shown["settings"]["address"] == foreign_worker


def test_trials_on_workers_with_another_hash_seed_are_marked(
    foreign_worker: str, tmp_path: Path
) -> None:
    """A trial whose worker lacks the client's PYTHONHASHSEED is recorded as not pinned, with how to start workers."""
    root = project_with_features(tmp_path)
    # another master seed: the CLI pins another hash seed than the worker's
    report = _sweep(root, "--executor", "dask", "--address", foreign_worker, "--set", "seed=7")
    assert [t["status"] for t in report["trials"]] == ["succeeded", "succeeded"]
    assert len(report["warnings"]) == 2 and "PYTHONHASHSEED" in report["warnings"][0]
    assert "--no-nanny" in report["warnings"][0]
    shown = manifest(root, report["trials"][0]["run_id"])
    hash_seed = shown["seeds"]["hash_seed"]
    assert hash_seed["pinned"] is False and hash_seed["matches_client"] is False
    assert hash_seed["PYTHONHASHSEED"] == spec_hash_seed()
