"""Dask workers anywhere: a worker that can read neither the project folder nor the store runs a sweep.

The worker runs as another user (created with ``useradd`` when the tests run as root) and
the project folder is mode 700, so the worker can import the spec's project-local module
only from the sources the client ships, and can record nothing itself: trials come back
to the client, which records them. Needs root (to create the user and drop to it).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import git, make_project, run_cli
from .conftest_dask import as_worker_user, foreign_worker, needs_root

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, needs_root]

FEATLIB = '''"""Helpers of the features module: a second project-local module, imported by the first."""
import numpy as np


def product(a, b):
    return np.asarray(a, dtype=float) * np.asarray(b, dtype=float)
'''

FEATURES = '''"""A project-local transformer: appends the product of the first two columns."""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from featlib import product


class Interactions(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        return np.hstack([X, product(X[:, :1], X[:, 1:2])])
'''


def add_local_features(root: Path) -> None:
    """Put a project-local ``features.Interactions`` step before the ``clf`` step of the spec, and commit."""
    (root / "featlib.py").write_text(FEATLIB)
    (root / "features.py").write_text(FEATURES)
    spec = root / "seedline.yaml"
    spec.write_text(
        spec.read_text().replace(
            "  - name: clf\n", "  - name: inter\n    class: features.Interactions\n  - name: clf\n"
        )
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "local features")


def project_with_features(tmp: Path) -> Path:
    """The penguins example with a project-local ``features.Interactions`` step, committed."""
    root = make_project(tmp, "penguins")
    add_local_features(root)
    return root


def spec_hash_seed() -> str:
    """The PYTHONHASHSEED the CLI pins for the penguins spec (the workers are started with it)."""
    import yaml

    from seedline.core.seeding import SeedPlan

    seed = yaml.safe_load((REPO / "examples" / "penguins" / "seedline.yaml").read_text())["seed"]
    return str(SeedPlan(seed).hash_seed())


@pytest.fixture(scope="module", name="foreign_worker")
def foreign_worker_fixture() -> Iterator[str]:
    """A scheduler, and one worker running as another user with the spec's hash seed; yields the address."""
    with foreign_worker(spec_hash_seed()) as address:
        yield address


def _sweep(root: Path, *args: str) -> dict[str, Any]:
    out = run_cli(
        root, "sweep", "--param", "pipeline.clf.n_estimators=3,5", "--json", "--no-cache", *args
    )
    return dict(json.loads(out.stdout))


def manifest(root: Path, run_id: str) -> dict[str, Any]:
    from seedline.records.tracking import Store

    store = Store.open(root)
    try:
        return store.manifest(run_id).to_dict()
    finally:
        store.close()


def test_a_worker_without_the_project_or_the_store_sweeps_like_serial(
    foreign_worker: str, tmp_path: Path
) -> None:
    """Trials on a worker that cannot read the project give the serial fingerprints; the client records them."""
    root = project_with_features(tmp_path)
    root.chmod(0o700)
    denied = subprocess.run(as_worker_user("test", "-r", str(root / "features.py")))
    assert denied.returncode != 0, "the worker user must not be able to read the project"

    serial = _sweep(root)
    dask = _sweep(root, "--executor", "dask", "--address", foreign_worker)
    assert [t["status"] for t in dask["trials"]] == ["succeeded", "succeeded"], dask
    for key in ("model", "predictions"):
        assert [t["fingerprints"][key] for t in dask["trials"]] == [
            t["fingerprints"][key] for t in serial["trials"]
        ]
    assert [t["metrics"] for t in dask["trials"]] == [t["metrics"] for t in serial["trials"]]
    assert dask["warnings"] == []
    # recorded by the client, with the local sources stored and the worker's true hash seed
    shown = manifest(root, dask["trials"][1]["run_id"])
    assert set(shown["code"]["local_modules"]) == {"features", "featlib"}
    assert all(m["object"] for m in shown["code"]["local_modules"].values())
    assert shown["seeds"]["hash_seed"]["pinned"] is True
    assert shown["fingerprints"]["code"] == serial["trials"][1]["fingerprints"]["code"]
    assert shown["settings"]["address"] == foreign_worker


def test_trials_on_workers_with_another_hash_seed_are_marked(
    foreign_worker: str, tmp_path: Path
) -> None:
    """A trial whose worker lacks the client's PYTHONHASHSEED is recorded as not pinned, with how to start workers."""
    root = project_with_features(tmp_path)
    # another master seed: the CLI pins another hash seed than the worker's
    report = _sweep(root, "--executor", "dask", "--address", foreign_worker, "--set", "seed=7")
    assert [t["status"] for t in report["trials"]] == ["succeeded", "succeeded"]
    assert len(report["warnings"]) == 2 and "PYTHONHASHSEED" in report["warnings"][0]
    assert "--no-nanny" in report["warnings"][0]
    shown = manifest(root, report["trials"][0]["run_id"])
    hash_seed = shown["seeds"]["hash_seed"]
    assert hash_seed["pinned"] is False and hash_seed["matches_client"] is False
    assert hash_seed["PYTHONHASHSEED"] == spec_hash_seed()
