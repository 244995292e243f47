"""Serving benchmark: ``seedline serve`` vs ``mlflow models serve`` vs a minimal FastAPI endpoint.

Same model (the penguins example: ColumnTransformer + 200-tree random forest), same machine,
one run, servers started one at a time so they never compete for the CPU:

- single-row latency, sequentially over one keep-alive connection: p50 and p99 (ms);
- throughput with 8 connections for 10 s, measured with ``wrk`` (a Lua script POSTs the body);
  wrk's own p99 latency under that load is reported too.

seedline runs with full validation on (schema checks, token-free loopback, JSON access log to a
file, metrics); MLflow serves the same fitted pipeline saved with ``mlflow.sklearn.save_model``
and a signature inferred from the training data, so it enforces its schema too; the minimal
endpoint builds a DataFrame from the body and calls ``model.predict``, nothing else.
Each measurement is repeated ``--repeats`` times; the table shows medians and ratios.

    python benchmarks/serving.py [--repeats 3] [--duration 10] [--requests 300]

Needs ``wrk`` (Debian: apt-get install -y wrk) and mlflow (the test extra).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

MINIMAL_APP = '''
"""The smallest honest FastAPI endpoint: DataFrame from the body, model.predict, JSON out."""
import pandas as pd
import skops.io as sio
from fastapi import FastAPI

data = open({model!r}, "rb").read()
model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
app = FastAPI()


@app.post("/invocations")
def invocations(body: dict):
    split = body["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    return {{"predictions": model.predict(frame).tolist()}}


@app.get("/ping")
def ping():
    return "ok"
'''

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(*cmd: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout}s")


def latency(url: str, body: bytes, n: int) -> tuple[float, float]:
    import httpx

    times: list[float] = []
    with httpx.Client(headers={"Content-Type": "application/json"}, timeout=30) as client:
        for _ in range(20):
            client.post(url, content=body).raise_for_status()
        for _ in range(n):
            t = time.perf_counter()
            r = client.post(url, content=body)
            times.append(time.perf_counter() - t)
            r.raise_for_status()
    times.sort()
    return times[len(times) // 2] * 1000, times[min(len(times) - 1, int(len(times) * 0.99))] * 1000


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, body: bytes, duration: int, workdir: Path) -> tuple[float, float, int]:
    script = workdir / "post.lua"
    script.write_text(LUA.format(body=json.dumps(body.decode())))
    out = sh(
        "wrk", "-t1", "-c8", f"-d{duration}s", "--latency", "-s", str(script), url, cwd=workdir
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, _ms(p99.group(1)) if p99 else float("nan"), int(errors.group(1)) if errors else 0


def measure(
    name: str,
    cmd: list[str],
    cwd: Path,
    ready: str,
    target: str,
    body: bytes,
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[str, Any]:
    log = cwd / (re.sub(r"[^A-Za-z0-9]+", "_", name) + ".log")
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready, proc)
        p50s, p99s, rpss, wrk99s, errors = [], [], [], [], 0
        for _ in range(args.repeats):
            p50, p99 = latency(target, body, args.requests)
            rps, w99, err = wrk(target, body, args.duration, cwd)
            p50s.append(p50)
            p99s.append(p99)
            rpss.append(rps)
            wrk99s.append(w99)
            errors += err
        return {
            "server": name,
            "p50_ms": statistics.median(p50s),
            "p99_ms": statistics.median(p99s),
            "rps": statistics.median(rpss),
            "wrk_p99_ms": statistics.median(wrk99s),
            "non_2xx": errors,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per repeat")
    ap.add_argument("--requests", type=int, default=300, help="sequential requests per repeat")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")

    tmp = Path(tempfile.mkdtemp(prefix="seedline-bench-"))
    project = tmp / "penguins"
    shutil.copytree(
        REPO / "examples" / "penguins", project, ignore=shutil.ignore_patterns(".seedline")
    )
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    env = {k: v for k, v in git_env.items() if not k.startswith("_SEEDLINE")}
    # mlflow starts "uvicorn" by name: the interpreter's bin folder must be on PATH
    env["PATH"] = f"{Path(PY).parent}{os.pathsep}{env.get('PATH', '')}"
    sh("git", "init", "-q", cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "bench", cwd=project, env=git_env)
    run_id = json.loads(sh(PY, "-m", "seedline", "run", "--json", cwd=project, env=env))["run_id"]
    sh(PY, "-m", "seedline", "register", run_id, "--name", "penguins", cwd=project, env=env)

    sys.path.insert(0, str(REPO / "src"))
    from seedline.workflow.registration import load_estimator, resolve_source

    source = resolve_source("penguins", start=project)
    model = load_estimator(source.model_bytes)
    (tmp / "model.skops").write_bytes(source.model_bytes)
    row = source.probe_input.iloc[0]
    values = [
        None if (isinstance(v, float) and v != v) else (v.item() if hasattr(v, "item") else v)
        for v in row.tolist()
    ]
    columns = source.schema.names
    split_body = json.dumps({"dataframe_split": {"columns": columns, "data": [values]}}).encode()
    v2_body = json.dumps(
        {
            "inputs": [
                {"name": c.name, "shape": [1], "datatype": c.v2_datatype, "data": [v]}
                for c, v in zip(source.schema.columns, values, strict=True)
            ]
        }
    ).encode()

    # MLflow: the same fitted pipeline, saved the way MLflow users save scikit-learn models
    import mlflow.sklearn
    from mlflow.models import infer_signature

    X_train = source.probe_input
    mlflow_dir = tmp / "mlflow-sklearn"
    mlflow.sklearn.save_model(
        model,
        str(mlflow_dir),
        signature=infer_signature(X_train, model.predict(X_train)),
        skops_trusted_types=["numpy.dtype", "sklearn.tree._tree.Tree"],
    )
    (tmp / "minimal_app.py").write_text(
        textwrap.dedent(MINIMAL_APP.format(model=str(tmp / "model.skops")))
    )

    results: list[dict[str, Any]] = []
    p = free_port()
    seedline_cmd = [PY, "-m", "seedline", "serve", "penguins", "--port", str(p)]
    results.append(
        measure(
            "seedline /invocations",
            seedline_cmd,
            project,
            f"http://127.0.0.1:{p}/v2/health/ready",
            f"http://127.0.0.1:{p}/invocations",
            split_body,
            args,
            env,
        )
    )
    p = free_port()
    seedline_cmd = [PY, "-m", "seedline", "serve", "penguins", "--port", str(p)]
    results.append(
        measure(
            "seedline V2 infer",
            seedline_cmd,
            project,
            f"http://127.0.0.1:{p}/v2/health/ready",
            f"http://127.0.0.1:{p}/v2/models/penguins/infer",
            v2_body,
            args,
            env,
        )
    )
    p = free_port()
    mlflow_bin = str(Path(PY).with_name("mlflow"))
    mlflow_cmd = [
        mlflow_bin,
        "models",
        "serve",
        "-m",
        str(mlflow_dir),
        "--env-manager",
        "local",
        "-p",
        str(p),
        "-h",
        "127.0.0.1",
    ]
    results.append(
        measure(
            "mlflow models serve",
            mlflow_cmd,
            tmp,
            f"http://127.0.0.1:{p}/ping",
            f"http://127.0.0.1:{p}/invocations",
            split_body,
            args,
            env,
        )
    )
    p = free_port()
    minimal_cmd = [
        PY,
        "-m",
        "uvicorn",
        "minimal_app:app",
        "--port",
        str(p),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    results.append(
        measure(
            "minimal FastAPI",
            minimal_cmd,
            tmp,
            f"http://127.0.0.1:{p}/ping",
            f"http://127.0.0.1:{p}/invocations",
            split_body,
            args,
            env,
        )
    )

    by = {r["server"]: r for r in results}
    ml = by["mlflow models serve"]
    mini = by["minimal FastAPI"]
    print(
        f"\nserving benchmark: penguins (ColumnTransformer + 200-tree forest), 1 row per request, {os.cpu_count()} CPUs"
    )
    print(
        f"medians of {args.repeats} repeats; latency over {args.requests} sequential requests; wrk -t1 -c8 -d{args.duration}s\n"
    )
    head = f"{'server':24} {'p50 ms':>8} {'p99 ms':>8} {'req/s (8 conn)':>15} {'wrk p99 ms':>11} {'x MLflow rps':>13} {'p99/MLflow':>11} {'x minimal rps':>14}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['server']:24} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['rps']:15.1f} {r['wrk_p99_ms']:11.2f} "
            f"{r['rps'] / ml['rps']:13.2f} {r['p99_ms'] / ml['p99_ms']:11.2f} {r['rps'] / mini['rps']:14.2f}"
        )
    bad = sum(r["non_2xx"] for r in results)
    if bad:
        print(f"\nwarning: {bad} non-2xx responses under load")
    if args.json:
        print(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
