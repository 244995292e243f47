"""The scenario of issue 9, end to end through the CLI: two clones of one project, two users, one team store.

User A runs with a data snapshot, registers the model and pushes. User B's clone has no
data file (it is git-ignored): B pulls and reproduces, bitwise. The team store is
PostgreSQL + S3 on loopback (``tests/services.py``), or a shared folder.

``two_users`` builds the setup; tests that extend the scenario (serving from a third
folder, a Dask worker that cannot read B's folder) take it and go on from ``pushed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import clean_env, git, run_cli
from .test_remote import make_tiny

pytestmark = pytest.mark.slow


@dataclass
class TwoUsers:
    """Two clones of one project that share a team store through the remote ``team``."""

    a: Path
    b: Path
    env: dict[str, str]
    secrets: list[str]  # what must never appear in any output

    def cli(self, who: Path, *args: str, check: bool = True) -> str:
        proc = run_cli(who, *args, env=self.env, check=check)
        for secret in self.secrets:
            assert secret not in proc.stdout + proc.stderr, (
                f"a secret leaked from 'seedline {' '.join(args)}'"
            )
        return proc.stdout

    def json(self, who: Path, *args: str) -> object:
        return json.loads(self.cli(who, *args, "--json"))


def _team_config(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[str, dict[str, str], list[str]]:
    """seedline.toml's [remotes.team] section, the environment the users need, and secrets to watch for."""
    if request.param == "folder":
        return (
            f'[remotes.team]\ndatabase = "sqlite:///{tmp_path}/team/metadata.db"\nobjects = "{tmp_path}/team/objects"\n',
            {},
            [],
        )
    pg = request.getfixturevalue("postgres")
    s3 = request.getfixturevalue("s3")
    database = pg.fresh_database()
    toml = (
        "[remotes.team]\n"
        f'database = "{database}"\n'
        f'objects = "{s3.fresh_prefix()}"\n'
        "[remotes.team.objects_options]\n"
        f'endpoint_url = "{s3.endpoint}"\n'
    )
    # credentials come from the usual places, never from the committed file
    return toml, s3.env(), [pg.password, s3.secret_key]


@pytest.fixture(params=["folder", "postgres+s3"])
def two_users(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TwoUsers]:
    """User A's project (with its data) and user B's fresh clone (without), both naming the team remote."""
    toml, env, secrets = _team_config(request, tmp_path)
    a = make_tiny(tmp_path / "alice")
    (a / "seedline.toml").write_text(toml)
    git(a, "add", "seedline.toml")
    git(a, "commit", "-q", "-m", "team store")
    git(tmp_path, "clone", "-q", str(a), "bob")
    b = tmp_path / "bob"
    assert not (b / "data" / "table.csv").exists()
    yield TwoUsers(a=a, b=b, env=clean_env(**env), secrets=[s for s in secrets if s])


def test_b_pulls_and_reproduces_a_run_whose_data_only_a_has(two_users: TwoUsers) -> None:
    """A: run --snapshot, register, push. B (no data): pull, reproduce BITWISE, fsck clean; a second push copies nothing."""
    u = two_users
    run = u.json(u.a, "run", "--snapshot")
    assert isinstance(run, dict) and run["status"] == "succeeded"
    run_id = run["run_id"]
    u.cli(u.a, "register", run_id, "--name", "tiny")
    pushed = u.json(u.a, "push", "team")
    assert (
        isinstance(pushed, dict) and pushed["runs"] == [run_id] and pushed["models"] == ["tiny@1"]
    )
    again = u.json(u.a, "push", "team")
    assert isinstance(again, dict) and again["objects_copied"] == 0 and again["already_there"] == 1

    pulled = u.json(u.b, "pull", "team")
    assert (
        isinstance(pulled, dict) and pulled["runs"] == [run_id] and pulled["models"] == ["tiny@1"]
    )
    report = u.json(u.b, "reproduce", run_id)
    assert isinstance(report, dict) and report["verdict"] == "bitwise", report
    assert any("data snapshot" in n for n in report["notes"])
    assert not (u.b / "data" / "table.csv").exists()
    fsck = u.json(u.b, "fsck")
    assert isinstance(fsck, dict) and fsck["ok"], fsck
    models = u.cli(u.b, "models")
    assert "tiny" in models
