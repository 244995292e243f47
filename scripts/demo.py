"""`make demo`: run the penguins example twice, each in a fresh interpreter, and show
that both runs have identical fingerprints (the store is examples/penguins/.seedline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "penguins"
SEEDLINE = [sys.executable, "-m", "seedline"]


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def main() -> int:
    env = dict(os.environ)
    step(
        "seedline run  (examples/penguins: a ColumnTransformer + random forest on a CSV shipped in the repo)"
    )
    first = subprocess.run([*SEEDLINE, "run"], cwd=EXAMPLE, env=env, check=False)
    if first.returncode != 0:
        return first.returncode
    step(
        "seedline run --no-cache --json  (again: a fresh interpreter, another shell PYTHONHASHSEED, every step refitted)"
    )
    env["PYTHONHASHSEED"] = "12345"
    out = subprocess.run(
        [*SEEDLINE, "run", "--no-cache", "--json"],
        cwd=EXAMPLE,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    second = json.loads(out.stdout)
    print(json.dumps({k: second[k] for k in ("run_id", "status", "metrics")}, indent=2))
    step("seedline runs")
    subprocess.run([*SEEDLINE, "runs", "-n", "5"], cwd=EXAMPLE, check=True)
    listing = json.loads(
        subprocess.run(
            [*SEEDLINE, "runs", "--json", "-n", "2"],
            cwd=EXAMPLE,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    a, b = listing[1], listing[0]
    step(f"fingerprints of {a['run_id']} and {b['run_id']}")
    same = True
    for key in ("model_fingerprint", "predictions_fingerprint"):
        equal = a[key] == b[key]
        same &= equal
        print(f"  {key:<24} {a[key][:40]}…  {'==' if equal else '!='}  {b[key][:40]}…")
    if same:
        print("\n\033[32mboth runs are bit-identical: same fitted state, same predictions.\033[0m")
        print(f"next: cd examples/penguins && seedline show {b['run_id'][:6]}")
        return 0
    print("\n\033[31mthe runs differ: this is a bug, please report it\033[0m")
    return 1


if __name__ == "__main__":
    sys.exit(main())
