"""Executor benchmarks: what a task costs on each backend, and does Dask scale on this machine?

One script, one process. It measures, each against a baseline timed in the same process:

1. the per-task overhead of ``Executor.map`` on many trivial tasks, for the serial,
   processes (2 workers) and dask (LocalCluster, 2 workers) executors, against the bare
   backend doing the same calls (a plain loop, ``ProcessPoolExecutor.submit``,
   ``Client.map`` + ``gather``) on the same warm workers: what seedline adds (thread
   pinning, TaskInfo, key ordering) over the backend itself;
2. the start-up cost of each executor: entering it and running one trivial task;
3. scaling: 16 coarse CPU-bound tasks (a RandomForestClassifier of 100 trees each, on
   ``make_classification`` data passed as ``shared``) serially and on 2 workers (dask, and
   processes for comparison). Target: dask is >= 1.7x faster than serial on 2 cores, and
   every backend returns the very same fitted-model fingerprints.

The trials of a subject and its baseline are interleaved (A B, B A, ...) so that a busy
neighbour slows both alike; every figure is the median of its trials.

    .venv/bin/python benchmarks/executors.py            # full run, about three minutes
    .venv/bin/python benchmarks/executors.py --quick    # smoke mode, about a minute
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import gc
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seedline import fingerprint_estimator
from seedline.core.seeding import SeedPlan
from seedline.execution.executors import Executor, make_executor

MASTER_SEED = 7


@dataclass(frozen=True)
class Config:
    """Task counts and trials: full mode measures what the targets are about, quick mode smokes."""

    trivial_serial: int
    trivial_processes: int
    trivial_dask: int
    trials_overhead: int
    trials_start: int
    coarse_tasks: int
    trees: int
    samples: int
    trials_scaling: int
    quiet_wait: float  # scaling trials wait up to this long for neighbours to go quiet


FULL = Config(
    trivial_serial=5000,
    trivial_processes=2000,
    trivial_dask=1000,
    trials_overhead=7,
    trials_start=3,
    coarse_tasks=16,
    trees=100,
    samples=3000,
    trials_scaling=5,
    quiet_wait=90.0,
)
QUICK = Config(
    trivial_serial=1000,
    trivial_processes=300,
    trivial_dask=200,
    trials_overhead=3,
    trials_start=1,
    coarse_tasks=16,
    trees=100,
    samples=3000,
    trials_scaling=1,
    quiet_wait=0.0,
)


@dataclass
class Row:
    """One line of the results table; ``ratio`` is always figure / baseline figure."""

    name: str
    unit: str
    figure: float
    baseline_name: str
    baseline: float
    target: str
    passed: bool | None
    trials: int
    figure_range: tuple[float, float] = (0.0, 0.0)
    others_cores: float | None = None  # CPU used by other processes meanwhile, in cores

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else float("nan")


# -- tasks (module level: workers import them; dask ships __main__ functions by value) ------
def trivial(key: str, item: int, shared: Any) -> int:
    """Nothing to do: all that is measured is the executor."""
    return item


def fit_forest(key: str, item: int, shared: tuple[Any, Any]) -> str:
    """A coarse task: fit a 100-tree forest seeded from the key, return its fingerprint."""
    from sklearn.ensemble import RandomForestClassifier

    X, y = shared
    seed = SeedPlan(MASTER_SEED).derive(f"bench/{key}")
    model = RandomForestClassifier(n_estimators=item, random_state=seed, n_jobs=1).fit(X, y)
    return str(fingerprint_estimator(model))


def _bare_task(key: str, item: int) -> int:
    return item


# -- measuring -----------------------------------------------------------------------------
def _busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (/proc/stat), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _family() -> list[int]:
    """This process and its live descendants (pool workers, dask nannies and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    family, todo = [os.getpid()], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            family.append(child)
            todo.append(child)
    return family


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by the live processes ``pids``."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Timed:
    """Wall seconds of each trial of each case, and the cores other processes used meanwhile."""

    seconds: dict[str, list[float]]
    others: dict[str, list[float]]

    def others_median(self, *names: str) -> float | None:
        values = [v for n in names for v in self.others[n]]
        return median(values) if values else None


def others_now(window: float = 1.0) -> float | None:
    """Cores kept busy by processes other than this one and its descendants, over ``window`` s."""
    family = _family()
    busy0, own0 = _busy_seconds(), _cpu_seconds(family)
    time.sleep(window)
    busy1, own1 = _busy_seconds(), _cpu_seconds(family)
    if busy0 is None or busy1 is None:
        return None
    return max(0.0, ((busy1 - busy0) - (own1 - own0)) / window)


def wait_quiet(max_seconds: float, threshold: float = 0.25) -> None:
    """Wait, at most ``max_seconds``, until other processes use less than ``threshold`` cores."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        others = others_now()
        if others is None or others < threshold:
            return


def interleaved(
    cases: dict[str, Callable[[], object]], trials: int, quiet_wait: float = 0.0
) -> Timed:
    """Time every case ``trials`` times; the order rotates every trial so none always goes first.

    The machine is shared, so each trial also records how many cores processes other than
    this one and its descendants kept busy meanwhile (from /proc; workers started during
    the trial count as others). With ``quiet_wait``, each trial first waits up to that many
    seconds for the neighbours to go quiet.
    """
    names = list(cases)
    timed = Timed({n: [] for n in names}, {n: [] for n in names})
    for i in range(trials):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            gc.collect()
            if quiet_wait:
                wait_quiet(quiet_wait)
            family = _family()
            busy0, own0 = _busy_seconds(), _cpu_seconds(family)
            t0 = time.perf_counter()
            cases[name]()
            wall = time.perf_counter() - t0
            busy1, own1 = _busy_seconds(), _cpu_seconds(family)
            timed.seconds[name].append(wall)
            if busy0 is not None and busy1 is not None:
                others = (busy1 - busy0) - (own1 - own0)
                timed.others[name].append(max(0.0, others / wall))
    return timed


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def per_task_row(name: str, baseline: str, n: int, timed: Timed, trials: int) -> Row:
    ours = [t / n * 1e6 for t in timed.seconds["seedline"]]
    bare = [t / n * 1e6 for t in timed.seconds["bare"]]
    return Row(
        name=name,
        unit="µs",
        figure=median(ours),
        baseline_name=baseline,
        baseline=median(bare),
        target="-",
        passed=None,
        trials=trials,
        figure_range=(min(ours), max(ours)),
        others_cores=timed.others_median("seedline", "bare"),
    )


# -- 1. per-task overhead ------------------------------------------------------------------
def bench_overhead(cfg: Config) -> list[Row]:
    rows = []
    items = {f"t{i:06d}": i for i in range(cfg.trivial_serial)}
    with make_executor("serial") as ex:
        ex.map(trivial, items)
        timed = interleaved(
            {
                "seedline": lambda: ex.map(trivial, items),
                "bare": lambda: {k: trivial(k, items[k], None) for k in sorted(items)},
            },
            cfg.trials_overhead,
        )
    rows.append(
        per_task_row("per task: serial", "plain loop", len(items), timed, cfg.trials_overhead)
    )

    items = {f"t{i:06d}": i for i in range(cfg.trivial_processes)}
    with (
        make_executor("processes", workers=2) as ex,
        cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):

        def bare_pool() -> dict[str, int]:
            futures = {k: pool.submit(_bare_task, k, v) for k, v in items.items()}
            return {k: f.result() for k, f in futures.items()}

        ex.map(trivial, items)
        bare_pool()
        timed = interleaved(
            {"seedline": lambda: ex.map(trivial, items), "bare": bare_pool}, cfg.trials_overhead
        )
    rows.append(
        per_task_row(
            "per task: processes(2)",
            "ProcessPoolExecutor.submit",
            len(items),
            timed,
            cfg.trials_overhead,
        )
    )

    from distributed import Client

    items = {f"t{i:06d}": i for i in range(cfg.trivial_dask)}
    with make_executor("dask", workers=2) as ex, Client(ex.address, set_as_default=False) as client:
        keys, values = list(items), list(items.values())

        def bare_dask() -> list[int]:
            return list(client.gather(client.map(_bare_task, keys, values, pure=False)))

        ex.map(trivial, items)
        bare_dask()
        timed = interleaved(
            {"seedline": lambda: ex.map(trivial, items), "bare": bare_dask}, cfg.trials_overhead
        )
    rows.append(
        per_task_row(
            "per task: dask(2)", "Client.map + gather", len(items), timed, cfg.trials_overhead
        )
    )
    return rows


# -- 2. start-up ---------------------------------------------------------------------------
def bench_start(cfg: Config) -> list[Row]:
    def start(kind: str, workers: int) -> Callable[[], object]:
        def once() -> object:
            # every worker runs one task, so every worker has started and imported sklearn
            with make_executor(kind, workers=workers) as ex:
                return ex.map(trivial, {f"t{i}": i for i in range(workers)})

        return once

    timed = interleaved(
        {"processes": start("processes", 2), "dask": start("dask", 2)}, cfg.trials_start
    )
    rows = []
    for kind, label in (("processes", "processes(2)"), ("dask", "dask(2)")):
        seconds = timed.seconds[kind]
        rows.append(
            Row(
                name=f"start: {label}, enter+1st map+exit",
                unit="s",
                figure=median(seconds),
                baseline_name="-",
                baseline=float("nan"),
                target="-",
                passed=None,
                trials=cfg.trials_start,
                figure_range=(min(seconds), max(seconds)),
                others_cores=timed.others_median(kind),
            )
        )
    return rows


# -- 3. scaling ----------------------------------------------------------------------------
def bench_scaling(cfg: Config) -> tuple[list[Row], dict[str, Any]]:
    from sklearn.datasets import make_classification

    data = make_classification(
        n_samples=cfg.samples, n_features=20, n_informative=10, random_state=0
    )
    items = {f"trial-{i:02d}": cfg.trees for i in range(cfg.coarse_tasks)}
    executors: dict[str, Executor] = {
        "serial": make_executor("serial"),
        "dask": make_executor("dask", workers=2),
        "processes": make_executor("processes", workers=2),
    }
    results: dict[str, list[dict[str, str]]] = {name: [] for name in executors}
    task_seconds: dict[str, list[float]] = {name: [] for name in executors}
    with executors["serial"], executors["dask"], executors["processes"]:
        # warm up: workers started, `shared` shipped, sklearn.ensemble imported everywhere
        for ex in executors.values():
            ex.map(fit_forest, {f"warm-{i}": 1 for i in range(4)}, shared=data)

        def run(name: str) -> Callable[[], None]:
            def once() -> None:
                ex = executors[name]
                results[name].append(ex.map(fit_forest, items, shared=data))
                task_seconds[name].extend(info.seconds for info in ex.task_info.values())

            return once

        timed = interleaved(
            {name: run(name) for name in executors}, cfg.trials_scaling, cfg.quiet_wait
        )

    every = [r for runs in results.values() for r in runs]
    identical = all(r == every[0] for r in every)
    serial = median(timed.seconds["serial"])
    rows = []
    for name, target in (("dask", 1.7), ("processes", None)):
        seconds = timed.seconds[name]
        speedup = serial / median(seconds)
        rows.append(
            Row(
                name=f"scaling: {cfg.coarse_tasks} forests, {name}(2)",
                unit="s",
                figure=median(seconds),
                baseline_name="serial",
                baseline=serial,
                target=f"speed-up >= {target}x" if target else "-",
                passed=(speedup >= target and identical) if target else None,
                trials=cfg.trials_scaling,
                figure_range=(min(seconds), max(seconds)),
                others_cores=timed.others_median(name, "serial"),
            )
        )
    notes = {
        "identical": identical,
        "runs_compared": len(every),
        "median_task_seconds": {k: round(median(v), 3) for k, v in task_seconds.items()},
        "speedup": {row.name.split(", ")[1]: round(1 / row.ratio, 2) for row in rows},
        # the fastest trial of each backend: the least disturbed by neighbours
        "best_speedup": {
            f"{name}(2)": round(min(timed.seconds["serial"]) / min(timed.seconds[name]), 2)
            for name in ("dask", "processes")
        },
        "trials": {
            name: [
                {"seconds": round(t, 3), "others_cores": round(o, 2)}
                for t, o in zip(timed.seconds[name], timed.others[name], strict=False)
            ]
            for name in executors
        },
    }
    return rows, notes


# -- report --------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import dask
    import distributed
    import sklearn

    return {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "loadavg": os.getloadavg(),
    }


def fmt(value: float, unit: str, with_unit: bool = True) -> str:
    if value != value:  # nan: no baseline
        return "-"
    text = f"{value:.1f}" if unit == "µs" else f"{value:.3f}"
    return f"{text} {unit}" if with_unit else text


def print_table(rows: list[Row]) -> None:
    header = (
        "benchmark",
        "N",
        "figure",
        "range",
        "baseline",
        "baseline fig.",
        "ratio",
        "target",
        "result",
        "others",
    )
    lines = [
        (
            r.name,
            str(r.trials),
            fmt(r.figure, r.unit),
            f"{fmt(r.figure_range[0], r.unit, False)}-{fmt(r.figure_range[1], r.unit, False)}",
            r.baseline_name,
            fmt(r.baseline, r.unit),
            "-" if r.ratio != r.ratio else f"{r.ratio:.2f}x",
            r.target,
            "-" if r.passed is None else ("PASS" if r.passed else "FAIL"),
            "?" if r.others_cores is None else f"{r.others_cores:.1f} cores",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    right = {1, 2, 3, 5, 6, 9}

    def show(cells: tuple[str, ...]) -> str:
        padded = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    print(show(header))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(show(line))


BENCHMARKS = ("overhead", "start", "scaling")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts, few trials")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run only these (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows and machine details here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds each scaling trial may wait for other processes to go quiet "
        f"(default {FULL.quiet_wait:.0f}, 0 with --quick)",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.quiet_wait is not None:
        cfg = dataclasses.replace(cfg, quiet_wait=args.quiet_wait)
    only = set(args.only or BENCHMARKS)

    before = machine()
    print(
        f"seedline executor benchmarks ({'quick' if args.quick else 'full'}): {before['nproc']} cores, "
        f"{before['cpu']}; python {before['python']}, sklearn {before['sklearn']}, "
        f"dask {before['dask']}; load average {before['loadavg'][0]:.2f}",
        flush=True,
    )
    rows: list[Row] = []
    notes: dict[str, Any] = {}
    if "overhead" in only:
        rows += bench_overhead(cfg)
    if "start" in only:
        rows += bench_start(cfg)
    if "scaling" in only:
        scaling, notes = bench_scaling(cfg)
        rows += scaling
    after = os.getloadavg()

    print()
    print_table(rows)
    if notes:
        print(
            f"\nscaling: speed-up over serial {notes['speedup']}; results identical across "
            f"{notes['runs_compared']} runs of 3 backends: {notes['identical']}; "
            f"median task time {notes['median_task_seconds']} s"
        )
        print(f"fastest trial against fastest serial trial: {notes['best_speedup']}")
        for name, trials in notes["trials"].items():
            cells = ", ".join(f"{t['seconds']:.2f} s ({t['others_cores']:.1f})" for t in trials)
            print(f"  {name:<9} trials, seconds (others' cores): {cells}")
    print(f"load average after: {after[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": before,
                    "loadavg_after": after,
                    "rows": [asdict(r) for r in rows],
                    "scaling": notes,
                },
                indent=2,
            )
        )
    missed = [r.name for r in rows if r.passed is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
