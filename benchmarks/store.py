"""Store benchmark: runs recorded per second with 8 concurrent writers, SQLite against PostgreSQL.

Each writer is its own process with its own ``Store`` (its own connection), as eight
``seedline run`` processes would be. A *recorded run* is what a run costs the store:
``begin_run`` (a row), one manifest object put into the local object store, and
``finish_run`` (the row updated with its metrics, in one transaction). The writers start
together at a barrier; a trial's figure is the runs of all writers divided by the wall time
from the barrier to the last writer's end. Trials of the two backends alternate (A B, B A,
...) so that a busy neighbour slows both alike; the figures are medians.

PostgreSQL is a throwaway server started as in the tests (tests/services.py, loopback only),
or the one named by ``--pg-url`` (an admin URL: a database is created per trial).

    .venv/bin/python benchmarks/store.py            # 8 writers x 50 runs, 5 trials each
    .venv/bin/python benchmarks/store.py --quick    # 8 writers x 10 runs, 2 trials each
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _writer(
    store_dir: str, database_url: str, worker: int, runs: int, barrier: object, out: object
) -> None:
    from seedline.records.manifest import Manifest
    from seedline.records.tracking import Store, new_run_id

    store = Store(Path(store_dir), database_url=database_url)
    barrier.wait()  # type: ignore[attr-defined]
    for i in range(runs):
        m = Manifest(
            seedline_version="bench",
            run_id=new_run_id(),
            status="running",
            created_at="2026-01-01T00:00:00.000Z",
            spec={"name": "bench", "worker": worker, "i": i},
            spec_fingerprint="spec:bench",
            project_root=store_dir,
        )
        store.begin_run(m)
        m.status = "succeeded"
        m.metrics = {"accuracy": i / runs, "f1": worker / 8}
        store.finish_run(m, duration_s=0.0)
    store.close()
    out.put(time.perf_counter())  # type: ignore[attr-defined]


def one_trial(database_url: str, writers: int, runs: int) -> float:
    """Runs recorded per second by ``writers`` processes writing ``runs`` each into a fresh store."""
    from seedline.records.tracking import Store

    with tempfile.TemporaryDirectory(prefix="seedline-bench-") as tmp:
        store_dir = Path(tmp) / ".seedline"
        store_dir.mkdir()
        url = database_url or f"sqlite:///{store_dir / 'metadata.db'}"
        Store(store_dir, database_url=url).close()  # schema created before the clock starts
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(writers + 1)
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_writer, args=(str(store_dir), url, w, runs, barrier, out))
            for w in range(writers)
        ]
        for p in procs:
            p.start()
        barrier.wait()
        start = time.perf_counter()
        ends = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise RuntimeError(f"a writer exited with {p.exitcode}")
        check = Store(store_dir, database_url=url)
        recorded = len(check.list_runs())
        check.close()
        if recorded != writers * runs:
            raise RuntimeError(f"{recorded} runs recorded, {writers * runs} expected")
        return writers * runs / (max(ends) - start)


@contextlib.contextmanager
def postgres(admin_url: str | None) -> Iterator[object]:
    from tests.services import PostgresServer, postgres_server

    if admin_url:
        yield PostgresServer(admin_url=admin_url, password="")
    else:
        with postgres_server() as server:
            yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 runs per writer, 2 trials")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--pg-url", help="admin URL of a PostgreSQL server to use")
    args = parser.parse_args()
    runs, trials = (10, 2) if args.quick else (50, 5)
    load_before = os.getloadavg()
    sqlite: list[float] = []
    pg: list[float] = []
    with postgres(args.pg_url) as server:
        for t in range(trials):
            order = ["sqlite", "postgresql"] if t % 2 == 0 else ["postgresql", "sqlite"]
            for backend in order:
                if backend == "sqlite":
                    sqlite.append(one_trial("", args.writers, runs))
                else:
                    pg.append(one_trial(server.fresh_database(), args.writers, runs))  # type: ignore[attr-defined]
    load_after = os.getloadavg()
    s, p = statistics.median(sqlite), statistics.median(pg)
    print(
        f"store benchmark: {args.writers} concurrent writer processes x {runs} runs, {trials} trials"
    )
    print(
        f"nproc {os.cpu_count()}  load average before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}  after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print()
    print(f"{'backend':<12} {'median runs/s':>14} {'min':>8} {'max':>8} {'ratio':>8}")
    print(f"{'SQLite':<12} {s:>14.1f} {min(sqlite):>8.1f} {max(sqlite):>8.1f} {'1.00':>8}")
    print(f"{'PostgreSQL':<12} {p:>14.1f} {min(pg):>8.1f} {max(pg):>8.1f} {p / s:>8.2f}")
    print()
    print("ratio = PostgreSQL / SQLite (median runs recorded per second; higher is faster)")


if __name__ == "__main__":
    main()
