"""UI benchmark: ``seedline ui`` on a store of 10,000 runs, and the cost of the plots a run stores.

1. Plots: the examples (penguins, digits) run with plots and with ``--no-plots`` in this
   process, interleaved; the table shows the median run time of each and the plots' share
   (target: under 10 % of the run).
2. The store: one real run of a tiny pipeline (iris, scaler + decision tree), then 10,000
   runs made from its manifest through the records API (``Store.begin_run`` /
   ``Store.finish_run``, as a run does): each copy gets a new id, a varied ``max_depth`` and
   ``min_samples_leaf`` in its spec, and varied metrics, so filters and sorts have real work.
   Fitting 10,000 real runs would take hours; the stored rows, objects and indexes are those of
   real runs.
3. The UI, served by uvicorn on loopback in this process: the server's response time for the
   runs page (first page, sorted by a metric, filtered by a parameter) with httpx, and the time
   to first render in Chromium (navigation until the page's script has run), then the time
   for a sort by a metric clicked in the browser. Medians of N; the ratio column is the median
   over the 1 s target.

    python benchmarks/ui.py [--runs 10000] [--repeats 7] [--skip-plots] [--skip-mlflow]
                            [--store DIR] [--mlflow-store DIR] [--mlflow-build-minutes M]

4. MLflow's UI, the same way: 10,000 runs logged to an MLflow SQLite store through MLflow's
   client API (``create_run`` + ``log_batch`` + ``set_terminated`` each: two params, two
   metrics), ``mlflow server --backend-store-uri sqlite:///...`` started on loopback as a
   subprocess (one worker), then the ``runs/search`` call its runs table makes (100 runs, newest
   first and sorted by accuracy) with httpx, and in Chromium the experiment's runs table from
   navigation to its first row showing the newest run, and from a click on *Sort* > accuracy to
   the best run in the first row. The table puts both tools' medians side by side (ratio =
   MLflow / seedline). Logging is slow (about 5 runs/s on the 2-core machine under load), so
   ``--mlflow-build-minutes`` stops it and measures the store as it is (the count is printed);
   ``--mlflow-store`` keeps it for the next run, which logs only what is missing.
   Requests that would leave loopback are aborted and make the benchmark fail; MLflow's
   telemetry is switched off (``MLFLOW_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``).

    pip install -e '.[bench]'     # mlflow, playwright, httpx
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the UI tests' project spec and browser set-up (tests/ui_support.py)

from tests.ui_support import CHROMIUM, launch_chromium, loopback_page  # noqa: E402
from tests.ui_support import SPEC as UI_SPEC  # noqa: E402

# the UI tests' spec, with a second swept parameter
SPEC = UI_SPEC.replace("{max_depth: 3}", "{max_depth: 3, min_samples_leaf: 1}")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (nproc {os.cpu_count()})"


def bench_plots(repeats: int) -> list[tuple[str, float, float, float]]:
    import seedline

    rows = []
    for example in ("penguins", "digits"):
        work = Path(tempfile.mkdtemp(prefix=f"bench-{example}-"))
        shutil.copytree(REPO / "examples" / example, work, dirs_exist_ok=True)
        with_plots, without, share = [], [], []
        for i in range(repeats):
            # interleaved, so a busy neighbour slows both alike
            for plots in (True, False) if i % 2 == 0 else (False, True):
                r = seedline.run(work / "seedline.yaml", use_cache=False, plots=plots)
                total = r.manifest.timings["total"]
                (with_plots if plots else without).append(total)
                if plots:
                    share.append(r.manifest.timings["plots"] / total)
        rows.append(
            (
                example,
                statistics.median(with_plots),
                statistics.median(without),
                statistics.median(share),
            )
        )
        shutil.rmtree(work, ignore_errors=True)
    return rows


def build_store(root: Path, n: int) -> tuple[Any, float]:
    import seedline
    from seedline.records.manifest import Manifest
    from seedline.records.tracking import Store, new_run_id
    from seedline.storage.metadata import now_iso

    (root / "seedline.yaml").write_text(SPEC)
    base = seedline.run(root / "seedline.yaml").manifest.to_dict()
    store = Store.open(root)
    rng = random.Random(0)
    t0 = time.perf_counter()
    for i in range(n - 1):
        doc = dict(base)
        doc["run_id"] = new_run_id()
        doc["created_at"] = doc["finished_at"] = now_iso()
        spec = dict(doc["spec"])
        clf = dict(spec["pipeline"][1])
        clf["params"] = {"max_depth": 1 + i % 12, "min_samples_leaf": 1 + (i // 12) % 5}
        spec["pipeline"] = [spec["pipeline"][0], clf]
        doc["spec"] = spec
        acc = min(1.0, 0.6 + 0.03 * (1 + i % 12) + rng.random() * 0.05)
        doc["metrics"] = {"accuracy": acc, "f1_macro": acc - rng.random() * 0.02}
        m = Manifest.model_validate(doc)
        store.begin_run(m)
        store.finish_run(m, duration_s=rng.uniform(0.5, 2.0))
        if (i + 1) % 2000 == 0:
            print(f"  {i + 1} runs stored ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return store, time.perf_counter() - t0


MLFLOW_ENV = {
    # nothing may leave loopback: MLflow's usage telemetry is off
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


def build_mlflow_store(db: Path, n: int, deadline: float | None = None) -> tuple[int, float]:
    """Log runs to an MLflow SQLite store through its client API until it holds ``n`` (resumable).

    Each run is what a tracked iris tree would log: two params (``max_depth``,
    ``min_samples_leaf``, varied as in seedline's store), two metrics, FINISHED. One
    ``create_run`` + ``log_batch`` + ``set_terminated`` per run, MLflow's fastest public path.
    Stops early at ``deadline`` (``time.monotonic()``); returns (runs in the store, seconds).
    """
    os.environ.update(MLFLOW_ENV)
    from mlflow.entities import Metric, Param, ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("iris-tree")
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment("iris-tree", artifact_location=str(db.parent / "artifacts"))
    )
    have = 0
    token = None
    while True:  # count what an earlier, interrupted build logged
        page = client.search_runs(
            [exp_id], run_view_type=ViewType.ALL, max_results=50_000, page_token=token
        )
        have += len(page)
        token = page.token
        if not token:
            break
    rng = random.Random(have)
    t0 = time.perf_counter()
    for i in range(have, n):
        if deadline is not None and time.monotonic() > deadline:
            break
        ts = int(time.time() * 1000)
        run = client.create_run(exp_id, start_time=ts, run_name=f"iris-tree-{i:05d}")
        acc = min(1.0, 0.6 + 0.03 * (1 + i % 12) + rng.random() * 0.05)
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric("accuracy", acc, ts, 0),
                Metric("f1_macro", acc - rng.random() * 0.02, ts, 0),
            ],
            params=[
                Param("max_depth", str(1 + i % 12)),
                Param("min_samples_leaf", str(1 + (i // 12) % 5)),
            ],
        )
        client.set_terminated(run.info.run_id, "FINISHED", end_time=ts + 1000)
        have = i + 1
        if have % 500 == 0:
            print(
                f"  mlflow: {have} runs logged ({time.perf_counter() - t0:.0f} s)", file=sys.stderr
            )
    return have, time.perf_counter() - t0


def serve(store: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    from seedline.ui.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def median_ms(fn: Any, repeats: int) -> float:
    fn()  # warm: first request compiles templates
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def bench_server(url: str, repeats: int) -> list[tuple[str, float]]:
    import httpx

    with httpx.Client(base_url=url, timeout=60) as c:

        def get(path: str) -> Any:
            def call() -> None:
                r = c.get(path)
                r.raise_for_status()

            return call

        return [
            ("server: runs page 1 (newest first)", median_ms(get("/runs"), repeats)),
            (
                "server: runs sorted by accuracy",
                median_ms(get("/runs?sort=metric:accuracy&order=desc"), repeats),
            ),
            (
                "server: runs filtered by max_depth=7",
                median_ms(get("/runs?param=pipeline.clf.params.max_depth%3D7"), repeats),
            ),
            (
                "server: runs page 100 (offset 4950)",
                median_ms(get("/runs?offset=4950"), repeats),
            ),
            ("server: /api/runs (JSON)", median_ms(get("/api/runs"), repeats)),
        ]


def bench_browser(url: str, repeats: int) -> list[tuple[str, float]]:
    if not Path(CHROMIUM).exists():
        return []
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page, foreign = loopback_page(browser)

        def first_render() -> None:
            page.goto(f"{url}/runs", wait_until="commit")
            page.wait_for_selector("body[data-ready='1']")

        def sort_click() -> None:
            page.goto(f"{url}/runs")
            page.wait_for_selector("body[data-ready='1']")
            t = time.perf_counter()
            page.click("th a[data-sort='metric:accuracy']")
            page.wait_for_url("**sort=metric*")
            page.wait_for_selector("body[data-ready='1']")
            sort_times.append(time.perf_counter() - t)

        sort_times: list[float] = []
        render = median_ms(first_render, repeats)
        for _ in range(repeats):
            sort_click()
        browser.close()
    if foreign:
        raise RuntimeError(f"the runs page asked for non-loopback addresses: {foreign[:5]}")
    return [
        ("chromium: runs page, navigation to first render", render),
        ("chromium: click sort by accuracy to render", statistics.median(sort_times) * 1000),
    ]


def serve_mlflow(folder: Path) -> tuple[str, Any]:
    """``mlflow server`` on the SQLite store, on loopback, as a subprocess (one worker, like ours)."""
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--default-artifact-root",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, **MLFLOW_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited {proc.returncode}; see {folder / 'server.log'}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("mlflow server did not start within 10 minutes")


# the run in the first row of MLflow's runs grid (AG Grid keeps DOM order != visual order)
_MLFLOW_FIRST_ROW = "[role=row][row-index='0'] a[href*='/runs/']"


def bench_mlflow(folder: Path, url: str, repeats: int) -> list[tuple[str, float]]:
    """MLflow's UI as seedline's is measured: server response, first render, a sort by accuracy."""
    import httpx
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("iris-tree")
    assert exp is not None
    # a plain (not GenAI) experiment: MLflow 3 then opens on its runs table
    client.set_experiment_tag(
        exp.experiment_id, "mlflow.experimentKind", "custom_model_development"
    )
    newest = client.search_runs([exp.experiment_id], max_results=1)[0].info.run_name
    best = client.search_runs(
        [exp.experiment_id], order_by=["metrics.accuracy DESC"], max_results=1
    )[0].info.run_name
    # the sort is named in the address: MLflow otherwise restores the last one used
    runs_url = (
        f"{url}/#/experiments/{exp.experiment_id}/runs"
        "?orderByKey=attributes.start_time&orderByAsc=false"
    )
    rows: list[tuple[str, float]] = []
    with httpx.Client(base_url=url, timeout=60) as c:

        def search(order: list[str]) -> Any:
            def call() -> None:
                body = {
                    "experiment_ids": [exp.experiment_id],
                    "max_results": 100,
                    "order_by": order,
                }
                c.post("/ajax-api/2.0/mlflow/runs/search", json=body).raise_for_status()

            return call

        rows += [
            ("mlflow server: runs/search, 100 newest", median_ms(search([]), repeats)),
            (
                "mlflow server: runs/search sorted by accuracy",
                median_ms(search(["metrics.`accuracy` DESC"]), repeats),
            ),
        ]
    if not Path(CHROMIUM).exists():
        return rows
    from playwright.sync_api import sync_playwright

    def first_row_is(page: Any, name: str) -> None:
        page.wait_for_function(
            "([sel, name]) => { const a = document.querySelector(sel);"
            " return a !== null && a.innerText.trim() === name; }",
            arg=[_MLFLOW_FIRST_ROW, name],
            timeout=120_000,
        )

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page, foreign = loopback_page(browser)
        render_times: list[float] = []
        sort_times: list[float] = []
        for i in range(repeats + 1):  # the first is a warm-up (the bundle's first download)
            page.goto("about:blank")
            t = time.perf_counter()
            page.goto(runs_url, wait_until="commit")
            print(f"  mlflow trial {i}: loading", file=sys.stderr)
            first_row_is(page, newest)
            if i:
                render_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            page.locator("button:has-text('Sort:')").first.click()
            page.locator("[data-testid=sort-select-accuracy]").click()
            print(f"  mlflow trial {i}: sorting", file=sys.stderr)
            first_row_is(page, best)
            if i:
                sort_times.append(time.perf_counter() - t)
        browser.close()
    if foreign:
        raise RuntimeError(f"MLflow's UI asked for non-loopback addresses: {foreign[:5]}")
    return [
        *rows,
        (
            "mlflow chromium: runs table, navigation to first row",
            statistics.median(render_times) * 1000,
        ),
        ("mlflow chromium: sort by accuracy to first row", statistics.median(sort_times) * 1000),
    ]


# (what is compared, seedline's row, MLflow's row)
PAIRS = [
    (
        "server: first page",
        "server: runs page 1 (newest first)",
        "mlflow server: runs/search, 100 newest",
    ),
    (
        "server: sorted by accuracy",
        "server: runs sorted by accuracy",
        "mlflow server: runs/search sorted by accuracy",
    ),
    (
        "chromium: first render",
        "chromium: runs page, navigation to first render",
        "mlflow chromium: runs table, navigation to first row",
    ),
    (
        "chromium: sort by accuracy",
        "chromium: click sort by accuracy to render",
        "mlflow chromium: sort by accuracy to first row",
    ),
]


def compare_with_mlflow(args: Any, ours: dict[str, float]) -> None:
    """Build (or complete) the MLflow store, serve it, measure it, and print both side by side."""
    folder = args.mlflow_store or Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    folder.mkdir(parents=True, exist_ok=True)
    wanted = args.mlflow_runs or args.runs
    deadline = (
        time.monotonic() + args.mlflow_build_minutes * 60 if args.mlflow_build_minutes else None
    )
    have, secs = build_mlflow_store(folder / "mlflow.db", wanted, deadline)
    note = "" if have >= wanted else f" (stopped at the time limit: {wanted} wanted)"
    print(f"\nmlflow store: {have} runs{note}; this build logged for {secs:.0f} s")
    print(f"load average: {load()}")
    url, proc = serve_mlflow(folder)
    try:
        theirs = dict(bench_mlflow(folder, url, args.repeats))
    finally:
        proc.terminate()
        proc.wait(30)
    for name, ms in theirs.items():
        print(f"{name:<52} {ms:>8.1f} {ms / 1000:>13.3f}")
    print(
        f"\nseedline ({args.runs} runs) against MLflow {_mlflow_version()} ({have} runs), medians"
    )
    print(f"{'measure':<30} {'seedline ms':>12} {'MLflow ms':>10} {'MLflow / seedline':>18}")
    for label, a, b in PAIRS:
        if a in ours and b in theirs:
            print(f"{label:<30} {ours[a]:>12.1f} {theirs[b]:>10.1f} {theirs[b] / ours[a]:>18.2f}")
    if not args.mlflow_store:
        shutil.rmtree(folder, ignore_errors=True)


def _mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--plot-repeats", type=int, default=3)
    ap.add_argument("--skip-plots", action="store_true")
    ap.add_argument(
        "--store",
        type=Path,
        help="Keep the generated project here and reuse it when it exists (building takes minutes).",
    )
    ap.add_argument(
        "--mlflow-store",
        type=Path,
        help="Keep the MLflow store (FOLDER/mlflow.db) here and reuse it; runs missing are logged.",
    )
    ap.add_argument("--mlflow-runs", type=int, help="Runs in the MLflow store (default: --runs).")
    ap.add_argument(
        "--mlflow-build-minutes",
        type=float,
        help="Stop logging MLflow runs after this long and measure the store as it is.",
    )
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument(
        "--build-only",
        choices=["seedline", "mlflow"],
        help="Only build (or complete) one store, into --store / --mlflow-store, and exit.",
    )
    args = ap.parse_args()
    if args.build_only == "mlflow":
        args.mlflow_store.mkdir(parents=True, exist_ok=True)
        deadline = (
            time.monotonic() + args.mlflow_build_minutes * 60 if args.mlflow_build_minutes else None
        )
        have, secs = build_mlflow_store(
            args.mlflow_store / "mlflow.db", args.mlflow_runs or args.runs, deadline
        )
        print(f"mlflow store: {have} runs (this build: {secs:.0f} s)")
        return
    if args.build_only == "seedline":
        args.store.mkdir(parents=True, exist_ok=True)
        _, secs = build_store(args.store, args.runs)
        print(f"seedline store: {args.runs} runs ({secs:.0f} s)")
        return
    print(f"load average before: {load()}")
    if not args.skip_plots:
        print("\nplots stored with each run (median run time, interleaved; target < 10 %)")
        print(f"{'example':<10} {'with plots s':>13} {'--no-plots s':>13} {'plots share':>12}")
        for name, w, wo, share in bench_plots(args.plot_repeats):
            print(f"{name:<10} {w:>13.2f} {wo:>13.2f} {share * 100:>11.1f}%")
    root = args.store or Path(tempfile.mkdtemp(prefix="bench-ui-"))
    try:
        if args.store and (root / ".seedline").is_dir():
            from seedline.records.tracking import Store

            store = Store.find(root)
            print(f"\nstore: reused {root}, {len(store.list_runs())} runs")
        else:
            root.mkdir(parents=True, exist_ok=True)
            store, secs = build_store(root, args.runs)
            print(f"\nstore: {args.runs} runs ({secs:.0f} s through Store.begin_run/finish_run)")
        url, server, thread = serve(store)
        rows = bench_server(url, args.repeats) + bench_browser(url, args.repeats)
        server.should_exit = True
        thread.join(10)
        print(
            f"\n{'measure (median of ' + str(args.repeats) + ')':<52} {'ms':>8} {'/ 1 s target':>13}"
        )
        for name, ms in rows:
            print(f"{name:<52} {ms:>8.1f} {ms / 1000:>13.3f}")
        if not args.skip_mlflow:
            compare_with_mlflow(args, dict(rows))
    finally:
        if not args.store:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
