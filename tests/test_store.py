"""The store: atomic, verified objects; the metadata database and its Alembic migrations; run ids."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
from sqlalchemy import inspect, text

from seedline.core.errors import CorruptObjectError, RunNotFoundError, StoreError
from seedline.records.manifest import Manifest
from seedline.records.tracking import Store, new_run_id
from seedline.storage.metadata import HEAD_REVISION, current_revision
from seedline.storage.objects import LocalObjectStore as ObjectStore

from .conftest import run_cli

REPO = Path(__file__).resolve().parent.parent


def test_objects_are_addressed_by_blake3_and_read_back(tmp_path: Path) -> None:
    """put returns the BLAKE3 of the bytes; get returns the same bytes; putting twice is harmless."""
    store = ObjectStore(tmp_path / "objects")
    address = store.put(b"hello")
    assert address == blake3.blake3(b"hello").hexdigest()
    assert store.put(b"hello") == address
    assert store.get(address) == b"hello"
    assert list(store) == [address]
    assert store.exists(address) and store.size(address) == 5


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    """Objects are written to a temp name then renamed: no partial files remain."""
    store = ObjectStore(tmp_path / "objects")
    for i in range(20):
        store.put(os.urandom(1000 + i))
    leftovers = [
        p for p in (tmp_path / "objects").rglob("*") if p.is_file() and p.name.startswith(".tmp-")
    ]
    assert leftovers == []
    assert len(list(store)) == 20


def test_a_corrupt_object_is_detected_on_read(tmp_path: Path) -> None:
    """Bytes that no longer match their address are refused with both hashes named."""
    store = ObjectStore(tmp_path / "objects")
    address = store.put(b"original bytes")
    path = tmp_path / "objects" / address[:2] / address[2:]
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered bytes")
    with pytest.raises(CorruptObjectError) as err:
        store.get(address)
    assert err.value.address == address
    assert err.value.found == blake3.blake3(b"tampered bytes").hexdigest()


def test_missing_objects_and_bad_addresses_are_clear_errors(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    with pytest.raises(StoreError, match="is missing"):
        store.get("0" * 64)
    with pytest.raises(StoreError, match="not an object address"):
        store.get("../../etc/passwd")


def test_database_is_created_by_alembic_at_head(tmp_path: Path) -> None:
    """A new store's schema comes from the Alembic migrations, at the head revision."""
    store = Store.open(tmp_path)
    assert current_revision(store.engine) == HEAD_REVISION
    with store.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert {"runs", "metrics", "alembic_version"} <= tables
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    store.close()
    # reopening an up-to-date store runs no migration and keeps the data
    again = Store.open(tmp_path, create=False)
    assert current_revision(again.engine) == HEAD_REVISION
    again.close()


def test_store_ignores_itself_in_git(tmp_path: Path) -> None:
    """The .seedline folder carries a .gitignore so runs never dirty the user's repository."""
    Store.open(tmp_path).close()
    assert (tmp_path / ".seedline" / ".gitignore").read_text().strip().endswith("*")


def test_find_searches_parent_folders_and_explains_when_absent(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert Store.find(deep).root == tmp_path / ".seedline"
    with pytest.raises(StoreError, match="seedline init"):
        Store.find(tmp_path.parent / "elsewhere-nonexistent")


def test_run_ids_are_short_sortable_and_unique() -> None:
    """Ids made one after another in a process are unique and sort in creation order."""
    ids = [new_run_id() for _ in range(2000)]
    assert all(re.fullmatch(r"[0-9a-z]{13}", i) for i in ids)
    assert len(set(ids)) == 2000
    assert ids == sorted(ids)


def _manifest(run_id: str) -> Manifest:
    return Manifest(
        seedline_version="test",
        run_id=run_id,
        status="running",
        created_at="2026-01-01T00:00:00.000Z",
        spec={"name": "t"},
        spec_fingerprint="spec:x",
        project_root="/tmp",
    )


def test_prefixes_resolve_like_git(tmp_path: Path) -> None:
    """A unique prefix resolves; an ambiguous one lists the candidates; an unknown one says so."""
    store = Store.open(tmp_path)
    for rid in ("abc111111111", "abc222222222", "def333333333"):
        m = _manifest(rid)
        store.begin_run(m)
        m.status = "succeeded"
        m.metrics = {"accuracy": 0.5}
        store.finish_run(m, duration_s=1.0)
    assert store.resolve("d") == "def333333333"
    assert store.resolve("ABC1") == "abc111111111"
    with pytest.raises(RunNotFoundError) as err:
        store.resolve("abc")
    assert err.value.candidates == ["abc111111111", "abc222222222"]
    with pytest.raises(RunNotFoundError, match="no run matches 'zzz'"):
        store.resolve("zzz")
    with pytest.raises(RunNotFoundError):
        store.resolve("%")  # LIKE wildcards are escaped, not matched
    assert store.manifest("def").run_id == "def333333333"
    rows = store.list_runs()
    assert [r.run_id for r in rows] == ["def333333333", "abc222222222", "abc111111111"]
    assert rows[0].metrics == {"accuracy": 0.5}


def test_a_run_whose_process_is_gone_shows_as_interrupted_and_can_be_removed(
    tmp_path: Path,
) -> None:
    """A run begun by a process that died shows as interrupted (not running forever) and can be removed."""
    store = Store.open(tmp_path)
    store.begin_run(_manifest("kkk000000000"))  # this process: alive, so still running
    code = (
        "import os, sys; from seedline.records.tracking import Store; "
        "from tests.test_store import _manifest; "
        f"Store.open({str(tmp_path)!r}).begin_run(_manifest('zzz000000000')); os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False)
    by_id = {r.run_id: r for r in store.list_runs()}
    assert by_id["kkk000000000"].status == "running"
    assert by_id["zzz000000000"].status == "interrupted"
    assert "is gone" in str((by_id["zzz000000000"].error or {}).get("message"))
    with pytest.raises(StoreError, match="interrupted before it finished"):
        store.manifest("zzz")
    with pytest.raises(StoreError, match="still running"):
        store.manifest("kkk")
    cleaned = run_cli(tmp_path, "runs", "--remove-interrupted")
    assert "removed 1 interrupted run(s): zzz000000000" in cleaned.stderr
    assert [r.run_id for r in store.list_runs()] == ["kkk000000000"]
    assert store.remove_interrupted_runs() == []


def test_object_store_urls_and_leftover_partial_writes(tmp_path: Path) -> None:
    """file:// URLs and plain paths open the local store; a killed writer's .part file is listed and removable, never an object."""
    from seedline.storage.objects import open_object_store

    store = open_object_store(f"file://{tmp_path / 'objects'}")
    assert isinstance(store, ObjectStore)
    address = store.put(b"kept")
    leftover = tmp_path / "objects" / address[:2] / ".tmp-abc.part"
    leftover.write_bytes(b"half an obj")
    assert list(store) == [address]
    partials = list(store.partials())
    assert [p.name for p in partials] == [f"{address[:2]}/.tmp-abc.part"]
    assert partials[0].size == 11
    with pytest.raises(StoreError, match="not a partial object"):
        store.remove_partial(f"{address[:2]}/{address[2:]}")
    with pytest.raises(StoreError, match="not a partial object"):
        store.remove_partial("../../etc/.tmp-x.part")
    assert store.remove_partial(partials[0].name)
    assert list(store.partials()) == [] and store.get(address) == b"kept"


def test_migration_0009_keeps_each_older_cache_entry_a_file_of_its_own(tmp_path: Path) -> None:
    """Entries written before 0009 (each step a file of its own) keep every column, and read
    back as such: no step named, ``fitted_in`` 'file'."""
    from sqlalchemy import create_engine

    from seedline.records.reading import CACHE_COLUMNS, CacheEntry
    from seedline.storage.metadata import upgrade

    engine = create_engine(f"sqlite:///{tmp_path / 'metadata.db'}")
    upgrade(engine, "0008")
    old = {
        "key": "cachekey:" + "1" * 64,
        "step": "pipeline/clf",
        "cls": "sklearn.ensemble._forest.RandomForestClassifier",
        "fitted_object": "a" * 64,
        "output_object": None,
        "fitted_fingerprint": "estimator:" + "2" * 64,
        "output_fingerprint": None,
        "output_shape": None,
        "size_bytes": 123,
        "created_at": "2026-11-30T00:00:00.000Z",
        "last_used_at": "2026-11-30T00:00:00.000Z",
        "hits": 4,
    }
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO cache_entries ({', '.join(old)}) "
                f"VALUES ({', '.join(':' + c for c in old)})"
            ),
            old,
        )
    upgrade(engine)
    assert current_revision(engine) == HEAD_REVISION == "0009"
    with engine.connect() as conn:
        (row,) = conn.execute(text(f"SELECT {', '.join(CACHE_COLUMNS)} FROM cache_entries")).all()
    engine.dispose()
    entry = CacheEntry.from_row(tuple(row))
    assert {c: getattr(entry, c) for c in old} == old
    assert entry.fitted_step is None and entry.to_dict()["fitted_in"] == "file"


def test_a_store_migrated_by_a_newer_seedline_is_refused_clearly(tmp_path: Path) -> None:
    """A teammate's newer seedline migrated the store further than this one knows: opening it
    says so and what to do, rather than Alembic's traceback, and changes nothing."""
    import sqlite3

    Store.open(tmp_path).close()
    database = tmp_path / ".seedline" / "metadata.db"
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="revision '9999'") as err:
        Store.open(tmp_path)
    assert "upgrade seedline" in (err.value.hint or "")
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]
    refused = run_cli(tmp_path, "runs", check=False)
    assert refused.returncode != 0 and "revision '9999'" in refused.stderr
    assert "Traceback" not in refused.stderr
