"""A team store: URLs from seedline.toml or the environment, PostgreSQL + S3 end to end, many first runs at once, no leaked passwords."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seedline.core.errors import StoreError
from seedline.records.tracking import Store
from seedline.storage.config import load_project_config, resolve_store
from seedline.storage.urls import redact_text, redact_url

from .conftest import clean_env, make_project, run_cli
from .services import PostgresServer, S3Server


# -- URLs and the config file ----------------------------------------------------------------------
def test_redact_url_hides_passwords_and_secret_query_values() -> None:
    """The one redaction function keeps everything but the password (and secret query values)."""
    assert (
        redact_url("postgresql+psycopg://ana:s3cr%40t@db.example:5432/seedline?sslmode=require")
        == "postgresql+psycopg://ana:***@db.example:5432/seedline?sslmode=require"
    )
    assert redact_url("postgresql://ana@db/x") == "postgresql://ana@db/x"
    assert redact_url("s3://bucket/prefix") == "s3://bucket/prefix"
    # nothing to hide: the URL comes back as given (an empty host kept, as sqlite needs)
    assert redact_url("sqlite:////abs/sales.db") == "sqlite:////abs/sales.db"
    assert redact_url("postgresql://db/x?password=hunter2") == "postgresql://db/x?password=***"
    assert (
        redact_text(
            "failed for postgresql://ana:hunter2@db/x (hunter2)", "postgresql://ana:hunter2@db/x"
        )
        == "failed for postgresql://ana:***@db/x (***)"
    )


def test_environment_overrides_seedline_toml_and_relative_paths_are_the_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[store] in seedline.toml is used unless SEEDLINE_DATABASE_URL / SEEDLINE_OBJECTS_URL say otherwise."""
    monkeypatch.delenv("SEEDLINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("SEEDLINE_OBJECTS_URL", raising=False)
    (tmp_path / "seedline.toml").write_text(
        '[store]\ndatabase = "sqlite:///shared/meta.db"\nobjects = "shared/objects"\n\n'
        '[remotes.team]\ndatabase = "postgres://ana@db/seedline"\nobjects = "s3://ml/seedline"\n'
    )
    where = resolve_store(tmp_path / ".seedline")
    assert where.database_url == f"sqlite:///{(tmp_path / 'shared/meta.db').resolve()}"
    assert where.objects_url == str((tmp_path / "shared/objects").resolve())
    assert where.sources == {"database": "seedline.toml", "objects": "seedline.toml"}
    team = load_project_config(tmp_path).remote("team")
    assert team.database == "postgresql+psycopg://ana@db/seedline"  # psycopg 3, the shipped driver
    with pytest.raises(StoreError, match="Did you mean 'team'"):
        load_project_config(tmp_path).remote("teem")
    monkeypatch.setenv("SEEDLINE_OBJECTS_URL", str(tmp_path / "elsewhere"))
    where = resolve_store(tmp_path / ".seedline")
    assert where.objects_url == str(tmp_path / "elsewhere")
    assert where.sources["objects"] == "$SEEDLINE_OBJECTS_URL"
    # a store opened from the config writes where the config says
    store = Store.open(tmp_path)
    address = store.objects.put(b"x")
    assert (tmp_path / "elsewhere" / address[:2] / address[2:]).exists()
    assert (tmp_path / "shared" / "meta.db").exists()
    store.close()


def test_outside_any_project_the_environment_alone_gives_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder with no project: both variables open that store and write nothing here; one alone is a clear error."""
    team = tmp_path / "team"
    Store(team, database_url=f"sqlite:///{team}/metadata.db", objects_url=str(team / "objects"))
    empty = tmp_path / "anywhere"
    empty.mkdir()
    monkeypatch.setenv("SEEDLINE_DATABASE_URL", f"sqlite:///{team}/metadata.db")
    monkeypatch.delenv("SEEDLINE_OBJECTS_URL", raising=False)
    with pytest.raises(StoreError) as err:
        Store.find(empty)
    assert "only SEEDLINE_DATABASE_URL is set" in err.value.message
    assert "set SEEDLINE_OBJECTS_URL too" in (err.value.hint or "")
    monkeypatch.setenv("SEEDLINE_OBJECTS_URL", str(team / "objects"))
    store = Store.find(empty)
    assert store.objects.put(b"x") and store.list_runs() == []
    assert store.project_root == empty.resolve() and list(empty.iterdir()) == []
    store.close()


def test_a_bad_seedline_toml_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    (tmp_path / "seedline.toml").write_text('[store]\ndatabse = "postgresql://ana:hunter2@db/x"\n')
    with pytest.raises(StoreError) as err:
        load_project_config(tmp_path)
    assert "store.databse: unknown key. Did you mean 'database'?" in str(err.value)
    assert "hunter2" not in str(err.value)
    (tmp_path / "seedline.toml").write_text('[store]\ndatabase = "hunter2-no-scheme"\n')
    with pytest.raises(StoreError, match="must be a SQLAlchemy URL"):
        load_project_config(tmp_path)
    (tmp_path / "seedline.toml").write_text("[store\n")
    with pytest.raises(StoreError, match="cannot be read as TOML"):
        load_project_config(tmp_path)


def test_a_wrong_database_password_is_an_error_that_does_not_show_it(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """A connection failure names the redacted URL and never the password that was given."""
    url = postgres.fresh_database().replace(postgres.password, "Wr0ngPassw0rd")
    with pytest.raises(StoreError) as err:
        Store(tmp_path / ".seedline", database_url=url)
    text = str(err.value)
    assert "Wr0ngPassw0rd" not in text and postgres.password not in text
    assert "seedline:***@127.0.0.1" in text


# -- many first runs at once -----------------------------------------------------------------------
START_RUNS = """
import subprocess, sys, json
procs = [subprocess.Popen([sys.executable, "-m", "seedline", "run", "--json"],
         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range({n})]
print(json.dumps([[p.wait(), *p.communicate()] for p in procs]))
"""


def _simultaneous_first_runs(project: Path, env: dict[str, str], n: int = 8) -> list[list[object]]:
    # one parent starts all of them back to back, so they race on the fresh store
    out = subprocess.run(
        [sys.executable, "-c", START_RUNS.format(n=n)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return list(json.loads(out.stdout))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_eight_simultaneous_first_runs_on_a_fresh_store_are_all_recorded(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Issue 14 item 13: eight `seedline run` at once on a new store all succeed and are all recorded."""
    project = make_project(tmp_path, "penguins")
    env = clean_env(SEEDLINE_DATABASE_URL=None, SEEDLINE_OBJECTS_URL=None)
    if backend == "postgresql":
        env["SEEDLINE_DATABASE_URL"] = request.getfixturevalue("postgres").fresh_database()
    results = _simultaneous_first_runs(project, env)
    failures = [(rc, err[-2000:]) for rc, _out, err in results if rc != 0]
    assert failures == []
    run_ids = {json.loads(out)["run_id"] for _rc, out, _err in results}
    assert len(run_ids) == 8
    listed = run_cli(project, "runs", "--json", env=env)
    rows = json.loads(listed.stdout)
    assert {r["run_id"] for r in rows} == run_ids
    assert {r["status"] for r in rows} == {"succeeded"}


# -- PostgreSQL + S3, end to end, through seedline.toml ----------------------------------------------
@pytest.mark.slow
def test_run_and_reproduce_on_postgresql_and_s3_configured_in_seedline_toml(
    postgres: PostgresServer, s3: S3Server, tmp_path: Path
) -> None:
    """A project whose seedline.toml names a PostgreSQL database and an S3 prefix runs and reproduces bitwise.

    The committed file holds no secret: the password comes from PGPASSWORD and the S3 keys
    from the AWS variables, and neither appears in any output or in the manifest.
    """
    project = make_project(tmp_path, "penguins")
    db_url = postgres.fresh_database()
    no_password = db_url.replace(f":{postgres.password}@", "@")
    prefix = s3.fresh_prefix()
    (project / "seedline.toml").write_text(
        f'[store]\ndatabase = "{no_password}"\nobjects = "{prefix}"\n\n'
        f'[store.objects_options]\nendpoint_url = "{s3.endpoint}"\n'
    )
    env = clean_env(
        SEEDLINE_DATABASE_URL=None,
        SEEDLINE_OBJECTS_URL=None,
        PGPASSWORD=postgres.password,
        AWS_ACCESS_KEY_ID=s3.access_key,
        AWS_SECRET_ACCESS_KEY=s3.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
    )
    run = run_cli(project, "run", "--json", env=env)
    run_id = json.loads(run.stdout)["run_id"]
    again = run_cli(project, "reproduce", run_id, "--json", env=env)
    assert json.loads(again.stdout)["verdict"] == "bitwise"
    shown = run_cli(project, "show", run_id, "--json", env=env)
    for text in (run.stdout, run.stderr, again.stdout, again.stderr, shown.stdout):
        assert postgres.password not in text and s3.secret_key not in text
    # everything lives in the team store, nothing in the clone's folder
    assert not (project / ".seedline" / "metadata.db").exists()
    assert not (project / ".seedline" / "objects").exists()
    import s3fs

    fs = s3fs.S3FileSystem(
        key=s3.access_key, secret=s3.secret_key, client_kwargs={"endpoint_url": s3.endpoint}
    )
    manifest_address = json.loads(shown.stdout).get("artifacts", {}).get("model")
    assert manifest_address and fs.exists(f"{prefix}/{manifest_address[:2]}/{manifest_address[2:]}")
