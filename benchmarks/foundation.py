"""Foundation benchmarks: is seedline fast enough to be invisible?

One script, one process. It measures four things, each against a baseline timed in the
same process, and prints a table of medians, ratios and pass/fail against the targets:

1. fingerprint throughput of a 1 GiB buffer (``fingerprint_bytes``) and of a 1 GiB file
   already in the page cache (``fingerprint_file``), against ``hashlib.md5`` on the same
   bytes (what DVC uses) and a plain memory copy of them;
2. the table fingerprint of a 10M x 10 float64 DataFrame against
   ``pandas.util.hash_pandas_object``;
3. the wall time of ``seedline.run`` on ``examples/digits`` against the same pipeline fit and
   scored in plain scikit-learn (with the per-phase breakdown of seedline's run);
4. the start time of ``seedline --help`` against ``python -c "import sklearn"``.

The machine is assumed shared and noisy: the trials of a subject and its baseline are
interleaved, in an order that rotates every trial (A B, B A, ...), so that a busy neighbour
hurts both alike, and every figure is the median of its trials.

    .venv/bin/python benchmarks/foundation.py            # full run, one to two minutes
    .venv/bin/python benchmarks/foundation.py --quick    # smoke mode, well under a minute
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30
GB = 1e9  # throughput figures are in decimal GB/s (10^9 bytes per second)


@dataclass(frozen=True)
class Config:
    """Sizes and trial counts: full mode measures what the targets are about, quick mode smokes."""

    buffer_bytes: int
    table_rows: int
    table_cols: int
    trials_bytes: int
    trials_table: int
    trials_run: int
    trials_cli: int


FULL = Config(
    buffer_bytes=GIB,
    table_rows=10_000_000,
    table_cols=10,
    trials_bytes=7,
    trials_table=7,
    trials_run=7,
    trials_cli=15,
)
QUICK = Config(
    buffer_bytes=128 << 20,
    table_rows=1_000_000,
    table_cols=10,
    trials_bytes=3,
    trials_table=3,
    trials_run=3,
    trials_cli=5,
)


@dataclass
class Row:
    """One line of the results table; ``ratio`` is always figure / baseline figure."""

    name: str
    unit: str
    figure: float
    baseline_name: str
    baseline: float
    target: str  # empty: a row for comparison, with no target of its own
    passed: bool
    trials: int
    figure_range: tuple[float, float] = (0.0, 0.0)
    others_cores: float | None = None  # CPU used by other processes meanwhile, in cores

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else float("nan")


# -- measuring ---------------------------------------------------------------------------------
def interleaved(cases: dict[str, Callable[[], object]], trials: int) -> dict[str, list[float]]:
    """Wall seconds of each case per trial; the order rotates every trial so none always goes first.

    A case that also prepares or checks something around what is measured (wipes a cache,
    reads the manifest it made) returns the seconds of the measured part itself, a float;
    otherwise the whole call is timed.
    """
    names = list(cases)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(trials):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            gc.collect()
            t0 = time.perf_counter()
            measured = cases[name]()
            elapsed = time.perf_counter() - t0
            times[name].append(measured if isinstance(measured, float) else elapsed)
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def rate(nbytes: int, seconds: list[float]) -> tuple[float, tuple[float, float]]:
    """Median throughput in GB/s, and the (slowest, fastest) trial."""
    rates = [nbytes / GB / s for s in seconds]
    return median(rates), (min(rates), max(rates))


def free_memory() -> None:
    gc.collect()


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (/proc/stat), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OthersLoad:
    """How many cores other processes kept busy while a benchmark ran (ours and our children excluded)."""

    def __enter__(self) -> OthersLoad:
        self.busy0 = _busy_seconds()
        self.own0 = self._own()
        self.wall0 = time.perf_counter()
        self.cores: float | None = None
        return self

    def __exit__(self, *_exc: object) -> None:
        busy1 = _busy_seconds()
        wall = time.perf_counter() - self.wall0
        if self.busy0 is None or busy1 is None or wall <= 0:
            return
        others = (busy1 - self.busy0) - (self._own() - self.own0)
        self.cores = max(0.0, others / wall)

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system


# -- 1. bytes and files ------------------------------------------------------------------------
def _time_bytes(size: int, trials: int) -> dict[str, list[float]]:
    from seedline import fingerprint_file
    from seedline.core.fingerprint import fingerprint_bytes

    data = np.random.default_rng(0).bytes(size)
    view = memoryview(data)
    src = np.frombuffer(data, dtype=np.uint8)
    dst = np.ones_like(src)  # allocated and written once, so the copy below pays no page faults
    fd, name = tempfile.mkstemp(prefix="seedline-bench-", suffix=".bin", dir="/tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(view)
            f.flush()
            os.fsync(f.fileno())  # clean pages: no writeback competes with the trials
        # warm-up, which also reads the file into the page cache, and a sanity check
        in_memory = fingerprint_bytes(view)
        on_disk = fingerprint_file(name)
        if in_memory.split(":", 1)[1] != on_disk.split(":", 1)[1]:
            raise RuntimeError(f"file and buffer fingerprints differ: {on_disk} vs {in_memory}")
        hashlib.md5(view).digest()
        np.copyto(dst, src)
        return interleaved(
            {
                "fingerprint_bytes": lambda: fingerprint_bytes(view),
                "fingerprint_file": lambda: fingerprint_file(name),
                "md5": lambda: hashlib.md5(view).digest(),
                "copy": lambda: np.copyto(dst, src),
            },
            trials,
        )
    finally:
        os.unlink(name)


def bench_bytes(cfg: Config) -> list[Row]:
    """fingerprint_bytes and fingerprint_file (page-cached) vs md5 and a memory copy."""
    size = cfg.buffer_bytes
    times = _time_bytes(size, cfg.trials_bytes)
    free_memory()  # the buffers went out of scope with _time_bytes

    label = f"{size / GIB:g} GiB" if size >= GIB else f"{size >> 20} MiB"
    md5, _ = rate(size, times["md5"])
    copy, _ = rate(size, times["copy"])
    rows: list[Row] = []
    for subject, title in (
        ("fingerprint_bytes", f"fingerprint_bytes, {label} buffer"),
        ("fingerprint_file", f"fingerprint_file, {label} cached file"),
    ):
        fig, rng = rate(size, times[subject])
        for base_name, base in (("hashlib.md5", md5), ("memory copy", copy)):
            rows.append(
                Row(
                    name=title,
                    unit="GB/s",
                    figure=fig,
                    baseline_name=base_name,
                    baseline=base,
                    target=">= 10 GB/s",
                    passed=fig >= 10.0,
                    trials=cfg.trials_bytes,
                    figure_range=rng,
                )
            )
    return rows


# -- 2. tables ---------------------------------------------------------------------------------
def _time_table(cfg: Config, digests: set[str]) -> tuple[int, dict[str, list[float]]]:
    import pandas as pd

    from seedline import fingerprint_table

    rng = np.random.default_rng(0)
    df = pd.DataFrame({f"c{i}": rng.standard_normal(cfg.table_rows) for i in range(cfg.table_cols)})
    nbytes = int(df.memory_usage(index=False).sum())
    digests.add(fingerprint_table(df).digest)  # warm-up
    pd.util.hash_pandas_object(df, index=False)
    times = interleaved(
        {
            "fingerprint_table": lambda: digests.add(fingerprint_table(df).digest),
            "hash_pandas_object": lambda: pd.util.hash_pandas_object(df, index=False),
        },
        cfg.trials_table,
    )
    return nbytes, times


def bench_table(cfg: Config) -> list[Row]:
    """fingerprint_table of a float64 DataFrame vs pandas.util.hash_pandas_object."""
    digests: set[str] = set()
    nbytes, times = _time_table(cfg, digests)
    free_memory()  # the DataFrame went out of scope with _time_table
    if len(digests) != 1:
        raise RuntimeError(f"fingerprint_table is not deterministic: {digests}")
    fig, span = rate(nbytes, times["fingerprint_table"])
    base, _ = rate(nbytes, times["hash_pandas_object"])
    rows_m = cfg.table_rows / 1e6
    return [
        Row(
            name=f"fingerprint_table, {rows_m:g}M x {cfg.table_cols} float64",
            unit="GB/s",
            figure=fig,
            baseline_name="hash_pandas_object",
            baseline=base,
            target=">= 8 GB/s",
            passed=fig >= 8.0,
            trials=cfg.trials_table,
            figure_range=span,
        )
    ]


# -- 3. run overhead ---------------------------------------------------------------------------
def plain_digits(split_seed: int, random_states: dict[str, int]) -> Callable[[], dict[str, Any]]:
    """The digits example written by hand: load, split, fit and score, BLAS pinned to 1 thread."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    def once() -> dict[str, Any]:
        t0 = time.perf_counter()
        frame = load_digits(as_frame=True).frame
        X = frame.drop(columns="target")
        y = frame["target"]
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, stratify=y, random_state=split_seed
        )
        pipe = Pipeline(
            [
                ("scale", StandardScaler()),
                ("pca", PCA(n_components=32, svd_solver="randomized")),
                ("clf", RandomForestClassifier(n_estimators=150)),
            ]
        )
        pipe.set_params(**random_states)
        t1 = time.perf_counter()
        with threadpool_limits(limits=1):
            pipe.fit(X_train, y_train)
            t2 = time.perf_counter()
            metrics = {
                m: float(get_scorer(m)(pipe, X_test, y_test)) for m in ("accuracy", "f1_macro")
            }
        t3 = time.perf_counter()
        return {"timings": {"load": t1 - t0, "fit": t2 - t1, "score": t3 - t2}, "metrics": metrics}

    return once


# what each of seedline's manifest.timings phases covers (see execution/runner.py)
PHASES = {
    "load": "load (read data, fingerprint table, compile)",
    "code": "code (git capture)",
    "environment": "environment (packages, thread pools)",
    "fit": "fit (fit + fingerprint each step)",
    "score": "score (scorers + predict + predict_proba)",
    "save": "save (skops model, probe, fingerprints)",
}


@dataclass
class Phases:
    """Per-phase medians of the run benchmark: one column per variant, one line per phase."""

    columns: list[str]
    lines: list[tuple[str, list[float | None]]]
    notes: list[str]


def _med(rows: list[dict[str, float]], key: str) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return median(vals) if vals else None


def bench_run(cfg: Config) -> tuple[list[Row], Phases]:
    """seedline.run on a temp copy of examples/digits vs the same pipeline in plain Python.

    The main row is the default call. When ``run`` has a step cache (a ``use_cache``
    parameter), a second row runs it with ``use_cache=False``: that one always fits, so it
    isolates the bookkeeping overhead from whether the cache hit.
    """
    import inspect

    from seedline.execution.runner import run

    has_cache = "use_cache" in inspect.signature(run).parameters
    variants: dict[str, dict[str, Any]] = {"seedline": {}}
    if has_cache:
        variants["seedline, no cache"] = {"use_cache": False}
    tmp = Path(tempfile.mkdtemp(prefix="seedline-bench-"))
    project = tmp / "digits"
    shutil.copytree(REPO / "examples" / "digits", project)
    spec = project / "seedline.yaml"
    timings: dict[str, list[dict[str, float]]] = {v: [] for v in [*variants, "plain"]}
    cache_status: list[str] = []
    try:
        # the warm-up also creates the store, which only a project's first run pays
        warm = run(spec, project_root=project)
        m = warm.manifest
        assert m.seeds is not None and m.data is not None
        random_states = {k: int(v["seed"]) for k, v in m.seeds.random_states.items()}
        plain = plain_digits(int(m.data.split["seed"]), random_states)
        plain_metrics = plain()["metrics"]
        if plain_metrics != warm.metrics:
            raise RuntimeError(f"not the same pipeline: {plain_metrics} vs {warm.metrics}")

        def seedline_once(variant: str) -> Callable[[], None]:
            def once() -> None:
                t0 = time.perf_counter()
                result = run(spec, project_root=project, **variants[variant])
                wall = time.perf_counter() - t0
                timings[variant].append({**result.manifest.timings, "wall": wall})
                if variant == "seedline":
                    cache_status.extend(
                        f"{s.name}:{getattr(s, 'cache', None)}" for s in result.manifest.steps
                    )

            return once

        def plain_once() -> None:
            t0 = time.perf_counter()
            out = plain()
            timings["plain"].append({**out["timings"], "wall": time.perf_counter() - t0})

        cases: dict[str, Callable[[], object]] = {v: seedline_once(v) for v in variants}
        cases["plain"] = plain_once
        times = interleaved(cases, cfg.trials_run)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        free_memory()

    base = median(times["plain"])
    rows = []
    for variant, kwargs in variants.items():
        fig = median(times[variant])
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        rows.append(
            Row(
                name=f"seedline.run({args}), digits" if args else "seedline.run, examples/digits",
                unit="s",
                figure=fig,
                baseline_name="plain sklearn",
                baseline=base,
                target="<= 1.25x",
                passed=fig / base <= 1.25,
                trials=cfg.trials_run,
                figure_range=(min(times[variant]), max(times[variant])),
            )
        )

    # the phases are whatever manifest.timings names (in its order), so a phase added to the
    # runner shows up here too; per trial, "other" is time inside run() outside the named
    # phases and "after" is wall time after run()'s own clock stopped
    names: list[str] = []
    for variant in variants:
        for r in timings[variant]:
            names += [k for k in r if k not in ("total", "wall") and k not in names]
    for variant in variants:
        for r in timings[variant]:
            if "total" in r:
                r["other"] = r["total"] - sum(r.get(k, 0.0) for k in names)
                r["after"] = r["wall"] - r["total"]
    columns = [*variants, "plain"]
    seed_cols = list(variants)
    lines: list[tuple[str, list[float | None]]] = [
        (PHASES.get(k, k), [*(_med(timings[v], k) for v in seed_cols), None]) for k in names
    ]
    lines += [
        (
            "other (split, seeding, store.begin_run)",
            [*(_med(timings[v], "other") for v in seed_cols), None],
        ),
        ("after total (store.finish_run)", [*(_med(timings[v], "after") for v in seed_cols), None]),
        (
            "plain: load digits + split",
            [*(None for _ in seed_cols), _med(timings["plain"], "load")],
        ),
        ("plain: fit", [*(None for _ in seed_cols), _med(timings["plain"], "fit")]),
        (
            "plain: score (accuracy, f1_macro)",
            [*(None for _ in seed_cols), _med(timings["plain"], "score")],
        ),
        ("wall", [_med(timings[v], "wall") for v in columns]),
    ]
    notes = []
    if has_cache:
        counts: dict[str, int] = {}
        for status in cache_status:
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))
        notes.append(f"step cache in the default run, over {cfg.trials_run} trials: {summary}")
    return rows, Phases(columns=columns, lines=lines, notes=notes)


# -- 4. CLI start ------------------------------------------------------------------------------
def bench_cli(cfg: Config) -> list[Row]:
    """Wall time of ``seedline --help`` vs ``python -c "import sklearn"``, each a fresh process."""
    seedline_bin = Path(sys.executable).parent / "seedline"
    if not seedline_bin.exists():
        raise RuntimeError(f"{seedline_bin} not found: install the package into this environment")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    commands = {
        "seedline --help": [str(seedline_bin), "--help"],
        "import sklearn": [sys.executable, "-c", "import sklearn"],
    }

    def start(cmd: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True
        )

    cases = {name: start(cmd) for name, cmd in commands.items()}
    for case in cases.values():  # warm the page cache and the .pyc files
        case()
    times = interleaved(cases, cfg.trials_cli)
    fig = median(times["seedline --help"])
    base = median(times["import sklearn"])
    return [
        Row(
            name="seedline --help (process start)",
            unit="s",
            figure=fig,
            baseline_name="python -c 'import sklearn'",
            baseline=base,
            target="<= 0.2x",
            passed=fig / base <= 0.2,
            trials=cfg.trials_cli,
            figure_range=(min(times["seedline --help"]), max(times["seedline --help"])),
        )
    ]


# -- report ------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError):
        mem_gib = float("nan")
    import blake3
    import pandas as pd
    import sklearn

    return {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "sklearn": sklearn.__version__,
        "blake3": getattr(blake3, "__version__", "?"),
        "loadavg": os.getloadavg(),
    }


def fmt(value: float, unit: str, with_unit: bool = True) -> str:
    text = f"{value:.2f}" if unit == "GB/s" else f"{value:.3f}"
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
            f"{r.ratio:.2f}x",
            r.target,
            "-" if not r.target else "PASS" if r.passed else "FAIL",
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


def print_phases(phases: Phases) -> None:
    print("\nseedline.run per-phase breakdown (medians, seconds; from manifest.timings):")
    width = max(len(name) for name, _ in phases.lines)
    cols = [max(9, len(c)) for c in phases.columns]
    head = "  ".join(c.rjust(w) for c, w in zip(phases.columns, cols, strict=True))
    print(f"  {'phase':<{width}}  {head}")
    for name, values in phases.lines:
        cells = ("-" if v is None else f"{v:.4f}" for v in values)
        print(
            f"  {name:<{width}}  " + "  ".join(c.rjust(w) for c, w in zip(cells, cols, strict=True))
        )
    for note in phases.notes:
        print(f"  {note}")


BENCHMARKS = ("bytes", "table", "run", "cli")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="smaller inputs and fewer trials (smoke test)"
    )
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)"
    )
    parser.add_argument(
        "--json", type=Path, help="also write the rows and machine details to this JSON file"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    selected = args.only or list(BENCHMARKS)
    info = machine()

    started = time.perf_counter()
    rows: list[Row] = []
    phases: Phases | None = None
    for name in BENCHMARKS:
        if name not in selected:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        with OthersLoad() as load:
            if name == "bytes":
                new_rows = bench_bytes(cfg)
            elif name == "table":
                new_rows = bench_table(cfg)
            elif name == "run":
                new_rows, phases = bench_run(cfg)
            else:
                new_rows = bench_cli(cfg)
        for row in new_rows:
            row.others_cores = load.cores
        rows += new_rows
    elapsed = time.perf_counter() - started
    load_end = os.getloadavg()

    print(
        f"\nseedline foundation benchmarks ({'quick' if args.quick else 'full'} mode, {elapsed:.0f} s)"
    )
    print(
        f"machine: nproc={info['nproc']}, CPU {info['cpu']}, {info['memory_gib']} GiB RAM; "
        f"Python {info['python']}, numpy {info['numpy']}, pandas {info['pandas']}, "
        f"scikit-learn {info['sklearn']}, blake3 {info['blake3']}"
    )
    print(
        f"load average before/after: {info['loadavg'][0]:.2f} / {load_end[0]:.2f} "
        "(above 0 means other processes shared the cores)"
    )
    print(
        "figures are medians of N trials (N per row); 'range' is the worst-best trial of the figure; "
        "subject and baseline trials are interleaved in one process.\n"
        "ratio = figure / baseline figure: for GB/s rows higher is better (x times the baseline's "
        "speed), for time rows (s) lower is better. GB = 10^9 bytes.\n"
        "others = CPU that other processes used during that benchmark, in cores (from /proc/stat): "
        f"anything near {info['nproc']} means the figures were measured on a busy machine.\n"
    )
    print_table(rows)
    if phases:
        print_phases(phases)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "mode": "quick" if args.quick else "full",
            "machine": {**info, "loadavg_after": load_end},
            "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
            "run_phases": None
            if phases is None
            else {
                "columns": phases.columns,
                "lines": [{"phase": n, "seconds": v} for n, v in phases.lines],
                "notes": phases.notes,
            },
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {args.json}")
    failed = [r for r in rows if not r.passed]
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
