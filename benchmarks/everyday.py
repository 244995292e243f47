"""Benchmarks of issue 13 (the everyday loop): what a user waits for, against the plain baseline.

One script; every figure is a median of trials interleaved with its baseline's, in the same
run, and printed with its ratio and the load average (foundation.py's helpers):

1. ``run``: ``seedline run`` as a fresh process on digits and penguins, cache off, cache hit
   on every step, and cache miss that writes, against a plain script doing the same fit
   (also a fresh process). Targets: <= 1.15x; every-step hit's fit phase >= 3x faster
   than the plain fit. Those runs find their model already stored (the same fitted state),
   as a rerun of an unchanged spec does; two more cases run each trial with a seed never
   run before (a new split and forest, the same work), so the model file is written too,
   without the cache and with a miss that writes: the plain script writes no model.
2. ``restart``: what pinning the hash seed costs (a fresh interpreter that reads the spec's
   seed and would restart), against a bare ``python -c pass``. Target < 50 ms.
3. ``readonly``: ``runs``, ``show``, ``models``, ``sweeps``, ``cache ls``, ``--help`` against
   ``python -c "import sklearn"``. Target <= 0.15x.
4. ``serialize``: saving and loading a plain scikit-learn model through seedline imports no
   deep-learning framework and never calls ``all_estimators()`` (fresh process, checked).
5. ``serve``: ``seedline serve`` until ready, and ``seedline predict`` of the probe rows,
   against a fresh ``python`` that unpickles the same model and predicts them. Target 1.5x.
6. ``strings``: ``fingerprint_table`` on a 10M-row text column (Arrow-backed) and on a mixed
   10M x 10 frame, against ``pandas.util.hash_pandas_object``. Targets >= 1 GB/s, >= 10x.
7. ``growth``: the penguins pipeline on a synthetic table of 10k ... 5M rows, ``seedline run``
   (cache off, and cache write) over the plain script, fresh processes, with each one's peak
   memory (ru_maxrss). Target: ratio falls toward 1.0; memory <= 1.3x.

The step cache against joblib.Memory is in scale.py (its first table).

    python benchmarks/everyday.py                  # everything, full sizes (long on 2 cores)
    python benchmarks/everyday.py --quick          # small sizes, few trials
    python benchmarks/everyday.py --only run --only readonly
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from foundation import Row, interleaved, machine, median, print_table  # sibling script
from prove import git_init

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SECTIONS = ("run", "restart", "readonly", "serialize", "serve", "strings", "growth")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED",)}
    env.pop("_SEEDLINE_HASH_SEED_PINNED", None)
    env.update(extra)
    return env


def fresh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS of that child alone (KiB, from wait4) and stdout of a fresh process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or clean_env(), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.read().decode()[-3000:]}")
        return wall, int(usage.ru_maxrss), out.read().decode()


def ratio_row(
    name: str, fig: list[float], base: list[float], base_name: str, target: float, trials: int
) -> Row:
    f, b = median(fig), median(base)
    return Row(
        name=name,
        unit="s",
        figure=f,
        baseline_name=base_name,
        baseline=b,
        target=f"<= {target:g}x",
        passed=f / b <= target,
        trials=trials,
        figure_range=(min(fig), max(fig)),
    )


# -- projects ----------------------------------------------------------------------------------
def project(tmp: Path, example: str) -> Path:
    root = tmp / example
    shutil.copytree(REPO / "examples" / example, root, ignore=shutil.ignore_patterns(".seedline"))
    git_init(root)
    return root


PLAIN = """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from threadpoolctl import threadpool_limits
from sklearn.model_selection import train_test_split
from sklearn.metrics import get_scorer
cfg = json.loads(sys.argv[1])
{load}
X = frame.drop(columns=cfg["target"]); y = frame[cfg["target"]]
X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=cfg["split"])
{pipeline}
pipe.set_params(**cfg["random_states"])
t1 = time.perf_counter()
with threadpool_limits(limits=1):
    pipe.fit(X_tr, y_tr)
    t2 = time.perf_counter()
    metrics = {{m: float(get_scorer(m)(pipe, X_te, y_te)) for m in cfg["metrics"]}}
print(json.dumps({{"metrics": metrics, "fit": t2 - t1, "load": t1 - t0}}))
"""

PLAIN_DIGITS = PLAIN.format(
    load="from sklearn.datasets import load_digits\nframe = load_digits(as_frame=True).frame",
    pipeline=textwrap.dedent("""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    pipe = Pipeline([("scale", StandardScaler()),
                     ("pca", PCA(n_components=32, svd_solver="randomized")),
                     ("clf", RandomForestClassifier(n_estimators=150))])
    """),
)

PLAIN_PENGUINS = PLAIN.format(
    load="frame = pd.read_csv(cfg['data']) if cfg['data'].endswith('.csv') else pd.read_parquet(cfg['data'])",
    pipeline=textwrap.dedent("""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.pipeline import Pipeline
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler, OneHotEncoder
    from sklearn.ensemble import RandomForestClassifier
    num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    cat = Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                    ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    prep = ColumnTransformer([("num", num, make_column_selector(dtype_include="number")),
                              ("cat", cat, make_column_selector(dtype_include=["object", "string"]))])
    pipe = Pipeline([("prep", prep), ("clf", RandomForestClassifier(n_estimators=cfg["trees"], min_samples_leaf=2))])
    """),
)


def plain_config(root: Path, manifest: dict[str, Any], data: str | None, trees: int) -> str:
    seeds = manifest["seeds"]["random_states"]
    return json.dumps(
        {
            "target": manifest["spec"]["data"]["target"],
            "split": int(manifest["data"]["split"]["seed"]),
            "random_states": {k: int(v["seed"]) for k, v in seeds.items()},
            "metrics": list(manifest["spec"]["metrics"]),
            "data": str(root / data) if data else "",
            "trees": trees,
        }
    )


def seedline_cmd(*args: str) -> list[str]:
    return [PY, "-m", "seedline", *args]


def _manifest(root: Path, run_id: str) -> dict[str, Any]:
    out = subprocess.run(
        seedline_cmd("show", run_id, "--json"),
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def bench_run(tmp: Path, trials: int, examples: list[str]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    for example, script, data in (
        ("digits", PLAIN_DIGITS, None),
        ("penguins", PLAIN_PENGUINS, "data/penguins.csv"),
    ):
        if example in examples:
            rows += _bench_example(project(tmp, example), example, script, data, trials, notes)
    return rows, notes


def _bench_example(
    root: Path, example: str, script: str, data: str | None, trials: int, notes: list[str]
) -> list[Row]:
    (root / "plain.py").write_text(script)
    first = json.loads(fresh(seedline_cmd("run", "--json"), root)[2])
    cfg = plain_config(root, _manifest(root, first["run_id"]), data, trees=200)
    plain_out = json.loads(fresh([PY, "plain.py", cfg], root)[2])
    if plain_out["metrics"] != first["metrics"]:
        notes.append(
            f"{example}: plain metrics {plain_out['metrics']} differ from seedline's "
            f"{first['metrics']} (column order of the hand-written pipeline); same work"
        )
    fits: dict[str, list[float]] = {"plain": [], "hit": []}

    def plain_once() -> float:
        wall, _, text = fresh([PY, "plain.py", cfg], root)
        fits["plain"].append(json.loads(text)["fit"])
        return wall

    seeds = iter(range(1_000_000, 2_000_000))

    memos = iter(range(1_000_000))

    def run_once(
        *flags: str, wipe: bool = False, new_model: bool = False, no_memo: bool = False
    ) -> Callable[[], float]:
        # only the run is timed: the wipe before it and the manifest read after it are not
        def once() -> float:
            if wipe:  # a miss that writes: no entries to find
                fresh(seedline_cmd("cache", "prune", "--all"), root)
            # a seed never run before: a new split and new fitted states, so a new model
            # file to write (the same fit's cost; the other cases find their model stored)
            more = ("--set", f"seed={next(seeds)}") if new_model else ()
            # an empty load-memo folder: the hits of a teammate who pulled the entries
            env = (
                clean_env(SEEDLINE_LOAD_MEMO=str(root.parent / f"memo-{example}-{next(memos)}"))
                if no_memo
                else None
            )
            wall, _, text = fresh(seedline_cmd("run", "--json", *flags, *more), root, env)
            out = json.loads(text)
            if no_memo:
                m = _manifest(root, out["run_id"])
                if any(s.get("cache") != "hit" for s in m["steps"]):
                    notes.append(f"{example}: a step missed the cache in a no-memo hit trial")
            if not flags and not wipe and not new_model and not no_memo:
                m = _manifest(root, out["run_id"])
                fits["hit"].append(float(m["timings"]["fit"]))
                if any(s.get("cache") != "hit" for s in m["steps"]):
                    notes.append(f"{example}: a step missed the cache in a hit trial")
            return wall

        return once

    cases = {
        "plain": plain_once,
        "no-cache": run_once("--no-cache"),
        "hit": run_once(),
        "hit, no load memo": run_once(no_memo=True),
        "miss+write": run_once(wipe=True),
        "no-cache, new model": run_once("--no-cache", new_model=True),
        "miss+write, new model": run_once(new_model=True),
    }
    times = interleaved(cases, trials)
    rows = [
        ratio_row(
            f"seedline run ({case}), {example}, fresh process",
            times[case],
            times["plain"],
            "plain script, fresh process",
            1.15,
            trials,
        )
        for case in cases
        if case != "plain"
    ]
    rows.append(
        Row(
            name=f"  fit phase, every step a cache hit, {example}",
            unit="s",
            figure=median(fits["hit"]),
            baseline_name="plain fit",
            baseline=median(fits["plain"]),
            target="<= 0.33x",
            passed=median(fits["hit"]) <= median(fits["plain"]) / 3,
            trials=len(fits["hit"]),
            figure_range=(min(fits["hit"]), max(fits["hit"])),
        )
    )
    return rows


# -- restart -----------------------------------------------------------------------------------
RESTART = (
    "import sys; from seedline.cli.launch import pin_hash_seed_early; "
    "pin_hash_seed_early(['seedline', 'run', sys.argv[1]])"
)


def bench_restart(tmp: Path, trials: int) -> list[Row]:
    """A fresh interpreter doing what precedes the restart (the spec's hash seed already set,
    so it stops right before ``execve``): what the restart adds to ``seedline run``."""
    from seedline.core.hashseed import spec_hash_seed

    spec = REPO / "examples" / "penguins" / "seedline.yaml"
    pinned = clean_env(PYTHONHASHSEED=str(spec_hash_seed(spec, [])))
    cases = {
        "restart": lambda: fresh([PY, "-c", RESTART, str(spec)], tmp, pinned),
        "bare": lambda: fresh([PY, "-c", "pass"], tmp),
    }
    times = interleaved(cases, trials)
    f, b = median(times["restart"]), median(times["bare"])
    return [
        Row(
            name="hash-seed restart (pre-exec work + the extra interpreter start)",
            unit="s",
            figure=f,
            baseline_name="python -c pass",
            baseline=b,
            target="< 0.050 s",
            passed=f < 0.050,
            trials=trials,
            figure_range=(min(times["restart"]), max(times["restart"])),
        )
    ]


# -- read-only commands ------------------------------------------------------------------------
def bench_readonly(tmp: Path, trials: int) -> list[Row]:
    root = project(tmp, "digits")
    out = json.loads(fresh(seedline_cmd("run", "--json"), root)[2])
    fresh(seedline_cmd("register", out["run_id"], "--name", "digits"), root)
    commands = {
        "--help": ["--help"],
        "runs": ["runs"],
        "show": ["show", out["run_id"]],
        "models": ["models"],
        "sweeps": ["sweeps"],
        "cache ls": ["cache", "ls"],
    }
    cases: dict[str, Callable[[], object]] = {
        name: (lambda a=args: fresh(seedline_cmd(*a), root)) for name, args in commands.items()
    }
    # the path the quick listing (cli/listing.py) stands in for: typer, SQLAlchemy, pydantic
    full = "import sys; sys.argv = ['seedline', 'runs']; from seedline.cli.main import main; main()"
    cases["runs, full command line"] = lambda: fresh([PY, "-c", full], root)
    cases["import sklearn"] = lambda: fresh([PY, "-c", "import sklearn"], root)
    for case in cases.values():
        case()  # warm the page cache and .pyc files
    times = interleaved(cases, trials)
    rows = [
        ratio_row(
            f"seedline {name} (fresh process)",
            times[name],
            times["import sklearn"],
            "python -c 'import sklearn'",
            0.15,
            trials,
        )
        for name in [*commands, "runs, full command line"]
    ]
    rows[-1].target = ""  # what the quick path stands in for: for comparison
    return rows


# -- serialization -----------------------------------------------------------------------------
SERIALIZE = """
import json, sys, time
t = time.perf_counter()
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import sklearn.utils.discovery as discovery
calls = []
real = discovery.all_estimators
discovery.all_estimators = lambda *a, **k: calls.append(1) or real(*a, **k)
import sklearn.utils
sklearn.utils.all_estimators = discovery.all_estimators
from seedline.execution.persist import dump_model, load_model
X, y = load_iris(return_X_y=True)
model = make_pipeline(StandardScaler(), RandomForestClassifier(10, random_state=0)).fit(X, y)
t0 = time.perf_counter()
again = load_model(dump_model(model), trusted_own=True)
print(json.dumps({"seconds": time.perf_counter() - t0, "all_estimators": len(calls),
    "frameworks": sorted(m for m in ("torch", "keras", "tensorflow", "jax") if m in sys.modules)}))
"""


def bench_serialize(tmp: Path, trials: int) -> tuple[list[Row], list[str]]:
    secs, notes = [], []
    for _ in range(trials):
        report = json.loads(fresh([PY, "-c", SERIALIZE], tmp)[2].strip().splitlines()[-1])
        secs.append(report["seconds"])
    notes.append(
        f"save + load of a plain model in a fresh process: all_estimators() calls "
        f"{report['all_estimators']}, deep-learning frameworks imported {report['frameworks'] or 'none'}"
    )
    plain = [
        fresh(
            [
                PY,
                "-c",
                "import time; t=time.perf_counter(); import skops.io; print(time.perf_counter()-t)",
            ],
            tmp,
        )
        for _ in range(trials)
    ]
    stock = [float(p[2]) for p in plain]
    return [
        Row(
            name="first dump_model + load_model (imports skops)",
            unit="s",
            figure=median(secs),
            baseline_name="stock 'import skops.io'",
            baseline=median(stock),
            target="no DL import",
            passed=report["all_estimators"] == 0 and not report["frameworks"],
            trials=trials,
            figure_range=(min(secs), max(secs)),
        )
    ], notes


# -- serve and predict -------------------------------------------------------------------------
PLAIN_PREDICT = """
import pickle, sys
import pandas as pd
model = pickle.load(open(sys.argv[1], "rb"))
rows = pd.read_parquet(sys.argv[2])
model.predict(rows)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_serve(tmp: Path, trials: int) -> list[Row]:
    import pickle

    from seedline.records.tracking import Store
    from seedline.workflow.registration import load_estimator, resolve_source

    root = project(tmp, "penguins")
    out = json.loads(fresh(seedline_cmd("run", "--json"), root)[2])
    fresh(seedline_cmd("register", out["run_id"], "--name", "penguins"), root)
    source = resolve_source("penguins@1", store=Store.find(root))
    model = load_estimator(source.model_bytes, trust=True)
    (tmp / "model.pkl").write_bytes(pickle.dumps(model))
    probe_rows = source.probe_input
    probe_rows.to_parquet(tmp / "probe.parquet")
    probe_rows.to_csv(tmp / "probe.csv", index=False)
    (tmp / "plain_predict.py").write_text(PLAIN_PREDICT)

    def serve_once() -> None:
        port = _free_port()
        proc = subprocess.Popen(
            seedline_cmd("serve", "penguins@1", "--port", str(port)),
            cwd=root,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/v2/health/ready", timeout=1
                    ) as r:
                        if r.status == 200:
                            return
                except OSError:
                    time.sleep(0.02)
            raise RuntimeError("server not ready")
        finally:
            proc.terminate()
            proc.wait()

    cases = {
        "serve": serve_once,
        "predict": lambda: fresh(
            seedline_cmd(
                "predict", "penguins@1", str(tmp / "probe.csv"), "-o", str(tmp / "o.csv"), "--force"
            ),
            root,
        ),
        "plain": lambda: fresh(
            [PY, "plain_predict.py", str(tmp / "model.pkl"), str(tmp / "probe.parquet")], tmp
        ),
    }
    times = interleaved(cases, trials)
    base = "plain: unpickle + predict, fresh process"
    return [
        ratio_row(
            "seedline serve, start to ready", times["serve"], times["plain"], base, 1.5, trials
        ),
        ratio_row(
            "seedline predict, probe rows", times["predict"], times["plain"], base, 1.5, trials
        ),
    ]


# -- strings -----------------------------------------------------------------------------------
def bench_strings(rows: int, trials: int) -> list[Row]:
    import pandas as pd
    import pyarrow as pa

    from seedline import fingerprint_table

    rng = np.random.default_rng(0)
    vocab = pa.array([f"value-{i:05d}-{'x' * (i % 7)}" for i in range(5000)])
    text = pd.Series(
        vocab.take(pa.array(rng.integers(0, 5000, rows))).to_pandas(types_mapper=pd.ArrowDtype)
    ).astype("str")
    text_bytes = pa.array(text.array).nbytes
    one = text.rename("s").to_frame()
    mixed = pd.DataFrame({f"f{i}": rng.standard_normal(rows) for i in range(6)})
    mixed["i0"] = rng.integers(0, 1000, rows)
    mixed["b0"] = rng.random(rows) > 0.5
    mixed["s0"] = text
    mixed["c0"] = text.astype("category")
    mixed_bytes = int(mixed.memory_usage(index=False, deep=False).sum()) + text_bytes
    fingerprint_table(one)  # warm-up
    # the floor: BLAKE3 over exactly the bytes the encoding hashes, on all cores, with nothing
    # else done (no NaN check, no per-column work, the categorical's text gathered beforehand)
    text_floor = encoded_bytes(one)
    mixed_floor = encoded_bytes(mixed)
    cases = {
        "fp text": lambda: fingerprint_table(one),
        "hpo text": lambda: pd.util.hash_pandas_object(one, index=False),
        "floor text": lambda: hash_all(text_floor),
        "fp mixed": lambda: fingerprint_table(mixed),
        "hpo mixed": lambda: pd.util.hash_pandas_object(mixed, index=False),
        "floor mixed": lambda: hash_all(mixed_floor),
    }
    times = interleaved(cases, trials)
    gbs = [text_bytes / 1e9 / t for t in times["fp text"]]
    label = f"{rows / 1e6:g}M"
    return [
        Row(
            name=f"fingerprint_table, {label}-row text column (Arrow buffers, {text_bytes / 1e9:.2f} GB)",
            unit="GB/s",
            figure=median(gbs),
            baseline_name="hash_pandas_object",
            baseline=text_bytes / 1e9 / median(times["hpo text"]),
            target=">= 1 GB/s",
            passed=median(gbs) >= 1.0,
            trials=trials,
            figure_range=(min(gbs), max(gbs)),
        ),
        Row(
            name=f"fingerprint_table, {label} x 10 mixed (6 float, int, bool, text, category)",
            unit="GB/s",
            figure=mixed_bytes / 1e9 / median(times["fp mixed"]),
            baseline_name="hash_pandas_object",
            baseline=mixed_bytes / 1e9 / median(times["hpo mixed"]),
            target=">= 10x baseline",
            passed=median(times["hpo mixed"]) / median(times["fp mixed"]) >= 10,
            trials=trials,
            figure_range=(
                mixed_bytes / 1e9 / max(times["fp mixed"]),
                mixed_bytes / 1e9 / min(times["fp mixed"]),
            ),
        ),
        floor_row("mixed", mixed_bytes, times["floor mixed"], times["hpo mixed"], trials),
        floor_row("text column", text_bytes, times["floor text"], times["hpo text"], trials),
    ]


def encoded_bytes(frame: Any) -> list[memoryview]:
    """The bytes ``fingerprint_table`` hashes for ``frame`` (less each column's few header and
    mask bytes), read with pandas and Arrow alone: a numeric column's values, a text column's
    int64 lengths and then its UTF-8 text (a categorical's gathered in row order here, once)."""
    import pyarrow as pa

    out: list[memoryview] = []
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiub":
            out.append(np.ascontiguousarray(col.to_numpy()).view(np.uint8).data)
            continue
        arr = pa.array(col.array, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary.take(arr.indices)
        arr = arr.cast(pa.large_string())
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
            arr.offset : arr.offset + len(arr) + 1
        ]
        out.append(np.diff(offsets).view(np.uint8).data)
        out.append(memoryview(arr.buffers()[2])[int(offsets[0]) : int(offsets[-1])])
    return out


def hash_all(buffers: list[memoryview]) -> None:
    import blake3

    for b in buffers:
        blake3.blake3(b, max_threads=blake3.blake3.AUTO).digest()


def floor_row(
    label: str, nbytes: int, floor: list[float], baseline: list[float], trials: int
) -> Row:
    """What no implementation of the encoding can beat on this machine: its ratio column is
    the best speed-up over ``hash_pandas_object`` that this machine's cores and BLAKE3 allow."""
    return Row(
        name=f"  floor ({label}): BLAKE3 of the same bytes alone, all cores",
        unit="GB/s",
        figure=nbytes / 1e9 / median(floor),
        baseline_name="hash_pandas_object",
        baseline=nbytes / 1e9 / median(baseline),
        target="",
        passed=True,
        trials=trials,
        figure_range=(nbytes / 1e9 / max(floor), nbytes / 1e9 / min(floor)),
    )


# -- growth ------------------------------------------------------------------------------------
def synthetic_penguins(rows: int, seed: int = 0) -> Any:
    import pandas as pd

    base = pd.read_csv(REPO / "examples" / "penguins" / "data" / "penguins.csv")
    rng = np.random.default_rng(seed)
    pick = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    for col in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        noise = rng.normal(0, 0.02 * float(pick[col].std()), rows)
        pick[col] = (pick[col] + noise).round(2)
    return pick


def bench_growth(tmp: Path, sizes: list[int], trials: int, trees: int) -> list[Row]:
    rows: list[Row] = []
    for n in sizes:
        rows += _growth(project(tmp / f"g{n}", "penguins"), n, trials, trees)
    return rows


def _growth(root: Path, n: int, trials: int, trees: int) -> list[Row]:
    spec = root / "seedline.yaml"
    spec.write_text(
        spec.read_text()
        .replace("data/penguins.csv", "data/big.parquet")
        .replace("n_estimators: 200", f"n_estimators: {trees}")
    )
    synthetic_penguins(n).to_parquet(root / "data" / "big.parquet")
    (root / "plain.py").write_text(PLAIN_PENGUINS)
    git_init(root)
    out = json.loads(fresh(seedline_cmd("run", "--json", "--no-cache"), root)[2])
    cfg = plain_config(root, _manifest(root, out["run_id"]), "data/big.parquet", trees)
    rss: dict[str, list[int]] = {"plain": [], "no-cache": [], "cache write": []}

    def once(case: str, cmd: list[str], wipe: bool = False) -> Callable[[], float]:
        def go() -> float:  # only the command is timed, not the wipe before it
            if wipe:
                fresh(seedline_cmd("cache", "prune", "--all"), root)
            wall, peak, _ = fresh(cmd, root)
            rss[case].append(peak)
            return wall

        return go

    cases = {
        "plain": once("plain", [PY, "plain.py", cfg]),
        "no-cache": once("no-cache", seedline_cmd("run", "--json", "--no-cache")),
        "cache write": once("cache write", seedline_cmd("run", "--json"), wipe=True),
    }
    times = interleaved(cases, trials)
    rows = []
    for case in ("no-cache", "cache write"):
        row = ratio_row(
            f"growth {n:>9,} rows: seedline run ({case})",
            times[case],
            times["plain"],
            "plain script",
            1.15,
            trials,
        )
        mem = median([float(x) for x in rss[case]]) / median([float(x) for x in rss["plain"]])
        row.target = f"-> 1.0; mem {mem:.2f}x (<= 1.3x)"
        row.passed = row.passed and mem <= 1.3
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small sizes, few trials")
    ap.add_argument("--only", action="append", choices=SECTIONS)
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--rows", type=int, action="append", help="growth sizes (repeatable)")
    ap.add_argument(
        "--example", action="append", choices=("digits", "penguins"), help="run: only this one"
    )
    args = ap.parse_args(argv)
    trials = args.trials or (2 if args.quick else 5)
    sizes = args.rows or (
        [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000, 5_000_000]
    )
    info = machine()
    # as a wheel install leaves them: an editable install does not, and where
    # PYTHONDONTWRITEBYTECODE is set every fresh process would compile seedline again
    compileall.compile_dir(REPO / "src", quiet=1)
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="seedline-everyday-") as name:
        tmp = Path(name)
        for section in args.only or SECTIONS:
            print(f"running {section} ...", file=sys.stderr, flush=True)
            sub = tmp / section
            sub.mkdir()
            if section == "run":
                new, more = bench_run(sub, trials, args.example or ["digits", "penguins"])
                notes += more
            elif section == "restart":
                new = bench_restart(sub, args.trials or 9)
            elif section == "readonly":
                new = bench_readonly(sub, args.trials or 5)
            elif section == "serialize":
                new, more = bench_serialize(sub, min(trials, 3))
                notes += more
            elif section == "serve":
                new = bench_serve(sub, trials)
            elif section == "strings":
                new = bench_strings(1_000_000 if args.quick else 10_000_000, trials)
            else:
                new = bench_growth(sub, sizes, trials, trees=20 if args.quick else 50)
            rows += new
    load_end = os.getloadavg()
    print(
        f"\nseedline everyday-loop benchmarks ({'quick' if args.quick else 'full'}, "
        f"{time.perf_counter() - started:.0f} s)"
    )
    print(
        f"machine: nproc={info['nproc']}, CPU {info['cpu']}, {info['memory_gib']} GiB RAM; "
        f"Python {info['python']}, pandas {info['pandas']}, scikit-learn {info['sklearn']}"
    )
    print(
        f"load average before/after: {info['loadavg'][0]:.2f} / {load_end[0]:.2f} "
        "(read ratios, not seconds, when it is above 0)"
    )
    print("seedline's sources compiled to bytecode first, as a wheel install leaves them")
    print(
        "figures are medians; ratio = figure / baseline (time rows: lower is better; GB/s rows: "
        "higher is better).\n"
    )
    print_table(rows)
    for note in notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
