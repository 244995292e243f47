"""Scale without changing results: k-fold CV and sweeps, serial vs processes vs Dask vs cached.

The determinism matrix runs the penguins example through the command line (so the hash
seed is pinned as a user's run pins it) on: serial; local processes with 1 and 2 workers;
a Dask LocalCluster of worker processes with 1 and 2 workers; a scheduler and two workers
started as separate processes with the ``dask`` command line on loopback; and a cached
re-run. Every configuration must give identical per-step fingerprints, predictions and
metrics, for a 5-fold cross-validation and for a 6-trial sweep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seedline.core.seeding import SeedPlan
from seedline.records.tracking import Store

from .conftest import make_project, run_here_json, run_json
from .conftest_dask import DaskCluster, start_dask_cluster, stop_dask_cluster

CV = [
    "--set",
    "split.kind=kfold",
    "--set",
    "split.n_splits=5",
    "--set",
    "pipeline.clf.n_estimators=30",
]
SWEEP = [
    "--param",
    "pipeline.clf.n_estimators=10,30,60",
    "--param",
    "pipeline.clf.max_depth=4,null",
]
PENGUINS_SEED = 20240611


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("scale"), "penguins")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """Scheduler + 2 workers via the dask CLI, hashing strings as the spec's pinned runs do."""
    seed = str(SeedPlan(PENGUINS_SEED).hash_seed())
    c = start_dask_cluster(tmp_path_factory.mktemp("dask"), n_workers=2, hash_seed=seed)
    try:
        yield c
    finally:
        stop_dask_cluster(c)


def configurations(cluster: DaskCluster, *, cache: bool = True) -> dict[str, list[str]]:
    """Each executor once with two workers (jobs finish out of order); with ``cache``, the serial reference fills the cache and a last run reads it.

    One-worker variants are left out: a single worker finishes jobs in submission order, so
    it shows nothing the serial executor does not (each configuration is a fresh CLI with
    its own worker processes: about 20 s on two cores).
    """
    found = {
        # with the cache on, the reference run fits every step and fills the cache (misses)
        "serial": ["--executor", "serial", *([] if cache else ["--no-cache"])],
        "processes-2": ["--executor", "processes", "--workers", "2", "--no-cache"],
        "dask-local-2": ["--executor", "dask", "--workers", "2", "--no-cache"],
        "dask-cli-2": [
            "--executor",
            "dask",
            "--address",
            cluster.address,
            "--workers",
            "2",
            "--no-cache",
        ],
    }
    if cache:
        found["cached"] = ["--executor", "processes", "--workers", "2"]  # reads serial's cache
    return found


def shown(project: Path, run_id: str) -> dict[str, Any]:
    """What ``seedline show RUN --json`` prints, read in this process (no interpreter start per run)."""
    store = Store.open(project, create=False)
    try:
        return dict(json.loads(store.manifest(run_id).to_json()))
    finally:
        store.close()


def cv_signature(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "folds": [
            (f["model"], f["predictions"], f["metrics"], f["steps"]) for f in m["cv"]["folds"]
        ],
        "mean": m["cv"]["mean"],
        "std": m["cv"]["std"],
        "steps": [(s["name"], s["fitted"], s["output"]) for s in m["steps"]],
        "predictions": m["fingerprints"]["predictions"],
        "model": m["fingerprints"]["model"],
        "metrics": m["metrics"],
    }


@pytest.mark.slow
def test_cross_validation_is_identical_on_every_executor(
    project: Path, cluster: DaskCluster
) -> None:
    """5-fold CV: same per-fold and final fingerprints, predictions and metrics everywhere."""
    signatures: dict[str, dict[str, Any]] = {}
    settings: dict[str, dict[str, Any]] = {}
    caches: dict[str, list[Any]] = {}
    for name, flags in configurations(cluster).items():
        out = run_json(project, "run", *CV, *flags)
        assert out["status"] == "succeeded", (name, out.get("error"))
        assert out["cv"]["mean"] == out["metrics"]
        manifest = shown(project, out["run_id"])
        signatures[name] = cv_signature(manifest)
        settings[name] = manifest["settings"]
        caches[name] = [s["cache"] for s in manifest["steps"]]
    assert "hit" not in caches["serial"], "the reference run fitted every step itself"
    assert set(caches["cached"]) == {"hit"}, caches["cached"]
    reference = signatures["serial"]
    assert len(reference["folds"]) == 5
    for name, sig in signatures.items():
        assert sig == reference, f"{name} differs from serial"
    # the executor is recorded, and shown by diff, yet changes no fingerprint
    assert (
        settings["dask-cli-2"]["executor"] == "dask"
        and settings["dask-cli-2"]["address"] == cluster.address
    )
    assert settings["processes-2"]["workers"] == 2


@pytest.mark.slow
def test_a_sweep_is_identical_on_every_executor(project: Path, cluster: DaskCluster) -> None:
    """A 6-trial grid sweep: every trial's fingerprints and metrics, gathered in key order, are equal."""
    results: dict[str, list[tuple[Any, ...]]] = {}
    # the cache across executors is the cross-validation test's; trials use the same steps
    for name, flags in configurations(cluster, cache=False).items():
        report = run_json(project, "sweep", *SWEEP, *flags)
        assert [t["trial"] for t in report["trials"]] == [f"trial-{i:03d}" for i in range(6)]
        assert all(t["status"] == "succeeded" for t in report["trials"])
        results[name] = [
            (
                t["trial"],
                t["overrides"],
                t["fingerprints"]["model"],
                t["fingerprints"]["predictions"],
                t["metrics"],
                t["steps"],
            )
            for t in report["trials"]
        ]
        if name == "serial":  # the listing is the store's, the same whichever executor ran it
            ranked = run_here_json(project, "runs", "--sweep", report["sweep_id"])
            assert len(ranked) == 6
            assert ranked[0]["run_id"] == report["best"]["run_id"]
            accuracies = [r["metrics"]["accuracy"] for r in ranked]
            assert accuracies == sorted(accuracies, reverse=True)
    for name, trials in results.items():
        assert trials == results["serial"], f"{name} differs from serial"


@pytest.mark.slow
def test_random_search_and_promotion(project: Path) -> None:
    """A seeded random search picks the same trials every time; promote registers the best.

    The second search runs in this process (typer's runner), whose string hashing is not the
    pinned one of the first's fresh interpreter: the pick depends on the seed alone.
    """
    a = run_json(project, "sweep", *SWEEP, "--search", "random", "--trials", "3")
    b = run_here_json(project, "sweep", *SWEEP, "--search", "random", "--trials", "3")
    assert [t["overrides"] for t in a["trials"]] == [t["overrides"] for t in b["trials"]]
    assert len({tuple(t["overrides"]) for t in a["trials"]}) == 3
    promoted = run_json(project, "promote", a["sweep_id"], "--name", "penguins-best")
    assert promoted["run_id"] == a["best"]["run_id"] and promoted["version"] == 1
    listing = run_json(project, "sweeps")
    assert {s["sweep_id"] for s in listing} >= {a["sweep_id"], b["sweep_id"]}
