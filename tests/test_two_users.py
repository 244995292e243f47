"""The scenario of issue 9, end to end through the CLI: two clones of one project, two users, one team store.

User A runs with a data snapshot, registers the model (its pipeline has a project-local
transformer, ``features.Interactions``) and pushes. User B's clone has no data file (it is
git-ignored): B pulls and reproduces, bitwise. The model then serves from a third folder
that holds no project file at all, given only the team store's URLs in the environment,
and answers as A's ``seedline predict`` does. A Dask sweep from B's clone, on a worker that
cannot read B's folder, gives the serial sweep's fingerprints. The team store is
PostgreSQL + S3 on loopback (``tests/services.py``), or a shared folder.

The setup is built once per module and team store, by fixtures that follow the scenario:
``two_users`` (the clones), ``pushed`` (A's work on the team store), ``reproduced`` (B's
pull and reproduction); each test takes the step it goes on from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from .conftest import clean_env, git, run_cli
from .conftest_dask import as_worker_user, foreign_worker, needs_root
from .serving_support import serving
from .test_remote import make_tiny, write_table
from .test_workers_anywhere import add_local_features

pytestmark = pytest.mark.slow

TEAM_STORES = ["folder", "postgres+s3"]
SEED = 11  # the tiny spec's seed (tests/test_remote.py)


@dataclass
class TwoUsers:
    """Two clones of one project that share a team store through the remote ``team``."""

    kind: str  # one of TEAM_STORES
    a: Path
    b: Path
    env: dict[str, str]
    store_env: dict[str, str]  # the team store as [store] given by the environment
    secrets: list[str]  # what must never appear in any output

    def cli(
        self, who: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> str:
        proc = run_cli(who, *args, env=env or self.env, check=check)
        for secret in self.secrets:
            assert secret not in proc.stdout + proc.stderr, (
                f"a secret leaked from 'seedline {' '.join(args)}'"
            )
        return proc.stdout

    def json(self, who: Path, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.cli(who, *args, "--json", env=env))


def _team_config(
    kind: str, request: pytest.FixtureRequest, tmp: Path
) -> tuple[str, dict[str, str], dict[str, str], list[str]]:
    """seedline.toml's [remotes.team] section, the users' environment, the team store as variables, and secrets."""
    if kind == "folder":
        database, objects = f"sqlite:///{tmp}/team/metadata.db", f"{tmp}/team/objects"
        toml = f'[remotes.team]\ndatabase = "{database}"\nobjects = "{objects}"\n'
        return toml, {}, {"SEEDLINE_DATABASE_URL": database, "SEEDLINE_OBJECTS_URL": objects}, []
    pg = request.getfixturevalue("postgres")
    s3 = request.getfixturevalue("s3")
    database, objects = pg.fresh_database(), s3.fresh_prefix()
    toml = (
        "[remotes.team]\n"
        f'database = "{database}"\n'
        f'objects = "{objects}"\n'
        "[remotes.team.objects_options]\n"
        f'endpoint_url = "{s3.endpoint}"\n'
    )
    # credentials come from the usual places (AWS_* variables, the URL), never from the committed
    # file; a folder without seedline.toml finds the S3 endpoint in AWS_ENDPOINT_URL
    store_env = {"SEEDLINE_DATABASE_URL": database, "SEEDLINE_OBJECTS_URL": objects}
    return toml, s3.env(), store_env, [pg.password, s3.secret_key]


@pytest.fixture(scope="module", params=TEAM_STORES)
def two_users(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoUsers]:
    """User A's project (with its data and a project-local transformer) and user B's fresh clone (without data)."""
    tmp = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    toml, env, store_env, secrets = _team_config(request.param, request, tmp)
    a = make_tiny(tmp / "alice")
    add_local_features(a)
    (a / "seedline.toml").write_text(toml)
    git(a, "add", "seedline.toml")
    git(a, "commit", "-q", "-m", "team store")
    git(tmp, "clone", "-q", str(a), "bob")
    b = tmp / "bob"
    assert not (b / "data" / "table.csv").exists()
    yield TwoUsers(
        kind=request.param,
        a=a,
        b=b,
        env=clean_env(**env),
        store_env=store_env,
        secrets=[s for s in secrets if s],
    )


@dataclass
class Pushed:
    run_id: str
    first: dict[str, Any]
    again: dict[str, Any]


@pytest.fixture(scope="module")
def pushed(two_users: TwoUsers) -> Pushed:
    """A: run --snapshot, register as tiny@production, push to the team store, push again."""
    u = two_users
    run = u.json(u.a, "run", "--snapshot")
    assert run["status"] == "succeeded", run
    u.cli(u.a, "register", run["run_id"], "--name", "tiny", "--alias", "production")
    first = u.json(u.a, "push", "team")
    again = u.json(u.a, "push", "team")
    return Pushed(run_id=run["run_id"], first=first, again=again)


@dataclass
class Reproduced:
    pulled: dict[str, Any]
    report: dict[str, Any]
    data_untouched: bool  # B's clone still had no data file after reproducing


@pytest.fixture(scope="module")
def reproduced(two_users: TwoUsers, pushed: Pushed) -> Reproduced:
    """B (no data): pull from the team store, then reproduce A's run."""
    u = two_users
    pulled = u.json(u.b, "pull", "team")
    report = u.json(u.b, "reproduce", pushed.run_id)
    return Reproduced(pulled, report, data_untouched=not (u.b / "data" / "table.csv").exists())


def test_b_pulls_and_reproduces_a_run_whose_data_only_a_has(
    two_users: TwoUsers, pushed: Pushed, reproduced: Reproduced
) -> None:
    """A: run --snapshot, register, push. B (no data): pull, reproduce BITWISE, fsck clean; a second push copies nothing."""
    u = two_users
    assert pushed.first["runs"] == [pushed.run_id] and pushed.first["models"] == ["tiny@1"]
    assert pushed.again["objects_copied"] == 0 and pushed.again["already_there"] == 1
    pulled, report = reproduced.pulled, reproduced.report
    assert pulled["runs"] == [pushed.run_id] and pulled["models"] == ["tiny@1"]
    assert report["verdict"] == "bitwise", report
    assert any("data snapshot" in n for n in report["notes"])
    assert reproduced.data_untouched
    fsck = u.json(u.b, "fsck")
    assert fsck["ok"], fsck
    assert "tiny" in u.cli(u.b, "models")


def test_the_model_serves_from_a_folder_without_project_files_as_a_predicts(
    two_users: TwoUsers, pushed: Pushed, tmp_path: Path
) -> None:
    """A third folder (no seedline.toml, no .py, no git) serves tiny@production from the team store; answers equal A's predict."""
    u = two_users
    if u.kind != "postgres+s3":
        pytest.skip("serving from a third folder runs on the PostgreSQL + S3 team store only")
    rows = tmp_path / "rows.csv"
    write_table(rows, seed=3, rows=12)
    frame = pd.read_csv(rows).drop(columns=["label"])
    frame.to_csv(rows, index=False)
    u.cli(
        u.a, "predict", "tiny@production", str(rows), "-o", str(tmp_path / "a.parquet"), "--proba"
    )
    by_a = pd.read_parquet(tmp_path / "a.parquet")

    third = tmp_path / "third"
    third.mkdir()
    env = {**u.env, **u.store_env}
    with serving(third, "tiny@production", env=env) as server:
        body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
        labels = httpx.post(f"{server.url}/invocations", json=body, timeout=30)
        assert labels.status_code == 200, labels.text
        proba = httpx.post(
            f"{server.url}/invocations",
            json={**body, "params": {"predict_method": "predict_proba"}},
            timeout=30,
        )
        assert proba.status_code == 200, proba.text
        v2 = httpx.post(
            f"{server.url}/v2/models/tiny/infer",
            json={
                "inputs": [
                    {
                        "name": c,
                        "shape": [len(frame)],
                        "datatype": "FP64",
                        "data": frame[c].tolist(),
                    }
                    for c in frame.columns
                ]
            },
            timeout=30,
        )
        assert v2.status_code == 200, v2.text
    assert labels.json()["predictions"] == by_a["prediction"].tolist()
    assert v2.json()["outputs"][0]["data"] == by_a["prediction"].tolist()
    assert np.array_equal(
        np.asarray(proba.json()["predictions"]), by_a[["proba_0", "proba_1"]].to_numpy()
    )
    # nothing of the project was needed, and serving wrote nothing of one into the folder
    assert not list(third.rglob("*.py")) and not (third / "seedline.toml").exists()
    assert not (third / ".seedline").exists()


def _sweep(root: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = run_cli(
        root, "sweep", "--param", "pipeline.clf.C=0.5,2.0", "--json", "--no-cache", *args, env=env
    )
    return dict(json.loads(out.stdout))


@needs_root
def test_a_dask_sweep_from_b_on_a_worker_that_cannot_read_b_matches_serial(
    two_users: TwoUsers, reproduced: Reproduced
) -> None:
    """B takes the data from A's snapshot; a sweep on a worker (another user) that cannot read B's folder gives the serial fingerprints."""
    from seedline.core.seeding import SeedPlan

    u = two_users
    if u.kind != "postgres+s3":
        pytest.skip("the Dask leg runs on the PostgreSQL + S3 team store only")
    # the snapshot reproduce wrote out is the data B sweeps on
    [snap] = (u.b / ".seedline" / "snapshots").glob("*/data/table.csv")
    (u.b / "data").mkdir(exist_ok=True)
    shutil.copyfile(snap, u.b / "data" / "table.csv")
    u.b.chmod(0o700)
    denied = subprocess.run(as_worker_user("test", "-r", str(u.b / "features.py")))
    assert denied.returncode != 0, "the worker user must not be able to read B's folder"

    # the serial sweep runs while the worker starts: both are mostly interpreters starting
    with ThreadPoolExecutor(max_workers=1) as background:
        serial_sweep = background.submit(_sweep, u.b, u.env)
        with foreign_worker(str(SeedPlan(SEED).hash_seed())) as address:
            dask = _sweep(u.b, u.env, "--executor", "dask", "--address", address)
        serial = serial_sweep.result()
    assert [t["status"] for t in dask["trials"]] == ["succeeded", "succeeded"], dask
    for key in ("model", "predictions"):
        assert [t["fingerprints"][key] for t in dask["trials"]] == [
            t["fingerprints"][key] for t in serial["trials"]
        ]
    assert dask["warnings"] == []
