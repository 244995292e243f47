"""Data sources beyond files: fsspec URLs (S3), SQL queries through SQLAlchemy, Python loader functions."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import seedline
from seedline.core.errors import DataError, SpecError
from seedline.core.fingerprint import fingerprint_file
from seedline.execution.data import read_source
from seedline.records.tracking import Store
from seedline.workflow.compare import diff_manifests

from .conftest import clean_env, run_cli


def table(n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["label"] = np.where(frame["x1"] + 0.5 * rng.normal(size=n) > 0, "up", "down")
    return frame


def spec(data: dict[str, Any], **extra: Any) -> seedline.Spec:
    return seedline.Spec.from_dict(
        {
            "name": "sources",
            "seed": 11,
            "data": {"target": "label", **data},
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "clf", "class": "sklearn.linear_model.LogisticRegression"},
            ],
            "metrics": ["accuracy"],
            **extra,
        }
    )


# -- SQL ------------------------------------------------------------------------------------------
@pytest.fixture
def sql_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    with sqlite3.connect(tmp_path / "sales.db") as conn:
        table().to_sql("rows", conn, index=False)
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "train.sql").write_text(
        "SELECT x1, x2, label FROM rows ORDER BY rowid\n"
    )
    monkeypatch.setenv("SALES_DB", f"sqlite:///{tmp_path / 'sales.db'}")
    return tmp_path


SQL_DATA = {"source": "sql:queries/train.sql", "database": "env:SALES_DB"}


def test_sql_source_runs_records_the_query_and_reproduces(sql_project: Path) -> None:
    """A query file run on the database named by env:VAR: fingerprinted by its result, the query file recorded."""
    store = Store.open(sql_project)
    result = seedline.run(spec(SQL_DATA), project_root=sql_project, store=store)
    source = result.manifest.data.sources[0]
    assert source.kind == "sql"
    assert source.fingerprint == result.manifest.data.table["digest"]
    assert source.query == fingerprint_file(sql_project / "queries" / "train.sql")
    assert source.database == f"sqlite:///{sql_project / 'sales.db'}"
    assert source.rows == 80
    report = seedline.reproduce(result.run_id, project_root=sql_project)
    assert report.verdict == "bitwise"


def test_sql_source_change_of_rows_is_a_data_difference(sql_project: Path) -> None:
    """New rows in the database change the source's fingerprint and its table: reproduce names the data."""
    from seedline.workflow.reproduce import check_data

    store = Store.open(sql_project)
    result = seedline.run(spec(SQL_DATA), project_root=sql_project, store=store)
    assert check_data(result.manifest, sql_project) == []
    with sqlite3.connect(sql_project / "sales.db") as conn:
        conn.execute("UPDATE rows SET x2 = x2 + 1 WHERE rowid = 3")
    (diff,) = check_data(result.manifest, sql_project)
    assert diff.name == "sql:queries/train.sql" and "x2" in diff.detail


def test_database_names_a_variable_so_the_spec_fingerprint_ignores_its_value(
    sql_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """env:VAR is a name: a different URL in the variable keeps the spec fingerprint; a new key leaves old specs alone."""
    first = spec(SQL_DATA).fingerprint()
    monkeypatch.setenv("SALES_DB", "sqlite:////elsewhere/other.db")
    assert spec(SQL_DATA).fingerprint() == first
    assert "database" not in spec({"source": "sklearn:load_iris"}).to_dict()["data"]


def test_a_password_in_the_spec_is_refused_without_showing_it() -> None:
    """database: with a password is a spec error, and the error never quotes the password."""
    with pytest.raises(SpecError) as err:
        spec({"source": "sql:q.sql", "database": "postgresql://ana:hunter2secret@db/sales"})
    assert "hunter2secret" not in str(err.value)
    assert "env:VARNAME" in str(err.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "sql:q.sql"}, "needs 'database'"),
        ({"source": "a.csv", "database": "env:DB"}, "applies to sql: sources"),
        ({"source": "sql:q.txt", "database": "env:DB"}, "ending in .sql"),
        ({"source": "sql:q.sql", "database": "env:1DB"}, "environment variable name"),
        ({"source": "python:loader", "target": "y"}, "python:package.module:function"),
        ({"source": "a.csv", "loader_params": {"n": 1}}, "applies to python: sources"),
    ],
)
def test_source_keys_are_checked(data: dict[str, Any], message: str) -> None:
    """Keys that belong to a kind of source are refused without it, and malformed sources are named."""
    with pytest.raises(SpecError, match=message):
        spec(data)


def test_unset_variable_and_failing_query_are_clear_errors(
    sql_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset env:VAR names the variable; a failing query names the source and the database."""
    monkeypatch.delenv("SALES_DB")
    with pytest.raises(DataError, match="SALES_DB is not set"):
        read_source("sql:queries/train.sql", sql_project, spec(SQL_DATA).data)
    monkeypatch.setenv("SALES_DB", f"sqlite:///{sql_project / 'sales.db'}")
    (sql_project / "queries" / "bad.sql").write_text("SELECT nope FROM rows")
    bad = spec({"source": "sql:queries/bad.sql", "database": "env:SALES_DB"})
    with pytest.raises(DataError, match=r"'sql:queries/bad.sql': the query failed on sqlite"):
        read_source("sql:queries/bad.sql", sql_project, bad.data)
    with pytest.raises(DataError, match=r"query file 'queries/tran.sql'.*Did you mean"):
        read_source("sql:queries/tran.sql", sql_project, bad.data)


def test_relative_sqlite_path_is_relative_to_the_project(
    sql_project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """sqlite:///sales.db names the project's file whatever the shell's folder, as in seedline.toml."""
    monkeypatch.setenv("SALES_DB", "sqlite:///sales.db")
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    _, record = read_source("sql:queries/train.sql", sql_project, spec(SQL_DATA).data)
    assert record["rows"] == 80 and record["database"] == f"sqlite:///{sql_project / 'sales.db'}"


def test_check_reports_sql_sources_as_data_outside_the_project(sql_project: Path) -> None:
    """seedline check: a query's rows live outside the project, and a clone needs access to them."""
    from seedline.execution.runner import prepare
    from seedline.workflow.check import _data_findings

    (finding,) = _data_findings(prepare(spec(SQL_DATA), project_root=sql_project), None)
    assert finding.kind == "data_outside_project" and "a SQL database" in finding.message


def test_snapshot_of_a_sql_source_keeps_the_table_a_clone_without_the_database_reproduces(
    sql_project: Path,
) -> None:
    """--snapshot keeps a query's result as Parquet; without the database, or with changed rows, reproduce reads it."""
    from seedline.execution.snapshots import read_table

    store = Store.open(sql_project)
    result = seedline.run(spec(SQL_DATA), project_root=sql_project, store=store, snapshot=True)
    source = result.manifest.data.sources[0]
    assert source.snapshot and not result.manifest.warnings
    kept = read_table(store.objects.get(source.snapshot))
    pd.testing.assert_frame_equal(kept, table(), check_dtype=False)
    # the rows change: the query's result differs, the run's table is used, the database untouched
    with sqlite3.connect(sql_project / "sales.db") as conn:
        conn.execute("UPDATE rows SET x2 = x2 + 1 WHERE rowid = 3")
    changed = seedline.reproduce(result.run_id, project_root=sql_project)
    assert changed.verdict == "bitwise", changed.differences
    assert any("gives other rows now" in n and "data snapshot" in n for n in changed.notes)
    # a teammate without the database
    (sql_project / "sales.db").unlink()
    report = seedline.reproduce(result.run_id, project_root=sql_project)
    assert report.verdict == "bitwise", report.differences
    assert any("cannot be read here" in n for n in report.notes), report.notes
    assert not (sql_project / "sales.db").exists()


def test_a_loader_table_parquet_cannot_hold_is_not_kept_and_says_why(tmp_path: Path) -> None:
    """A table whose types do not survive Parquet is not kept: the run succeeds with a warning naming the source."""
    (tmp_path / "mixed_loader.py").write_text(
        "import numpy as np, pandas as pd\n"
        "def load():\n"
        "    rng = np.random.default_rng(0)\n"
        "    x = rng.normal(size=60)\n"
        "    tag = pd.Series([1, 'a'] * 30, dtype=object)\n"
        "    return pd.DataFrame({'x1': x, 'x2': -x, 'tag': tag, 'label': np.where(x > 0, 'up', 'down')})\n"
    )
    store = Store.open(tmp_path)
    result = seedline.run(
        spec({"source": "python:mixed_loader:load", "features": ["x1", "x2"]}),
        project_root=tmp_path,
        store=store,
        snapshot=True,
    )
    assert result.manifest.data.sources[0].snapshot is None
    (warning,) = [w for w in result.manifest.warnings if "python:mixed_loader:load" in w]
    assert "was not kept" in warning and "Parquet" in warning and "a clone needs access" in warning


@pytest.mark.slow
def test_postgres_source_never_records_the_password(
    postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query on a real PostgreSQL: the URL with its password comes from the variable and appears nowhere."""
    import sqlalchemy as sa

    url = postgres.fresh_database()
    password = postgres.password
    assert password and password in url
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        table().to_sql("rows", conn, index=False)
    engine.dispose()
    (tmp_path / "train.sql").write_text("SELECT x1, x2, label FROM rows")
    monkeypatch.setenv("TRAIN_DB", url)
    data = {"source": "sql:train.sql", "database": "env:TRAIN_DB"}
    store = Store.open(tmp_path)
    result = seedline.run(spec(data), project_root=tmp_path, store=store)
    text = store.manifest(result.run_id).to_json()
    assert password not in text
    assert "***@127.0.0.1" in result.manifest.data.sources[0].database
    (tmp_path / "bad.sql").write_text("SELECT nope FROM rows")
    with pytest.raises(DataError) as err:
        read_source(
            "sql:bad.sql",
            tmp_path,
            spec({"source": "sql:bad.sql", "database": "env:TRAIN_DB"}).data,
        )
    assert password not in str(err.value) and password not in str(err.value.hint)
    monkeypatch.setenv("TRAIN_DB", url.replace(password, "wrong-" + password))
    with pytest.raises(DataError) as err:
        read_source("sql:train.sql", tmp_path, spec(data).data)
    assert password not in str(err.value)
    # the command line: a run's output, `show`, and a failing query's error
    (tmp_path / "seedline.yaml").write_text(spec(data).to_yaml())
    env = clean_env(TRAIN_DB=url)
    ran = run_cli(tmp_path, "run", "--json", env=env)
    shown = run_cli(tmp_path, "show", json.loads(ran.stdout)["run_id"], env=env)
    failed = run_cli(tmp_path, "run", "--set", "data.sources=[sql:bad.sql]", env=env, check=False)
    assert failed.returncode != 0 and "the query failed" in failed.stderr
    for out in (ran, shown, failed):
        assert password not in out.stdout + out.stderr


# -- Python loaders -------------------------------------------------------------------------------
LOADER = '''
"""A project-local data loader."""
import numpy as np
import pandas as pd


def load(n=60, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["label"] = np.where(frame["x1"] > 0, "up", "down")
    return frame
'''


def test_python_loader_is_recorded_as_local_code_and_its_change_is_a_code_change(
    tmp_path: Path,
) -> None:
    """python:module:function with loader_params: its module lands in code.local_modules; editing it shows in diff."""
    import sys

    (tmp_path / "myloader.py").write_text(LOADER)
    data = {"source": "python:myloader:load", "loader_params": {"n": 70, "seed": 4}}
    store = Store.open(tmp_path)
    first = seedline.run(spec(data), project_root=tmp_path, store=store)
    source = first.manifest.data.sources[0]
    assert (source.kind, source.module, source.rows) == ("python", "myloader", 70)
    assert source.code == fingerprint_file(tmp_path / "myloader.py")
    assert "myloader" in first.manifest.code.local_modules
    (tmp_path / "myloader.py").write_text(LOADER.replace("> 0", "> 0.1"))
    sys.modules.pop("myloader", None)
    second = seedline.run(spec(data), project_root=tmp_path, store=store)
    report = diff_manifests(store.manifest(first.run_id), store.manifest(second.run_id))
    assert any(d.category == "code" and "myloader" in d.name for d in report.differences)
    sys.modules.pop("myloader", None)


def test_loader_from_the_standard_library_or_returning_no_frame_is_refused(tmp_path: Path) -> None:
    """A loader is resolved like any spec function: stdlib is refused; a non-DataFrame result is named."""
    with pytest.raises(SpecError, match="standard library"):
        read_source("python:os:getcwd", tmp_path)
    (tmp_path / "notaframe.py").write_text("def load():\n    return [1, 2]\n")
    with pytest.raises(DataError, match="returned a list, not a pandas DataFrame"):
        read_source("python:notaframe:load", tmp_path)


# -- fsspec URLs ----------------------------------------------------------------------------------
def test_file_url_reads_like_a_path(tmp_path: Path) -> None:
    """file:///abs/a.csv is the local file: same kind and fingerprint as its path."""
    table().to_csv(tmp_path / "a.csv", index=False)
    _, by_url = read_source(f"file://{tmp_path / 'a.csv'}", tmp_path)
    _, by_path = read_source("a.csv", tmp_path)
    assert by_url["kind"] == "csv" and by_url["fingerprint"] == by_path["fingerprint"]


@pytest.mark.slow
def test_s3_source_is_fingerprinted_by_its_bytes_and_reproduces(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An s3:// CSV on a real S3 server: endpoint from [data.s3], keys from AWS_*; bytes fingerprint; bitwise."""
    import s3fs

    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    table().to_csv(tmp_path / "local.csv", index=False)
    url = f"{s3.fresh_prefix()}/train.csv"
    fs = s3fs.S3FileSystem(
        key=s3.access_key, secret=s3.secret_key, client_kwargs={"endpoint_url": s3.endpoint}
    )
    fs.put(str(tmp_path / "local.csv"), url)
    (tmp_path / "seedline.toml").write_text(f'[data.s3]\nendpoint_url = "{s3.endpoint}"\n')
    store = Store.open(tmp_path)
    result = seedline.run(spec({"source": url}), project_root=tmp_path, store=store)
    source = result.manifest.data.sources[0]
    assert source.kind == "fsspec"
    assert source.fingerprint == fingerprint_file(tmp_path / "local.csv")
    assert source.bytes == (tmp_path / "local.csv").stat().st_size
    assert seedline.reproduce(result.run_id, project_root=tmp_path).verdict == "bitwise"
    with pytest.raises(DataError, match="does not exist"):
        read_source(url.replace("train.csv", "nothing.csv"), tmp_path)
    assert json.loads(store.manifest(result.run_id).to_json())["data"]["sources"][0]["uri"] == url
