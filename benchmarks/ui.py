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

    python benchmarks/ui.py [--runs 10000] [--repeats 7] [--skip-plots]

MLflow's UI on 10,000 MLflow runs is not measured (not done yet; see docs/ui.md).
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
CHROMIUM = "/usr/bin/chromium"
SPEC = """\
name: iris-tree
seed: 11
data:
  source: sklearn:load_iris
  target: target
split:
  kind: holdout
  test_size: 0.3
  stratify: true
pipeline:
  - name: scale
    class: sklearn.preprocessing.StandardScaler
  - name: clf
    class: sklearn.tree.DecisionTreeClassifier
    params: {max_depth: 3, min_samples_leaf: 1}
metrics: [accuracy, f1_macro]
"""


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

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1440, "height": 1000})

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
    return [
        ("chromium: runs page, navigation to first render", render),
        ("chromium: click sort by accuracy to render", statistics.median(sort_times) * 1000),
    ]


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
    args = ap.parse_args()
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
    finally:
        if not args.store:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
