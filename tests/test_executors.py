"""Executors: the same results, in key order, serially, on processes and on Dask, with any number of workers.

Task functions live at the top of this module because workers import them by name
(``tests.test_executors``); the external cluster gets the repository on its PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seedline import fingerprint_estimator
from seedline.core.errors import SeedlineError
from seedline.core.seeding import SeedPlan
from seedline.execution.executors import (
    Executor,
    ExecutorError,
    TaskError,
    TaskInfo,
    make_executor,
)
from tests.conftest_dask import (  # noqa: F401 - dask_cluster is a fixture
    WORKER_HASH_SEED,
    DaskCluster,
    dask_cluster_fixture,
    start_dask_cluster,
    stop_dask_cluster,
)

REPO = Path(__file__).resolve().parent.parent
MASTER_SEED = 20240601

# ---------------------------------------------------------------------------------------
# Task functions (module level: workers import them).


def fit_trial(key: str, item: dict[str, Any], shared: tuple[Any, Any]) -> dict[str, Any]:
    """A sweep trial in miniature: fit a small forest seeded from the key, return its fingerprint."""
    from sklearn.ensemble import RandomForestClassifier

    time.sleep(item.get("sleep", 0.0))
    X, y = shared
    seed = SeedPlan(MASTER_SEED).derive(f"trial/{key}")
    model = RandomForestClassifier(
        n_estimators=item["trees"], max_depth=item["depth"], random_state=seed, n_jobs=1
    ).fit(X, y)
    return {"key": key, "seed": seed, "fitted": fingerprint_estimator(model)}


_UNPICKLED: dict[str, int] = {}


def _rebuild_counted(token: str, payload: bytes) -> CountedShared:
    _UNPICKLED[token] = _UNPICKLED.get(token, 0) + 1
    return CountedShared(token, payload)


class CountedShared:
    """Shared data that counts, in each process, how many times it was unpickled there."""

    def __init__(self, token: str, payload: bytes) -> None:
        self.token = token
        self.payload = payload

    def __reduce__(self) -> tuple[Any, tuple[str, bytes]]:
        return _rebuild_counted, (self.token, self.payload)


def count_unpickles(key: str, item: Any, shared: CountedShared) -> tuple[int, int]:
    """This worker's pid and how many times it has unpickled ``shared``."""
    return os.getpid(), _UNPICKLED.get(shared.token, 0)


def thread_pools(key: str, item: Any, shared: Any) -> dict[str, int]:
    """Thread counts of every BLAS/OpenMP pool, as seen from inside the task."""
    from threadpoolctl import threadpool_info

    return {str(d["prefix"]): int(d["num_threads"]) for d in threadpool_info()}


def fail_on_b(key: str, item: Any, shared: Any) -> str:
    """Fails for key 'b' only."""
    if key == "b":
        raise ValueError(f"item {item!r} is not acceptable")
    return key


def report_hash(key: str, item: Any, shared: Any) -> dict[str, Any]:
    """The worker's PYTHONHASHSEED and a string hash, which depends on it."""
    return {"env": os.environ.get("PYTHONHASHSEED"), "hash": hash("seedline")}


def sleep_and_record(key: str, item: str, shared: Any) -> str:
    """Write this worker's pid to the folder ``item``, then sleep for a minute."""
    Path(item, f"{key}.pid").write_text(str(os.getpid()))
    time.sleep(60)
    return key


# ---------------------------------------------------------------------------------------
# Fixtures.

BACKENDS = {
    "serial": ("serial", 1),
    "processes-1": ("processes", 1),
    "processes-2": ("processes", 2),
    "dask-1": ("dask", 1),
    "dask-2": ("dask", 2),
}


@pytest.fixture(
    scope="module",
    # pools and clusters start worker interpreters: only the serial executor is quick
    params=[pytest.param(k, marks=[] if k == "serial" else [pytest.mark.slow]) for k in BACKENDS],
)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    kind, workers = BACKENDS[request.param]
    with make_executor(kind, workers=workers, threads=1) as ex:
        yield ex


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any]:
    from sklearn.datasets import make_classification

    return make_classification(n_samples=300, n_features=12, n_informative=6, random_state=0)


def trials() -> dict[str, dict[str, Any]]:
    """Trials inserted out of key order; the first key sleeps, so it completes last on 2 workers."""
    items: dict[str, dict[str, Any]] = {
        f"trial-{i:02d}": {"trees": 5 + i, "depth": 3 + i % 3} for i in (5, 3, 0, 4, 1, 2)
    }
    items["trial-00"]["sleep"] = 0.5
    return items


def reference(data: tuple[Any, Any]) -> dict[str, Any]:
    """The trials run by hand, in a plain loop: what every executor must return."""
    items = trials()
    return {key: fit_trial(key, items[key], data) for key in sorted(items)}


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> Any:
    """Run ``code`` in a fresh interpreter from the repository root; return its JSON output."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={
            **env,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# Every backend.


def test_results_identical_and_ordered_by_key(executor: Executor, data: tuple[Any, Any]) -> None:
    """Fitted-model fingerprints equal a plain loop's, keyed and ordered by key, not completion."""
    expected = reference(data)
    got = executor.map(fit_trial, trials(), shared=data)
    assert list(got) == sorted(trials())
    assert got == expected
    assert list(executor.task_info) == list(got)
    assert all(
        isinstance(info, TaskInfo) and info.key == key for key, info in executor.task_info.items()
    )


def test_shared_is_shipped_once_per_worker(executor: Executor) -> None:
    """Each worker unpickles ``shared`` once, however many tasks and calls use it; serially, never."""
    shared = CountedShared(f"{executor.name}-{executor.workers}-{time.time_ns()}", b"x" * 1_000_000)
    items = {f"task-{i:02d}": i for i in range(12)}
    first = executor.map(count_unpickles, items, shared=shared)
    again = executor.map(count_unpickles, items, shared=shared)
    pids = {pid for pid, _ in [*first.values(), *again.values()]}
    counts = {count for _, count in [*first.values(), *again.values()]}
    if executor.name == "serial":
        assert counts == {0}
        assert pids == {os.getpid()}
    else:
        assert counts == {1}
        assert len(pids) <= executor.workers < len(items)


def test_blas_threads_pinned_inside_tasks(executor: Executor) -> None:
    """Inside every task, every BLAS/OpenMP pool has exactly ``threads`` threads, and TaskInfo says so."""
    got = executor.map(thread_pools, {f"task-{i}": i for i in range(4)})
    for key, pools in got.items():
        assert pools, "no BLAS/OpenMP library found in the worker"
        assert set(pools.values()) == {1}, pools
        info = executor.task_info[key]
        assert info.threads_pinned
        assert set(info.threads.values()) == {1}


def test_task_info_reports_worker(executor: Executor) -> None:
    """TaskInfo names the worker, its pid and host, and its hash seed."""
    executor.map(report_hash, {"a": 1, "b": 2})
    for info in executor.task_info.values():
        assert info.pid > 0 and info.host and info.worker
        assert info.seconds >= 0
        if executor.name == "serial":
            assert info.pid == os.getpid() and info.hash_seed_matches
        elif executor.name == "processes":
            assert info.worker == f"process {info.pid}" and info.pid != os.getpid()
        else:
            assert info.worker.startswith("tcp://127.0.0.1:")
        # the test process's own PYTHONHASHSEED reached the workers
        assert info.hash_seed == os.environ.get("PYTHONHASHSEED")


def test_task_error_names_key_and_worker(executor: Executor) -> None:
    """A failing task raises TaskError naming its key, its worker and the original error; the executor still works."""
    with pytest.raises(TaskError) as caught:
        executor.map(fail_on_b, {"a": 1, "b": 2, "c": 3})
    err = caught.value
    assert isinstance(err, SeedlineError)
    assert err.key == "b"
    assert err.error_type == "builtins.ValueError"
    assert "task 'b' failed" in str(err)
    assert "item 2 is not acceptable" in str(err)
    assert err.worker and err.worker in str(err)
    assert "fail_on_b" in err.traceback
    assert executor.map(fail_on_b, {"a": 1, "c": 3}) == {"a": "a", "c": "c"}


def test_settings_for_manifest(executor: Executor, request: pytest.FixtureRequest) -> None:
    """settings() is what the manifest records: kind, workers, no address for local backends, threads."""
    kind, workers = BACKENDS[request.node.callspec.params["executor"]]
    assert executor.settings() == {
        "executor": kind,
        "workers": workers,
        "address": None,
        "threads": 1,
    }


# ---------------------------------------------------------------------------------------
# Arguments and misuse (no workers needed).


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"kind": "dsk"}, "Did you mean 'dask'"),
        ({"kind": "threads"}, "must be one of 'serial', 'processes', 'dask'; got 'threads'"),
        (
            {"kind": "processes", "workers": 0},
            "'workers' parameter of the processes executor must be an int in the range [1, inf); got 0",
        ),
        ({"kind": "dask", "threads": 1.5}, "'threads' parameter of the dask executor"),
        ({"kind": "processes", "workers": True}, "got True"),
        ({"kind": "serial", "workers": 2}, "workers must be 1; got 2"),
        (
            {"kind": "processes", "address": "tcp://127.0.0.1:8786"},
            "only used by the dask executor",
        ),
        ({"kind": "dask", "address": "  "}, "must look like 'tcp://HOST:PORT'"),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs: dict[str, Any], expected: str) -> None:
    """make_executor rejects a bad kind or value with what was expected, what was found and a hint."""
    with pytest.raises(ExecutorError) as caught:
        make_executor(**kwargs)
    assert expected in str(caught.value)
    assert caught.value.hint


def test_map_needs_module_level_function_and_open_executor() -> None:
    """map refuses lambdas, non-string keys and an executor not entered, on the serial backend too."""
    ex = make_executor("serial")
    with pytest.raises(ExecutorError, match="not open"):
        ex.map(fail_on_b, {"a": 1})
    with ex:
        with pytest.raises(ExecutorError, match="module-level function"):
            ex.map(lambda k, i, s: i, {"a": 1})
        with pytest.raises(ExecutorError, match="string keys"):
            ex.map(fail_on_b, {1: 1})  # type: ignore[dict-item]
        assert ex.map(fail_on_b, {}) == {}


def test_serial_task_error_keeps_the_original_exception() -> None:
    """Serially, TaskError is chained to the task's own exception object, for debugging in-process."""
    with make_executor("serial") as ex, pytest.raises(TaskError) as caught:
        ex.map(fail_on_b, {"b": 7})
    assert isinstance(caught.value.__cause__, ValueError)


def test_task_error_pickles() -> None:
    """TaskError survives pickling with its fields, so it can cross processes like other errors."""
    import pickle

    with make_executor("serial") as ex, pytest.raises(TaskError) as caught:
        ex.map(fail_on_b, {"b": 7})
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.key, copy.worker, copy.error_type, str(copy)) == (
        "b",
        "serial",
        "builtins.ValueError",
        str(caught.value),
    )


def test_serial_restores_thread_pools_after_each_task() -> None:
    """Pinning lasts for the task only: this process's thread pools are as they were afterwards."""
    from threadpoolctl import threadpool_info

    before = {d["prefix"]: d["num_threads"] for d in threadpool_info()}
    with make_executor("serial", threads=1) as ex:
        ex.map(thread_pools, {"a": 1})
    assert {d["prefix"]: d["num_threads"] for d in threadpool_info()} == before


# ---------------------------------------------------------------------------------------
# Fresh interpreters: hash seeds and interrupts.

_HASH_SEED_SCRIPT = """
import json, os
from seedline.execution.executors import make_executor
from tests.test_executors import report_hash

def environ():
    # distributed.proctitle marks the parent with __DASK_PARENT_PID (for process titles only)
    return {k: v for k, v in os.environ.items() if not k.startswith("__DASK_")}

before = environ()
out = {"parent": {"env": os.environ.get("PYTHONHASHSEED"), "hash": hash("seedline")}}
for kind in ("processes", "dask"):
    with make_executor(kind, workers=2) as ex:
        got = ex.map(report_hash, {f"k{i}": i for i in range(6)})
        out[kind] = {k: {**v, "matches": ex.task_info[k].hash_seed_matches, "reported": ex.task_info[k].hash_seed}
                     for k, v in got.items()}
out["environ_unchanged"] = environ() == before
print(json.dumps(out))
"""


@pytest.mark.parametrize("hash_seed", ["12345", "0"])
def test_workers_inherit_pythonhashseed(hash_seed: str) -> None:
    """Process-pool and LocalCluster workers hash like a parent started with PYTHONHASHSEED, and the parent's environment is left alone."""
    out = run_python(_HASH_SEED_SCRIPT, env={**os.environ, "PYTHONHASHSEED": hash_seed})
    assert out["parent"]["env"] == hash_seed
    assert out["environ_unchanged"], "starting workers changed the parent's os.environ"
    for kind in ("processes", "dask"):
        for task in out[kind].values():
            assert task["env"] == task["reported"] == hash_seed, kind
            assert task["hash"] == out["parent"]["hash"], kind
            assert task["matches"], kind


_INTERRUPT_SCRIPT = """
import json, os, signal, sys, tempfile, threading, time
from pathlib import Path
from seedline.execution.executors import make_executor
from tests.test_executors import sleep_and_record

kind, folder = sys.argv[1], Path(tempfile.mkdtemp())
# a shell's background job starts with SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler: give this script a terminal's Ctrl-C whatever started it
signal.signal(signal.SIGINT, signal.default_int_handler)

def interrupt_when_running():
    deadline = time.monotonic() + 60
    while len(list(folder.glob("*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt_when_running, daemon=True).start()
start = time.monotonic()
try:
    with make_executor(kind, workers=2) as ex:
        ex.map(sleep_and_record, {"a": str(folder), "b": str(folder)})
    out = {"interrupted": False}
except KeyboardInterrupt:
    stopped = time.monotonic() - start
    pids = [int(p.read_text()) for p in folder.glob("*.pid")]
    deadline = time.monotonic() + 20
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()
                 and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    out = {"interrupted": True, "seconds": stopped, "pids": pids, "alive": alive}
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_keyboard_interrupt_stops_workers(kind: str) -> None:
    """Ctrl-C during map raises KeyboardInterrupt promptly and leaves no worker running its task."""
    code = _INTERRUPT_SCRIPT.replace("sys.argv[1]", repr(kind))
    out = run_python(code, env=dict(os.environ))
    assert out["interrupted"]
    assert len(out["pids"]) == 2
    assert out["seconds"] < 45, "the executor waited for the tasks instead of stopping them"
    assert out["alive"] == [], f"workers still running: {out['alive']}"


# ---------------------------------------------------------------------------------------
# A real cluster: scheduler and workers started with the dask command line.


def test_external_cluster_results_and_hash_seeds(
    dask_cluster: DaskCluster, data: tuple[Any, Any]
) -> None:
    """On an external scheduler with two workers: the same results in key order, shared shipped once, hash seeds reported."""
    from distributed import Client

    with make_executor("dask", address=dask_cluster.address, workers=2, threads=1) as ex:
        assert ex.settings() == {
            "executor": "dask",
            "workers": 2,
            "address": dask_cluster.address,
            "threads": 1,
        }
        got = ex.map(fit_trial, trials(), shared=data)
        assert list(got) == sorted(trials())
        assert got == reference(data)

        with Client(dask_cluster.address) as client:
            assert {info.worker for info in ex.task_info.values()} <= set(client.nthreads())
        client_pinned = os.environ.get("PYTHONHASHSEED") == WORKER_HASH_SEED
        for info in ex.task_info.values():
            assert info.hash_seed == WORKER_HASH_SEED
            # the test process was (almost surely) not started with the workers' seed: a mismatch to report
            assert info.hash_seed_matches is client_pinned
            assert info.threads_pinned

        shared = CountedShared(f"external-{time.time_ns()}", b"x" * 1_000_000)
        counts = ex.map(count_unpickles, {f"task-{i:02d}": i for i in range(12)}, shared=shared)
        assert {count for _, count in counts.values()} == {1}
        assert len({pid for pid, _ in counts.values()}) <= 2


def test_unreachable_scheduler_is_a_clear_error() -> None:
    """An address where no scheduler listens fails with an ExecutorError naming it, within dask's connect timeout."""
    import dask

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        pytest.raises(
            ExecutorError, match=r"could not connect to the Dask scheduler at 'tcp://127.0.0.1:9'"
        ),
        make_executor("dask", address="tcp://127.0.0.1:9"),
    ):
        pass


def test_multithreaded_workers_are_refused(tmp_path: Path) -> None:
    """A cluster whose workers run several threads is refused: thread pools are pinned per process."""
    cluster = start_dask_cluster(tmp_path / "cluster", n_workers=1, nthreads=2)
    try:
        with (
            pytest.raises(ExecutorError, match=r"(?s)runs 2 threads.*--nthreads 1"),
            make_executor("dask", address=cluster.address),
        ):
            pass
    finally:
        stop_dask_cluster(cluster)
