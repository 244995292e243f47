"""A run's records through the embedded recorder (records/recording.py) and through ``Store``: the same rows.

``seedline run`` on the embedded default records with the standard library's sqlite3; every
other path goes through SQLAlchemy. Both run the same SQL text, so what each leaves in the
database must be the same, row for row; the recorder must open only where nothing could make
the full path answer differently, and a run through it must never import SQLAlchemy.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from seedline.cli.launch import PINNED_FLAG
from seedline.core.errors import StoreError
from seedline.core.seeding import SeedPlan
from seedline.core.spec import load_spec
from seedline.records.cache_index import CacheEntry, CacheIndex
from seedline.records.manifest import Manifest
from seedline.records.recording import EmbeddedRecorder, RunRecords, open_run_store
from seedline.records.tracking import Store
from seedline.storage.embedded import DATABASE_ENV, OBJECTS_ENV

from .conftest import make_project
from .test_store import _manifest as stored_manifest

TABLES = {
    "runs": "id",
    "metrics": "run_id, name",
    "run_params": "run_id, name",
    "run_tags": "run_id, key",
    "cache_entries": "key",
}


def _new_store(project: Path) -> None:
    """A project whose embedded database exists at the head revision (made by ``Store``)."""
    project.mkdir(parents=True, exist_ok=True)
    Store.open(project).close()


@pytest.fixture(params=["store", "recorder"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunRecords]:
    _new_store(tmp_path)
    opened: RunRecords | None
    if request.param == "store":
        opened = Store.open(tmp_path)
    else:
        opened = EmbeddedRecorder.open(tmp_path)
        assert opened is not None
    yield opened
    opened.close()


def _manifest(run_id: str) -> Manifest:
    m = stored_manifest(run_id)
    m.spec = {
        "name": "recorded",
        "description": "not indexed",
        "seed": 3,
        "pipeline": [{"name": "clf", "class": "x.Y", "params": {"C": 0.5, "fit": True}}],
        "metrics": ["accuracy", "f1_macro"],
    }
    return m


def _record(records: RunRecords) -> None:
    """Everything a run writes, and the cache index's whole life."""
    m = _manifest("rec000000001")
    records.begin_run(m, tags={"team": "vision", "ticket": "ML-1"})
    m.status = "failed"
    m.finished_at = "2026-01-01T00:00:02.000Z"
    m.metrics = {"accuracy": 0.5, "f1_macro": 0.25}
    m.error = {"phase": "fit", "type": "ValueError", "message": "no", "traceback": "..."}
    m.fingerprints = {"model": "model:1", "predictions": "predictions:1", "data": "table:1"}
    m.artifacts["model"] = records.objects.put(b"a model")
    m.sweep = {"id": "sweep0000001"}
    records.finish_run(m, duration_s=2.0)
    index = CacheIndex(records)
    entry = CacheEntry(
        key="cachekey:1",
        step="clf",
        cls="x.Y",
        fitted_object=records.objects.put(b"fitted"),
        output_object=None,
        fitted_fingerprint="fitted:1",
        output_fingerprint=None,
        output_shape="[3, 2]",
        size_bytes=6,
        created_at="2026-01-01T00:00:00.000Z",
        last_used_at="2026-01-01T00:00:00.000Z",
    )
    assert index.add(entry)
    assert not index.add(entry)  # a concurrent run that stored the same step
    assert index.add(CacheEntry(**{**entry.__dict__, "key": "cachekey:2", "size_bytes": 4}))
    index.touch("cachekey:1")
    assert index.usage() == (2, 10)
    assert [e.key for e in index.remove(["cachekey:2", "absent"])] == ["cachekey:2"]


def _rows(project: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(project / ".seedline" / "metadata.db")
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in TABLES.items()
        }
    finally:
        conn.close()


def test_the_recorder_leaves_the_rows_the_store_leaves(tmp_path: Path) -> None:
    """The same records through both ways in: identical rows in every table a run writes
    (the cache entry's last use aside: it is the time of the touch)."""
    out = {}
    for way in ("store", "recorder"):
        project = tmp_path / way
        _new_store(project)
        records = Store.open(project) if way == "store" else EmbeddedRecorder.open(project)
        assert records is not None
        _record(records)
        assert records.model_object_for("model:1") == records.objects.put(b"a model")
        assert records.model_object_for("model:2") is None
        records.close()
        out[way] = _rows(project)
    for rows in out.values():
        ((*cache, last_used, hits, fitted_step),) = rows["cache_entries"]
        assert hits == 1 and str(last_used) > "2026-01-01"
        rows["cache_entries"] = [(*cache, fitted_step)]
    assert out["recorder"] == out["store"]
    runs = out["store"]["runs"]
    assert len(runs) == 1 and runs[0][2] == "failed"
    assert out["store"]["metrics"] == [
        ("rec000000001", "accuracy", 0.5),
        ("rec000000001", "f1_macro", 0.25),
    ]
    params = {name: (value, number) for _, name, value, number in out["store"]["run_params"]}
    assert params["pipeline.clf.params.C"] == ("0.5", 0.5)
    assert params["pipeline.clf.params.fit"] == ("true", 1.0)
    assert "description" not in params
    assert [r[1:] for r in out["store"]["run_tags"]] == [("team", "vision"), ("ticket", "ML-1")]


def test_a_run_never_begun_cannot_finish_and_nothing_changes(records: RunRecords) -> None:
    m = _manifest("rec000000009")
    m.metrics = {"accuracy": 1.0}
    with pytest.raises(StoreError, match="never begun"):
        records.finish_run(m)
    with records._reader() as rows:
        assert rows("SELECT COUNT(*) FROM metrics", {})[0][0] == 0


def test_a_finish_that_fails_part_way_changes_nothing(
    records: RunRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's status and metrics are written before its parameters: a failure there rolls
    the whole finish back, both ways."""
    from seedline.records import recording

    m = _manifest("rec000000010")
    records.begin_run(m)
    m.status, m.metrics = "succeeded", {"accuracy": 1.0}
    monkeypatch.setattr(recording, "_ADD_PARAM", "INSERT INTO no_such_table VALUES (:run_id)")
    with pytest.raises(Exception, match="no_such_table"):
        records.finish_run(m)
    with records._reader() as rows:
        assert rows("SELECT status FROM runs", {}) == [("running",)]
        assert rows("SELECT COUNT(*) FROM metrics", {})[0][0] == 0


def test_nothing_to_write_writes_nothing(records: RunRecords) -> None:
    """Empty lists of values run no statement (SQLAlchemy would run one without values and
    fail), and a cache prune reports only what it deleted itself."""
    from seedline.records.recording import add_tags

    records.begin_run(_manifest("rec000000011"))
    with records._writer() as execute:
        add_tags(execute, "rec000000011", {})
        assert execute("DELETE FROM run_tags WHERE run_id = :run_id", []) == 0
    index = CacheIndex(records)
    assert index.remove(["absent"]) == []
    assert index.remove([]) == []
    if isinstance(records, Store):
        from seedline.records.tags import delete_tags, set_tags

        assert set_tags(records, "rec000000011", {"a": "1"}) == {"a": "1"}
        assert delete_tags(records, "rec000000011", []) == {"a": "1"}


def test_a_run_that_fails_before_it_begins_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot over its limit stops the run before its row is written: the recorder the
    run opened is closed all the same."""
    import seedline
    from seedline.core.errors import SeedlineError

    project = make_project(tmp_path, "penguins")
    seedline.run(project / "seedline.yaml", use_cache=False, plots=False)
    closed: list[EmbeddedRecorder] = []
    real_close = EmbeddedRecorder.close

    def close(self: EmbeddedRecorder) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(EmbeddedRecorder, "close", close)
    with pytest.raises(SeedlineError, match="snapshot"):
        seedline.run(project / "seedline.yaml", snapshot=True, snapshot_max_bytes=1)
    assert len(closed) == 1
    with pytest.raises(sqlite3.ProgrammingError):
        closed[0].connection.execute("SELECT 1")


def test_an_sqlite_too_old_for_the_store_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seedline.storage import embedded

    _new_store(tmp_path)
    monkeypatch.setattr(embedded.sqlite3, "sqlite_version_info", (3, 23, 1))
    monkeypatch.setattr(embedded.sqlite3, "sqlite_version", "3.23.1")
    assert EmbeddedRecorder.open(tmp_path) is None
    with pytest.raises(StoreError, match=r"needs SQLite 3\.24\.0 or newer.*links SQLite 3\.23\.1"):
        Store.open(tmp_path)


def test_the_recorder_opens_only_where_the_full_path_answers_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No database yet, a store named by seedline.toml or the environment, a schema at
    another revision: the run goes through ``Store`` (which creates, migrates or reads the
    store given), and the recorder leaves the database as it found it."""
    project = tmp_path / "p"
    project.mkdir()
    assert EmbeddedRecorder.open(project) is None  # no database: Store creates it
    opened = open_run_store(project)
    assert isinstance(opened, Store)
    opened.close()
    assert (project / ".seedline" / "metadata.db").is_file()
    recorder = open_run_store(project)
    assert isinstance(recorder, EmbeddedRecorder)
    recorder.close()

    for variable in (DATABASE_ENV, OBJECTS_ENV):
        monkeypatch.setenv(variable, "sqlite:////nowhere/else.db")
        assert EmbeddedRecorder.open(project) is None
        monkeypatch.delenv(variable)
    (project / "seedline.toml").write_text("[store]\n")
    assert EmbeddedRecorder.open(project) is None
    (project / "seedline.toml").unlink()

    database = project / ".seedline" / "metadata.db"
    conn = sqlite3.connect(database)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '0007'")
    conn.close()
    assert EmbeddedRecorder.open(project) is None
    conn = sqlite3.connect(database)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0007",)
    conn.close()


def test_a_run_on_the_embedded_store_records_without_sqlalchemy(tmp_path: Path) -> None:
    """The first run creates the store (through Store); the next two, without the cache and
    with every step a hit, record through the recorder: no SQLAlchemy in the process, every
    row there, and no write-ahead log left beside the database."""
    project = make_project(tmp_path, "penguins")
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('SQLALCHEMY', 'sqlalchemy' in sys.modules, file=sys.stderr))\n"
        "sys.argv = ['seedline', 'run', '--json', *sys.argv[1:]]\n"
        "from seedline.cli.launch import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (DATABASE_ENV, OBJECTS_ENV)}
    # pinned already, as the command pins it: a restart would leave this probe behind
    seed = SeedPlan(load_spec(project / "seedline.yaml").seed).hash_seed()
    env.update({"PYTHONHASHSEED": str(seed), PINNED_FLAG: "1"})

    def run(*flags: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", probe, *flags],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stderr

    assert "SQLALCHEMY True" in run()  # the first run creates the database through Store
    assert "SQLALCHEMY False" in run("--no-cache")
    assert "SQLALCHEMY False" in run()
    rows = _rows(project)
    assert [r[2] for r in rows["runs"]] == ["succeeded"] * 3
    assert len(rows["metrics"]) == 3 * len(load_spec(project / "seedline.yaml").metrics) > 0
    hits = {key: h for key, *_, h, _in_model in rows["cache_entries"]}
    assert hits and all(h == 1 for h in hits.values())  # the third run hit every entry
    assert not (project / ".seedline" / "metadata.db-wal").exists()
    listed = subprocess.run(
        [sys.executable, "-m", "seedline", "runs", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.count('"status": "succeeded"') == 3
