"""The price of determinism on CPU: the digits CNN trained with seedline's controls and without.

The network of ``examples/digits-cnn`` is trained on the 8x8 digits, with the trials of
the conditions interleaved in a rotating order (A B C, B C A, ...) so that a busy
neighbour slows all of them alike.

**PyTorch (skorch), in this process**, under three conditions:

- ``no controls``: what a script does by default: torch's own thread count (every core),
  deterministic algorithms off, no seeding;
- ``seedline, threads=1``: what ``seedline run`` does with the default ``execution.threads: 1``:
  ``SeedPlan.seed_globals`` (deterministic algorithms, cuDNN flags, threads pinned) and the
  step's own seed right before it fits;
- ``seedline, threads=N``: the same controls with every core (``execution.threads: N``).

**Keras 3 on each backend installed (torch, TensorFlow, JAX), one fresh process per
trial**: a backend is chosen once per process, and TensorFlow's thread pools and op
determinism, like XLA's flags, cannot be undone in a process, so each trial is a worker
process of this script (``--worker BACKEND``), the two conditions alternating:

- ``no controls``: only ``numpy.random.seed`` (the classic script), the framework's own
  thread pools (every core);
- ``seedline, threads=1``: ``seedline.determinism(seed)`` before Keras is imported (the
  backend's generators seeded, op determinism, TensorFlow's pools and XLA's Eigen pinned
  to one thread), then the network's ``random_state``.

Each figure is the median training time (the ``fit`` only, not the imports) of its
trials; ``ratio`` is that median over the ``no controls`` median (the price of
determinism: above 1 costs time). ``bitwise`` says whether every trial of the condition
gave the same weights, layer by layer; ``no`` on a ``no controls`` row is the negative
control. The load average is printed before and after.

    .venv/bin/python benchmarks/determinism_cost.py            # 5 trials, 6 epochs
    .venv/bin/python benchmarks/determinism_cost.py --quick    # 2 trials, 2 epochs
    .venv/bin/python benchmarks/determinism_cost.py --framework keras --backend jax
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "digits-cnn"
sys.path.insert(0, str(EXAMPLE))
sys.path.insert(0, str(REPO / "src"))

SEED = 11


def _data() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    X, y = load_digits(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    return MinMaxScaler().fit_transform(X_train), y_train


def _make(framework: str, epochs: int) -> Any:
    import cnn

    return cnn.TorchDigitsCNN(max_epochs=epochs, lr=0.01, batch_size=64)


def _keras_worker(backend: str, controls: bool, epochs: int) -> dict[str, Any]:
    """One Keras training in this (fresh) process; prints nothing but the result."""
    import numpy as np

    os.environ["KERAS_BACKEND"] = backend
    record = None
    if controls:
        import seedline

        record = seedline.determinism(SEED, threads=1, frameworks=["keras"])
    else:
        np.random.seed(0)
    import keras_cnn

    from seedline.core.deeplearning import layer_fingerprints

    X, y = _data()
    est = keras_cnn.KerasDigitsCNN(
        epochs=epochs, learning_rate=0.01, batch_size=64, random_state=SEED if controls else None
    )
    est.fit(X[:64], y[:64])  # warm-up: graph tracing, first-call costs
    est = keras_cnn.KerasDigitsCNN(
        epochs=epochs, learning_rate=0.01, batch_size=64, random_state=SEED if controls else None
    )
    t = time.perf_counter()
    est.fit(X, y)
    seconds = time.perf_counter() - t
    import keras

    return {
        "seconds": seconds,
        "layers": layer_fingerprints(est),
        "backend": keras.backend.backend(),
        "version": keras.__version__,
        "too_late": record.too_late if record is not None else None,
    }


def _keras_trial(backend: str, controls: bool, epochs: int) -> dict[str, Any]:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XLA_FLAGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--worker", backend, "--epochs", str(epochs)]
    if controls:
        cmd.append("--controls")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=1200)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _fit(framework: str, epochs: int, X: Any, y: Any, controls: int | None) -> tuple[float, Any]:
    """One training; ``controls`` is the thread count under seedline's controls, None for none."""
    import torch
    from threadpoolctl import threadpool_limits

    from seedline.core.deeplearning import layer_fingerprints
    from seedline.core.seeding import SeedPlan, fill_random_states

    est = _make(framework, epochs)
    cores = os.cpu_count() or 1
    if controls is None:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = False
        torch.set_num_threads(cores)
        t = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - t, layer_fingerprints(est)
    from sklearn.pipeline import Pipeline

    pipe = Pipeline([("net", est)])
    plan = SeedPlan(SEED)
    fill_random_states(pipe, plan)  # the Keras wrapper's random_state, as a run fills it
    with threadpool_limits(limits=controls):
        t = time.perf_counter()
        plan.seed_globals(pipe, threads=controls)
        plan.seed_step("pipeline/net", est)
        est.fit(X, y)
        seconds = time.perf_counter() - t
    return seconds, layer_fingerprints(est)


def _machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }
    try:
        model = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        info["cpu"] = model[0] if model else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    if importlib.util.find_spec("keras") is not None:
        import keras

        info["keras"] = keras.__version__
    return info


def _row(
    framework: str, name: str, times: list[float], base: float, layers: list[str]
) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "framework": framework,
        "condition": name,
        "trials": len(times),
        "median_s": median,
        "min_s": min(times),
        "max_s": max(times),
        "ratio": median / base,
        "bitwise": len(set(layers)) == 1,
    }


def _keras_rows(backends: list[str], trials: int, epochs: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    conditions = [("no controls", False), ("seedline, threads=1", True)]
    for backend in backends:
        times: dict[str, list[float]] = {name: [] for name, _ in conditions}
        layers: dict[str, list[str]] = {name: [] for name, _ in conditions}
        for trial in range(trials):
            shift = trial % len(conditions)
            for name, controls in conditions[shift:] + conditions[:shift]:
                result = _keras_trial(backend, controls, epochs)
                times[name].append(result["seconds"])
                layers[name].append(json.dumps(result["layers"], sort_keys=True))
        base = statistics.median(times["no controls"])
        for name, _ in conditions:
            rows.append(_row(f"keras/{backend}", name, times[name], base, layers[name]))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the trials and print the table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per condition (default 5)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (default 6)")
    parser.add_argument("--quick", action="store_true", help="2 trials of 2 epochs: a smoke test")
    parser.add_argument(
        "--framework", choices=["torch", "keras"], action="append", help="default: both"
    )
    parser.add_argument(
        "--backend",
        choices=["torch", "tensorflow", "jax"],
        action="append",
        help="Keras backends (default: every one installed)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--controls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_keras_worker(args.worker, args.controls, args.epochs)))
        return 0
    trials, epochs = (2, 2) if args.quick else (args.trials, args.epochs)
    frameworks = args.framework or ["torch", "keras"]
    if "keras" in frameworks and importlib.util.find_spec("keras") is None:
        print("keras is not installed: timing PyTorch only")
        frameworks = [f for f in frameworks if f != "keras"]
    backends = [
        b
        for b in (args.backend or ["torch", "tensorflow", "jax"])
        if importlib.util.find_spec(b) is not None
    ]
    cores = os.cpu_count() or 1
    conditions: list[tuple[str, int | None]] = [
        ("no controls", None),
        ("seedline, threads=1", 1),
    ]
    if cores > 1:
        conditions.append((f"seedline, threads={cores}", cores))

    X, y = _data()
    machine = _machine()
    machine["load_before"] = os.getloadavg()
    print(
        f"determinism cost on CPU: {machine['cpu']}, {cores} cores, torch {machine['torch']}"
        + (f", keras {machine['keras']}" if "keras" in machine else "")
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in machine['load_before'])}")
    print(f"digits CNN, {len(X)} training rows, {epochs} epochs, {trials} trials per condition\n")
    rows: list[dict[str, Any]] = []
    if "torch" in frameworks:
        _fit("torch", 1, X[:64], y[:64], None)  # warm-up: imports, first-call costs
        times: dict[str, list[float]] = {name: [] for name, _ in conditions}
        layers: dict[str, list[Any]] = {name: [] for name, _ in conditions}
        for trial in range(trials):
            shift = trial % len(conditions)
            for name, threads in conditions[shift:] + conditions[:shift]:
                seconds, fps = _fit("torch", epochs, X, y, threads)
                times[name].append(seconds)
                layers[name].append(json.dumps(fps, sort_keys=True))
        base = statistics.median(times["no controls"])
        for name, _ in conditions:
            rows.append(_row("torch", name, times[name], base, layers[name]))
    if "keras" in frameworks:
        rows += _keras_rows(backends, trials, epochs)
    _print_table(rows)
    machine["load_after"] = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in machine['load_after'])}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("framework", lambda r: r["framework"]),
        ("condition", lambda r: r["condition"]),
        ("N", lambda r: str(r["trials"])),
        ("median s", lambda r: f"{r['median_s']:.3f}"),
        ("range s", lambda r: f"{r['min_s']:.3f}-{r['max_s']:.3f}"),
        ("ratio", lambda r: f"{r['ratio']:.2f}"),
        ("bitwise across trials", lambda r: "yes" if r["bitwise"] else "no"),
    ]
    cells = [[fmt(r) for _, fmt in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main())
