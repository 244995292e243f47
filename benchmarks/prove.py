"""Benchmarks of issue 3 (prove and explain), in one process so the ratios are fair.

- reproduce: wall time of ``seedline.reproduce(run)`` (pre-checks + rerun + verification)
  as a ratio to the original run's wall time; target <= 1.1x plus the fingerprint checks.
- check: wall time of ``seedline check`` on the digits and penguins examples.

Figures are medians over repeated trials (the machine is shared and noisy).
Usage: python benchmarks/prove.py [--trials N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@x",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@x",
}


def project(tmp: Path, example: str) -> Path:
    root = Path(tempfile.mkdtemp(dir=tmp)) / example
    shutil.copytree(ROOT / "examples" / example, root, ignore=shutil.ignore_patterns(".seedline"))
    git_init(root)
    return root


def git_init(root: Path) -> None:
    """Commit everything in ``root`` to a new repository, as a user's project would be."""
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def bench_reproduce(root: Path, trials: int) -> tuple[float, float, float, str]:
    import seedline
    from seedline.workflow.reproduce import reproduce

    seedline.run(root / "seedline.yaml")  # warm imports and caches of the OS
    runs, reps, checks = [], [], []
    verdict = ""
    for _ in range(trials):
        t = time.perf_counter()
        rid = seedline.run(root / "seedline.yaml").run_id
        runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        report = reproduce(rid, project_root=root)
        reps.append(time.perf_counter() - t)
        checks.append(report.seconds.get("checks", 0.0))
        verdict = report.verdict
    return statistics.median(runs), statistics.median(reps), statistics.median(checks), verdict


def bench_check(root: Path, trials: int) -> float | None:
    cli = [sys.executable, "-m", "seedline", "check", "--json"]
    times = []
    for _ in range(trials):
        t = time.perf_counter()
        proc = subprocess.run(cli, cwd=root, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - t)
        if proc.returncode not in (0, 1):
            print(f"  check failed on {root.name}: {proc.stderr.strip()[:300]}")
            return None
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for example in ("digits", "penguins"):
            root = project(Path(tmp), example)
            run_s, rep_s, check_s, verdict = bench_reproduce(root, args.trials)
            ratio = rep_s / run_s
            ratio_wo = (rep_s - check_s) / run_s
            rows.append(
                (
                    f"reproduce {example}",
                    f"{rep_s:.3f} s",
                    f"{run_s:.3f} s",
                    f"{ratio:.2f}x",
                    f"{ratio_wo:.2f}x",
                    "<= 1.1x + checks",
                    verdict,
                )
            )
        for example in ("digits", "penguins"):
            root = project(Path(tmp), example)
            t = bench_check(root, max(1, args.trials // 2))
            rows.append(
                (
                    f"check {example} (CLI, wall)",
                    f"{t:.2f} s" if t else "n/a",
                    "-",
                    "-",
                    "-",
                    "report",
                    "-",
                )
            )
    print(f"machine: {os.cpu_count()} cores; medians of {args.trials} trials\n")
    head = (
        "benchmark",
        "seedline",
        "baseline (run)",
        "ratio",
        "ratio w/o checks",
        "target",
        "verdict",
    )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
