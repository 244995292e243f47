"""One conformance suite that every store backend passes: SQLite + local, PostgreSQL + local, PostgreSQL + S3.

The servers are real (tests/services.py): PostgreSQL from Debian's package and SeaweedFS's
S3 API, both on loopback. Each test gets a fresh database and a fresh objects prefix.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from seedline.core.errors import CorruptObjectError, RunNotFoundError, StoreError
from seedline.records.cache_index import CacheEntry, CacheIndex
from seedline.records.manifest import Manifest
from seedline.records.registry import ModelNotFoundError, Registry
from seedline.records.sweeps import SweepIndex
from seedline.records.tracking import Store, new_run_id
from seedline.records.versions import find_version, has_model, record_parity
from seedline.storage.metadata import HEAD_REVISION, current_revision
from seedline.storage.objects import FsspecObjectStore, LocalObjectStore, ObjectStore

from .services import PostgresServer, S3Server

BACKENDS = ["sqlite+local", "postgresql+local", "postgresql+s3"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store on one backend combination."""
    database, objects = request.param.split("+")
    kwargs: dict[str, object] = {}
    if database == "postgresql":
        pg: PostgresServer = request.getfixturevalue("postgres")
        kwargs["database_url"] = pg.fresh_database()
    if objects == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        kwargs["objects_url"] = s3.fresh_prefix()
        kwargs["objects_options"] = s3.options()
    (tmp_path / ".seedline").mkdir()
    st = Store(tmp_path / ".seedline", **kwargs)  # type: ignore[arg-type]
    yield st
    st.close()


def _corrupt(objects: ObjectStore, address: str, data: bytes) -> None:
    """Change an object's bytes behind the store's back, as a disk error or a person would."""
    if isinstance(objects, LocalObjectStore):
        path = objects.root / address[:2] / address[2:]
        os.chmod(path, 0o644)
        path.write_bytes(data)
    else:
        assert isinstance(objects, FsspecObjectStore)
        objects.fs.pipe_file(objects._key(address), data)


def _manifest(run_id: str, status: str = "running") -> Manifest:
    return Manifest(
        seedline_version="test",
        run_id=run_id,
        status=status,
        created_at="2026-01-01T00:00:00.000Z",
        spec={"name": "conformance"},
        spec_fingerprint="spec:x",
        project_root="/tmp",
    )


def _finished(store: Store, run_id: str, metrics: dict[str, float]) -> str:
    m = _manifest(run_id)
    store.begin_run(m)
    m.status = "succeeded"
    m.metrics = metrics
    m.artifacts["model"] = store.objects.put(f"model of {run_id}".encode())
    m.fingerprints["model"] = f"model:{run_id}"
    return store.finish_run(m, duration_s=0.5)


# -- objects ---------------------------------------------------------------------------------------
def test_objects_round_trip_by_content_address(store: Store) -> None:
    """put gives the BLAKE3 address; get, exists, size and iteration agree; putting twice is harmless."""
    objects = store.objects
    a = objects.put(b"hello")
    assert a == blake3.blake3(b"hello").hexdigest()
    assert objects.put(b"hello") == a
    b = objects.put(b"")
    assert objects.get(a) == b"hello" and objects.get(b) == b""
    assert objects.exists(a) and not objects.exists("0" * 64)
    assert objects.size(a) == 5
    assert sorted(objects) == sorted([a, b])
    with pytest.raises(StoreError, match="is missing"):
        objects.get("0" * 64)
    with pytest.raises(StoreError, match="not an object address"):
        objects.get("../../etc/passwd")


def test_large_files_stream_in_and_out(store: Store, tmp_path: Path) -> None:
    """put_file and get_file stream a file bigger than one chunk; the copy is verified and identical."""
    src = tmp_path / "big.bin"
    payload = os.urandom(3 * 1024 * 1024) * 4  # 12 MiB: more than one 8 MiB chunk
    src.write_bytes(payload)
    address = store.objects.put_file(src)
    assert address == blake3.blake3(payload).hexdigest()
    assert store.objects.put_file(src) == address
    out = store.objects.get_file(address, tmp_path / "copy" / "big.bin")
    assert out.read_bytes() == payload
    assert store.objects.verify(address) == len(payload)
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]


def test_corruption_is_detected_and_can_be_quarantined(store: Store, tmp_path: Path) -> None:
    """Bytes that no longer match their address are refused on every read path; quarantine keeps them aside."""
    address = store.objects.put(b"original bytes")
    _corrupt(store.objects, address, b"tampered bytes")
    with pytest.raises(CorruptObjectError) as err:
        store.objects.get(address)
    assert err.value.found == blake3.blake3(b"tampered bytes").hexdigest()
    with pytest.raises(CorruptObjectError):
        store.objects.verify(address)
    with pytest.raises(CorruptObjectError):
        store.objects.get_file(address, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    store.objects.quarantine(address)
    assert not store.objects.exists(address)
    assert address not in list(store.objects)
    assert [q for q in store.objects.quarantined() if q.startswith(address)]


# -- runs ------------------------------------------------------------------------------------------
def test_schema_is_at_the_head_revision(store: Store) -> None:
    assert current_revision(store.engine) == HEAD_REVISION


def test_runs_begin_finish_list_resolve_and_read_back(store: Store) -> None:
    """Finished runs list newest first with metrics; prefixes resolve like git; manifests read back."""
    ids = ["abc111111111", "abc222222222", "def333333333"]
    for i, rid in enumerate(ids):
        _finished(store, rid, {"accuracy": 0.5 + i / 10})
    rows = store.list_runs()
    assert [r.run_id for r in rows] == list(reversed(ids))
    assert rows[0].metrics == {"accuracy": pytest.approx(0.7)}
    assert rows[0].status == "succeeded"
    assert store.resolve("d") == "def333333333"
    with pytest.raises(RunNotFoundError) as err:
        store.resolve("abc")
    assert err.value.candidates == ids[:2]
    with pytest.raises(RunNotFoundError):
        store.resolve("%")
    m = store.manifest("def")
    assert m.run_id == "def333333333" and m.metrics == {"accuracy": pytest.approx(0.7)}
    assert store.model_bytes("abc1") == b"model of abc111111111"
    assert store.model_object_for("model:abc222222222") == m_artifact(store, "abc222222222")
    assert store.list_runs(limit=1)[0].run_id == "def333333333"
    refs = store.referenced_objects()
    assert all(m_artifact(store, rid) in refs for rid in ids)


def m_artifact(store: Store, run_id: str) -> str:
    return str(store.manifest(run_id).artifacts["model"])


def test_a_running_run_has_no_manifest_yet(store: Store) -> None:
    store.begin_run(_manifest("kkk000000000"))
    assert store.run_summary("kkk").status == "running"
    with pytest.raises(StoreError, match="no manifest"):
        store.manifest("kkk")


def test_tags_set_filter_and_delete(store: Store) -> None:
    """Tags given at begin_run and set afterwards filter list_runs and the runs query; delete removes one."""
    from seedline.records.browsing import RunQuery, query_runs
    from seedline.records.tags import delete_tags, set_tags, tags_of

    store.begin_run(_manifest("ttt000000001"), tags={"team": "vision"})
    _finished(store, "ttt000000002", {"accuracy": 0.9})
    set_tags(store, "ttt000000002", {"team": "nlp", "stage": "review"})
    assert [r.run_id for r in store.list_runs(tags={"team": "nlp"})] == ["ttt000000002"]
    assert [r.run_id for r in store.list_runs(tags={"team": None})] == [
        "ttt000000002",
        "ttt000000001",
    ]
    rows, total = query_runs(store, RunQuery(tags={"stage": "review"}, sort="metric:accuracy"))
    assert total == 1 and rows[0].tags == {"stage": "review", "team": "nlp"}
    assert delete_tags(store, "ttt000000002", ["stage"]) == {"team": "nlp"}
    assert tags_of(store, ["ttt000000001"]) == {"ttt000000001": {"team": "vision"}}


# -- cache index, sweeps, registry -------------------------------------------------------------
def test_cache_index(store: Store) -> None:
    """Entries are added once, read back, touched, measured and removed; objects of others are kept."""
    index = CacheIndex(store)
    fitted = store.objects.put(b"fitted")
    entry = CacheEntry(
        key="cachekey:1",
        step="scale",
        cls="sklearn.preprocessing.StandardScaler",
        fitted_object=fitted,
        output_object=None,
        fitted_fingerprint="fitted:1",
        output_fingerprint=None,
        output_shape=None,
        size_bytes=6,
        created_at="2026-01-01T00:00:00.000Z",
        last_used_at="2026-01-01T00:00:00.000Z",
    )
    assert index.add(entry)
    assert not index.add(entry)  # a concurrent writer of the same key loses quietly
    other = CacheEntry(**{**entry.__dict__, "key": "cachekey:2", "size_bytes": 4})
    assert index.add(other)
    index.touch("cachekey:1")
    got = index.get("cachekey:1")
    assert got is not None and got.hits == 1 and got.fitted_object == fitted
    assert index.get("nope") is None
    assert index.usage() == (2, 10)
    assert next(e.key for e in index.entries()) == "cachekey:1"  # most recently used first
    assert index.objects_except(["cachekey:1"]) == {fitted}
    assert [e.key for e in index.remove(["cachekey:1"])] == ["cachekey:1"]
    assert index.usage() == (1, 4)


def test_sweeps(store: Store) -> None:
    index = SweepIndex(store)
    sid = new_run_id()
    index.begin(
        sid,
        spec_name="s",
        search="grid",
        metric="accuracy",
        params={"a": [1, 2]},
        settings={"executor": "serial"},
    )
    assert index.find(sid[:6])[0].status == "running"
    index.finish(sid, trials=2, best_run="abc")
    rec = index.find(sid)[0]
    assert (rec.status, rec.trials, rec.best_run, rec.params) == ("done", 2, "abc", {"a": [1, 2]})
    assert [r.sweep_id for r in index.all()] == [sid]
    assert index.find("zzzz") == []


def test_registry(store: Store) -> None:
    """Versions count up per name, aliases move, references resolve, parity checks are logged."""
    _finished(store, "run000000001", {"accuracy": 0.9})
    reg = Registry(store)
    man = store.list_runs()[0]
    kwargs = dict(
        run_id=man.run_id,
        model_object=store.objects.put(b"m"),
        manifest_object=store.objects.put(b"man"),
        probe_object=None,
        probe_input_object=None,
        input_schema={"x": "float64"},
        model_fingerprint="model:1",
        predictions_fingerprint=None,
    )
    v1 = reg.create_version(name="churn", **kwargs)  # type: ignore[arg-type]
    v2 = reg.create_version(name="churn", **kwargs)  # type: ignore[arg-type]
    assert (v1.version, v2.version) == (1, 2)
    assert reg.set_alias("churn", "production", 1) is None
    assert reg.set_alias("churn", "production", 2) == 1
    assert reg.resolve("churn@production").version == 2
    assert reg.resolve("churn").version == 2
    assert reg.resolve("churn@1").aliases == []
    assert reg.list_models()[0]["aliases"] == {"production": 2}
    with pytest.raises(ModelNotFoundError, match="Did you mean 'churn'"):
        reg.resolve("chrn")
    # what serve and predict read and write as SQL text (records.versions), here on this store
    with store._reader() as rows:
        for ref in ("churn", "churn@1", "churn@production", "churn@latest"):
            assert find_version(rows, ref) == reg.resolve(ref)
        assert find_version(rows, "churn@3") is None and not has_model(rows, "chrn")
    for overridden in (False, True):
        record_parity(
            store,
            action="serve",
            model="churn@2",
            run_id=man.run_id,
            verdict="bitwise" if not overridden else "failed",
            overridden=overridden,
            detail={"n": 1},
        )
    logged = reg.parity_history()
    assert [(e["verdict"], e["overridden"], e["detail"]) for e in logged[:2]] == [
        ("failed", True, {"n": 1}),
        ("bitwise", False, {"n": 1}),
    ]
    assert reg.remove_alias("churn", "production") == 2
    assert kwargs["model_object"] in store.referenced_objects()


# -- concurrency -----------------------------------------------------------------------------------
def test_concurrent_writers_lose_nothing(store: Store) -> None:
    """Eight writers, each with its own connection, record runs and objects at once; all are kept."""
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            own = Store(
                store.root,
                database_url=store.database_url,
                objects_url=store.objects_url,
                objects_options=store.objects_options,
            )
            for j in range(5):
                _finished(own, f"w{i}x{j:02d}0000000"[:12], {"accuracy": float(j)})
            own.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store.list_runs()
    assert len(rows) == 40 and {r.status for r in rows} == {"succeeded"}
    for r in rows:
        assert store.manifest(r.run_id).run_id == r.run_id


def _outputs() -> dict[str, object]:
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    return {
        "c order": rng.normal(size=(300, 7)),
        "fortran order": np.asfortranarray(rng.normal(size=(40, 9)).astype(np.float32)),
        "big-endian ints": np.arange(12, dtype=">i8").reshape(3, 4),
        "booleans, 3-d": rng.random((4, 3, 2)) > 0.5,
        "empty": np.empty((0, 5)),
        "a scalar": np.array(2.5),
        "large": rng.normal(size=(70_000, 4)),  # past one megabyte: hashed on every core
        "sparse": sp.random(50, 20, density=0.1, format="csr", random_state=0),
    }


def test_a_cached_output_reads_back_equal_writable_and_checked(store: Store) -> None:
    """A step's output comes back from every backend as stored, in a fresh writable array
    (a later step may change its input in place); a changed object is refused."""
    import numpy as np

    from seedline.execution.cache import _dump_output, _read_output

    for name, value in _outputs().items():
        data = _dump_output(value)
        assert data is not None, name
        address = store.objects.put(data)
        got = _read_output(store.objects, address)
        if hasattr(value, "toarray"):
            assert (got != value).nnz == 0, name
            continue
        assert isinstance(got, np.ndarray) and isinstance(value, np.ndarray)
        assert got.dtype == value.dtype and got.shape == value.shape, name
        assert np.array_equal(got, value), name
        assert got.flags.writeable and got.flags.aligned, name
        assert got.flags.f_contiguous == value.flags.f_contiguous, name
    data = _dump_output(_outputs()["large"])
    assert data is not None
    address = store.objects.put(data)
    _corrupt(store.objects, address, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CorruptObjectError):
        _read_output(store.objects, address)
