"""Data snapshots, push/pull between stores, fsck and gc, on small in-process projects."""

from __future__ import annotations

import json
import os
import shutil
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import seedline
from seedline.core.errors import CorruptObjectError, DataError, SeedlineError, StoreError
from seedline.core.spec import load_spec
from seedline.execution.cache import prune
from seedline.records.registry import Registry
from seedline.records.tracking import Store
from seedline.records.transfer import Selection, transfer
from seedline.storage.objects import FsspecObjectStore
from seedline.workflow.fsck import fsck
from seedline.workflow.reclaim import gc
from seedline.workflow.registration import register_run

from .conftest import clean_env, git, run_cli
from .services import S3Server
from .test_workers_anywhere import add_local_features

SPEC = """\
name: tiny
seed: 11
data:
  source: data/table.csv
  target: label
split: {kind: holdout, test_size: 0.3, stratify: true}
pipeline:
  - name: scale
    class: sklearn.preprocessing.StandardScaler
  - name: clf
    class: sklearn.linear_model.LogisticRegression
metrics: [accuracy]
"""


def write_table(path: Path, seed: int = 0, rows: int = 80) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).round(6)
    label = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    lines = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{y}" for r, y in zip(x, label, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_tiny(root: Path) -> Path:
    """A committed project whose data file is git-ignored, as data usually is."""
    root.mkdir(parents=True)
    (root / "seedline.yaml").write_text(SPEC)
    (root / ".gitignore").write_text("data/\n")
    write_table(root / "data" / "table.csv")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tiny(tmp_path / "tiny")


def folder_store(path: Path) -> Store:
    """A store in a folder of its own, as a shared-drive remote is."""
    path.mkdir(parents=True, exist_ok=True)
    return Store(path)


def clone_without_data(src: Path, dest: Path) -> Path:
    """A second user's clone: the committed files only (no data, no store)."""
    git(dest.parent, "clone", "-q", str(src), dest.name)
    return dest


# -- data snapshots ------------------------------------------------------------------------------
def test_a_snapshot_keeps_the_data_file_as_an_object_named_by_its_fingerprint(tiny: Path) -> None:
    """run(snapshot=True): the source record names an object whose address is the file's fingerprint."""
    result = seedline.run(tiny / "seedline.yaml", snapshot=True)
    source = result.manifest.data.sources[0]
    assert source.snapshot == source.fingerprint.removeprefix("file:")
    store = Store.open(tiny)
    assert store.objects.get(source.snapshot) == (tiny / "data" / "table.csv").read_bytes()
    plain = seedline.run(tiny / "seedline.yaml", use_cache=False)
    assert plain.manifest.data.sources[0].snapshot is None  # opt-in


def test_the_spec_key_turns_snapshots_on_without_changing_the_spec_fingerprint(tiny: Path) -> None:
    """data.snapshot: true snapshots; it is storage policy, so the spec fingerprint stays the same."""
    before = load_spec(tiny / "seedline.yaml").fingerprint()
    (tiny / "seedline.yaml").write_text(
        SPEC.replace("  target: label\n", "  target: label\n  snapshot: true\n")
    )
    assert load_spec(tiny / "seedline.yaml").fingerprint() == before
    result = seedline.run(tiny / "seedline.yaml")
    assert result.manifest.data.sources[0].snapshot is not None
    assert result.manifest.spec["data"]["snapshot"] is True
    assert result.manifest.spec_fingerprint == before


def test_the_size_guard_refuses_a_large_snapshot_before_anything_is_stored(tiny: Path) -> None:
    """Above the limit: a DataError naming the file, its size, the limit and how to raise it; no run."""
    with pytest.raises(DataError) as err:
        seedline.run(tiny / "seedline.yaml", snapshot=True, snapshot_max_bytes=100)
    assert "data/table.csv" in err.value.message and "snapshot limit" in err.value.message
    assert "--snapshot-max-size" in (err.value.hint or "")
    assert Store.open(tiny).list_runs() == []


def test_reproduce_on_a_clone_without_the_data_uses_the_snapshot(
    tiny: Path, tmp_path: Path
) -> None:
    """The data file is missing: reproduce says it used the snapshot, is bitwise, and writes nothing into data/."""
    original = seedline.run(tiny / "seedline.yaml", snapshot=True)
    (tiny / "data" / "table.csv").unlink()
    report = seedline.reproduce(original.run_id, project_root=tiny)
    assert report.verdict == "bitwise", report.to_dict()
    assert any("data snapshot" in n and "missing" in n for n in report.notes)
    assert not (tiny / "data" / "table.csv").exists()


def test_register_without_the_data_file_uses_the_snapshot(tiny: Path) -> None:
    """Registering a run rebuilds its probe rows: from the snapshot when the file is gone, never writing it."""
    original = seedline.run(tiny / "seedline.yaml", snapshot=True)
    (tiny / "data" / "table.csv").unlink()
    store = Store.open(tiny)
    version = register_run(store, original.run_id, "tiny")
    assert version.version == 1 and version.run_id == original.run_id
    assert not (tiny / "data" / "table.csv").exists()
    # without a snapshot, a missing file is still an error that says what is missing
    write_table(tiny / "data" / "table.csv")
    plain = seedline.run(tiny / "seedline.yaml", use_cache=False)
    (tiny / "data" / "table.csv").unlink()
    with pytest.raises(SeedlineError, match=r"table\.csv"):
        register_run(store, plain.run_id, "plain")


def test_reproduce_leaves_a_changed_data_file_alone_and_uses_the_snapshot(tiny: Path) -> None:
    """The user's copy differs: the proof runs on the snapshot; the user's file keeps its bytes."""
    original = seedline.run(tiny / "seedline.yaml", snapshot=True)
    write_table(tiny / "data" / "table.csv", seed=5)
    edited = (tiny / "data" / "table.csv").read_bytes()
    report = seedline.reproduce(original.run_id, project_root=tiny)
    assert report.verdict == "bitwise"
    assert any("differs" in n for n in report.notes)
    assert (tiny / "data" / "table.csv").read_bytes() == edited


def test_without_a_snapshot_a_missing_file_still_fails_clearly(tiny: Path) -> None:
    """No snapshot kept: the data difference is the verdict, as before."""
    original = seedline.run(tiny / "seedline.yaml")
    (tiny / "data" / "table.csv").unlink()
    report = seedline.reproduce(original.run_id, project_root=tiny)
    assert report.verdict == "failed" and "missing" in report.likely_cause


def test_large_files_stream_through_the_object_store_in_bounded_memory(tmp_path: Path) -> None:
    """A 96 MiB file goes in and out with a peak far below its size (8 MiB chunks)."""
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for i in range(12):
            fh.write(bytes([i]) * (8 << 20))
    store = folder_store(tmp_path / "store")
    tracemalloc.start()
    address = store.objects.put_file(big)
    store.objects.get_file(address, tmp_path / "out.bin")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40 << 20, f"peak {peak / 2**20:.0f} MiB for a 96 MiB file"
    assert (tmp_path / "out.bin").stat().st_size == big.stat().st_size


# -- push / pull ------------------------------------------------------------------------------------
def test_push_copies_runs_and_models_with_their_objects_and_twice_copies_nothing(
    tiny: Path, tmp_path: Path
) -> None:
    """First push copies every object once; the second finds the runs there and copies nothing."""
    run = seedline.run(tiny / "seedline.yaml", snapshot=True)
    local = Store.open(tiny)
    register_run(local, run.run_id, "tiny")
    remote = folder_store(tmp_path / "team")
    first = transfer(local, remote, Selection(everything=True))
    assert first.runs == [run.run_id] and first.models == ["tiny@1"]
    assert first.objects_copied >= 5 and first.bytes_copied > 0
    second = transfer(local, remote, Selection(everything=True))
    assert second.objects_copied == 0 and second.runs == [] and second.already_there == 1
    assert fsck(remote).ok
    snap = run.manifest.data.sources[0].snapshot
    assert snap is not None and remote.objects.exists(snap)
    assert Registry(remote).resolve("tiny@1").run_id == run.run_id


def test_a_push_carries_the_stored_sources_of_project_local_modules(tmp_path: Path) -> None:
    """The sources a run stored for its local modules travel with it; gc keeps them and fsck checks them."""
    root = make_tiny(tmp_path / "tiny")
    add_local_features(root)
    run = seedline.run(root / "seedline.yaml")
    sources = {n: m.object for n, m in run.manifest.code.local_modules.items()}
    assert set(sources) == {"features", "featlib"} and all(sources.values())
    remote = folder_store(tmp_path / "team")
    transfer(Store.open(root), remote, Selection(everything=True))
    assert all(remote.objects.exists(str(a)) for a in sources.values())
    assert gc(remote, min_age_s=0).orphans == []
    remote.objects.remove(str(sources["features"]))
    report = fsck(remote)
    assert [p.kind for p in report.problems] == ["missing"]
    assert "source of features" in report.problems[0].needed_by[0]


def test_a_clone_without_data_pulls_and_reproduces_bitwise(tiny: Path, tmp_path: Path) -> None:
    """User B: a fresh clone (no data, no store) pulls from the shared store and reproduces bitwise."""
    run = seedline.run(tiny / "seedline.yaml", snapshot=True)
    transfer(Store.open(tiny), folder_store(tmp_path / "team"), Selection(runs=[run.run_id]))
    b = clone_without_data(tiny, tmp_path / "b")
    assert not (b / "data").exists()
    pulled = transfer(folder_store(tmp_path / "team"), Store.open(b), Selection(everything=True))
    assert pulled.runs == [run.run_id]
    report = seedline.reproduce(run.run_id, project_root=b)
    assert report.verdict == "bitwise", report.to_dict()
    assert not (b / "data").exists()


def test_an_interrupted_push_leaves_no_run_visible_and_resumes(tiny: Path, tmp_path: Path) -> None:
    """Stopped after its first object: the remote shows no run; the next push copies only the rest."""
    run = seedline.run(tiny / "seedline.yaml", snapshot=True)
    local, remote = Store.open(tiny), folder_store(tmp_path / "team")

    class Stop(Exception):
        pass

    def stop_after_first(done: int, total: int, _what: str) -> None:
        if len(list(remote.objects)) >= 1:
            raise Stop

    with pytest.raises(Stop):
        transfer(local, remote, Selection(everything=True), progress=stop_after_first)
    assert remote.list_runs() == []
    copied_before = len(list(remote.objects))
    resumed = transfer(local, remote, Selection(everything=True))
    assert resumed.runs == [run.run_id]
    assert resumed.objects_present >= copied_before >= 1
    assert fsck(remote).ok


def test_a_version_number_taken_on_the_remote_is_a_conflict_not_an_overwrite(
    tmp_path: Path,
) -> None:
    """Two users register 'tiny@1' from different runs: the second push reports it and changes nothing."""
    a, b = make_tiny(tmp_path / "a"), make_tiny(tmp_path / "b")
    write_table(b / "data" / "table.csv", seed=3)
    ra = seedline.run(a / "seedline.yaml")
    rb = seedline.run(b / "seedline.yaml")
    register_run(Store.open(a), ra.run_id, "tiny")
    register_run(Store.open(b), rb.run_id, "tiny")
    remote = folder_store(tmp_path / "team")
    transfer(Store.open(a), remote, Selection(everything=True))
    second = transfer(Store.open(b), remote, Selection(everything=True))
    assert [c["model"] for c in second.conflicts] == ["tiny@1"]
    assert Registry(remote).resolve("tiny@1").run_id == ra.run_id
    assert rb.run_id in second.runs  # the run itself is not in conflict


def test_a_corrupt_source_object_is_never_published(tiny: Path, tmp_path: Path) -> None:
    """A model object flipped on disk: the push fails, and the remote has neither the object nor the run."""
    run = seedline.run(tiny / "seedline.yaml")
    local, remote = Store.open(tiny), folder_store(tmp_path / "team")
    path = local.objects._path(run.manifest.artifacts["model"])
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptObjectError):
        transfer(local, remote, Selection(everything=True))
    assert remote.list_runs() == []
    assert not remote.objects.exists(run.manifest.artifacts["model"])
    assert not list(remote.objects.partials())


# -- fsck -----------------------------------------------------------------------------------------
def _flip(store: Store, address: str) -> None:
    path = store.objects._path(address)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_fsck_finds_corrupt_and_missing_objects_and_repair_quarantines(tiny: Path) -> None:
    """A flipped byte is 'corrupt' (named with who needs it), a deleted object 'missing'; repair moves, never deletes."""
    run = seedline.run(tiny / "seedline.yaml", snapshot=True)
    store = Store.open(tiny)
    assert fsck(store).ok
    model = run.manifest.artifacts["model"]
    snap = run.manifest.data.sources[0].snapshot
    assert snap is not None
    _flip(store, model)
    flipped = store.objects._path(model).read_bytes()
    store.objects.remove(snap)
    report = fsck(store)
    kinds = {(p.kind, p.object) for p in report.problems}
    assert ("corrupt", model) in kinds and ("missing", snap) in kinds
    corrupt = next(p for p in report.problems if p.kind == "corrupt")
    assert any(run.run_id in who for who in corrupt.needed_by)
    repaired = fsck(store, repair=True)
    assert repaired.quarantined[0]["object"] == model
    assert Path(repaired.quarantined[0]["moved_to"]).read_bytes() == flipped
    assert not store.objects.exists(model)


def test_check_objects_restores_what_fsck_repair_quarantined(tiny: Path, tmp_path: Path) -> None:
    """After a corrupt object is quarantined, a pull with check_objects brings a sound copy back."""
    run = seedline.run(tiny / "seedline.yaml")
    local, remote = Store.open(tiny), folder_store(tmp_path / "team")
    transfer(local, remote, Selection(everything=True))
    model = run.manifest.artifacts["model"]
    _flip(local, model)
    fsck(local, repair=True)
    assert transfer(remote, local, Selection(everything=True)).objects_copied == 0  # fast path
    restored = transfer(remote, local, Selection(everything=True), check_objects=True)
    assert restored.objects_copied == 1 and restored.runs == []
    assert fsck(local).ok


def _on_s3(tiny: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the project's [store] objects at a fresh S3 prefix (records stay in SQLite); its URL."""
    prefix = s3.fresh_prefix()
    (tiny / "seedline.toml").write_text(
        f'[store]\nobjects = "{prefix}"\n[store.objects_options]\nendpoint_url = "{s3.endpoint}"\n'
    )
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return prefix


def test_fsck_on_s3_streams_every_object_and_repair_moves_never_deletes(
    tiny: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an S3 object store: a 40 MiB object verified in bounded memory; corrupt and missing found; --repair moves aside."""
    prefix = _on_s3(tiny, s3, monkeypatch)
    run = seedline.run(tiny / "seedline.yaml", snapshot=True)
    store = Store.open(tiny)
    objects = store.objects
    assert isinstance(objects, FsspecObjectStore)
    big = tiny / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 40)
    big_address = objects.put_file(big)
    tracemalloc.start()
    report = fsck(store)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.ok, report.to_dict()
    assert report.objects == len(list(objects)) and report.bytes > 40 << 20
    assert peak < 32 << 20, f"fsck peaked at {peak / 2**20:.0f} MiB for a 40 MiB object"
    objects.remove(big_address)  # the rest of the test needs no big object

    model = run.manifest.artifacts["model"]
    snap = run.manifest.data.sources[0].snapshot
    assert snap is not None
    tampered = objects.get(model)[:-1] + b"!"
    objects.fs.pipe_file(objects._key(model), tampered)
    objects.remove(snap)
    found = fsck(store)
    kinds = {(p.kind, p.object) for p in found.problems}
    assert kinds == {("corrupt", model), ("missing", snap)}
    assert any(run.run_id in who for p in found.problems for who in p.needed_by)

    keys = set(objects.fs.find(objects.prefix))
    proc = run_cli(tiny, "fsck", "--repair", "--json", env=clean_env(), check=False)
    assert proc.returncode == 1, proc.stderr  # problems were found (and the corrupt one moved)
    repaired = json.loads(proc.stdout)
    moved_to = f"{prefix}/quarantine/{model}"
    assert repaired["quarantined"] == [{"object": model, "moved_to": moved_to}]
    assert objects.fs.cat_file(moved_to) == tampered  # the bytes are kept
    quarantine_key = moved_to.removeprefix("s3://")
    assert set(objects.fs.find(objects.prefix)) == keys - {objects._key(model)} | {quarantine_key}
    assert not objects.exists(model) and list(objects.quarantined()) == [model]
    after = fsck(store)
    assert {(p.kind, p.object) for p in after.problems} == {("missing", model), ("missing", snap)}


# -- gc -------------------------------------------------------------------------------------------
def test_gc_reclaims_leftovers_and_orphans_but_nothing_referenced_or_foreign(tiny: Path) -> None:
    """Partial objects, staged predict/export outputs and orphans go; runs still reproduce; user files stay."""
    run = seedline.run(tiny / "seedline.yaml", snapshot=True)
    store = Store.open(tiny)
    partial = store.objects.root / "ab" / ".tmp-killed.part"
    partial.parent.mkdir(exist_ok=True)
    partial.write_bytes(b"half an object")
    staged_file = tiny / ".predictions.csv.k2j4h5g6.part"
    staged_file.write_text("half")
    staged_dir = tiny / "exports" / ".bundle.a1b2c3d4.part"
    staged_dir.mkdir(parents=True)
    (staged_dir / "model.skops").write_bytes(b"x")
    orphan = store.objects.put(b"written by a run that was killed before its records")
    users = [tiny / "notes.part", tiny / ".hidden.part", tiny / "data" / ".table.csv.swp"]
    for u in users:
        u.write_text("mine")

    young = gc(store)  # default minimum age: everything here is too young to touch
    assert young.orphans == [] and young.partial_outputs == [] and young.kept_young >= 4

    plan = gc(store, dry_run=True, min_age_s=0)
    assert orphan in plan.orphans and store.objects.exists(orphan)
    done = gc(store, min_age_s=0)
    assert done.orphans == [orphan] and not store.objects.exists(orphan)
    assert done.partial_objects == ["ab/.tmp-killed.part"] and not partial.exists()
    assert sorted(done.partial_outputs) == sorted([str(staged_dir), str(staged_file)])
    assert not staged_file.exists() and not staged_dir.exists()
    assert all(u.read_text() == "mine" for u in users)
    assert fsck(store).ok
    assert seedline.reproduce(run.run_id, project_root=tiny).verdict == "bitwise"


def test_gc_keeps_every_object_while_a_manifest_cannot_be_read(tiny: Path) -> None:
    """What an unreadable manifest names is unknown: orphans are kept and the manifest reported."""
    run = seedline.run(tiny / "seedline.yaml")
    store = Store.open(tiny)
    orphan = store.objects.put(b"maybe needed by the unreadable run")
    manifest_object = next(r for r in _run_rows(store) if r[0] == run.run_id)[1]
    _flip(store, manifest_object)
    report = gc(store, min_age_s=0)
    assert report.orphans == [] and store.objects.exists(orphan)
    assert report.unreadable_manifests[0]["run"] == run.run_id


def _run_rows(store: Store) -> list[tuple[str, str | None]]:
    return [(r.run_id, r.manifest_object) for r in store.run_objects()]


def test_cache_prune_skips_a_corrupt_manifest_and_reports_it(tiny: Path) -> None:
    """One corrupt manifest used to stop 'cache prune' entirely; now it is skipped and named."""
    first = seedline.run(tiny / "seedline.yaml")
    seedline.run(tiny / "seedline.yaml", overrides=["seed=12"])
    store = Store.open(tiny)
    manifest_object = next(r for r in _run_rows(store) if r[0] == first.run_id)[1]
    _flip(store, manifest_object)
    done = prune(store, everything=True)
    assert done["entries"] >= 2
    assert [u["run"] for u in done["unreadable_manifests"]] == [first.run_id]
    # the run's own model object is still kept: its row names it
    assert store.objects.exists(first.manifest.artifacts["model"])


def test_an_unknown_remote_name_is_a_clear_error(tiny: Path) -> None:
    from seedline.records.transfer import open_remote

    with pytest.raises(SeedlineError) as err:
        open_remote("team", tiny)
    assert "team" in err.value.message
    # the command line prints the hint's TOML table as text, not as rich markup
    Store.open(tiny).close()
    proc = run_cli(tiny, "push", "team", check=False)
    assert proc.returncode == 2 and "declare one as [remotes.team] with" in proc.stderr


def test_put_file_survives_a_missing_target_folder_and_leaves_no_partials(tmp_path: Path) -> None:
    """Streaming writes rename into place; nothing named .tmp-*.part remains."""
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(1000))
    store = folder_store(tmp_path / "s")
    a = store.objects.put_file(f)
    assert store.objects.get(a) == f.read_bytes()
    assert list(store.objects.partials()) == []
    shutil.rmtree(tmp_path / "s" / "objects")
    assert store.objects.put_file(f) == a
    time.sleep(0)


def test_gc_on_s3_aborts_only_its_own_incomplete_uploads(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed multipart upload to an object key under the store's prefix is listed, then aborted; no other upload is touched."""
    prefix = s3.fresh_prefix()
    store = Store(
        tmp_path / ".seedline",
        f"sqlite:///{tmp_path / 'metadata.db'}",
        objects_url=prefix,
        objects_options=s3.options(),
    )
    objects = store.objects
    assert isinstance(objects, FsspecObjectStore)
    bucket, key_prefix = prefix.removeprefix("s3://").split("/", 1)
    address = "ab" + "c" * 62

    def start_upload(key: str) -> str:
        # what a writer killed mid-upload leaves: an upload begun, one part sent, never completed
        upload = objects.fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
        objects.fs.call_s3(
            "upload_part", Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1000
        )
        return str(upload)

    ours = start_upload(f"{key_prefix}/ab/{address[2:]}")
    foreign = {
        f"{key_prefix}/notes/readme.txt": "",  # under the prefix, not an object key
        f"{key_prefix}x/ab/{address[2:]}": "",  # a sibling prefix sharing the string
        f"elsewhere/ab/{address[2:]}": "",  # another prefix of the bucket
    }
    for key in foreign:
        foreign[key] = start_upload(key)

    def uploads() -> set[tuple[str, str]]:
        page = objects.fs.call_s3("list_multipart_uploads", Bucket=bucket)
        return {(u["Key"], u["UploadId"]) for u in page.get("Uploads") or []}

    try:
        young = gc(store)
        assert young.partial_objects == [] and young.kept_young == 1
        name = f"ab/{address[2:]}?uploadId={ours}"
        plan = gc(store, dry_run=True, min_age_s=0)
        assert plan.partial_objects == [name] and plan.bytes == 1000
        assert (f"{key_prefix}/ab/{address[2:]}", ours) in uploads()
        done = gc(store, min_age_s=0)
        assert done.partial_objects == [name]
        left = uploads()
        assert (f"{key_prefix}/ab/{address[2:]}", ours) not in left
        assert set(foreign.items()) <= left
        with pytest.raises(StoreError, match="not an incomplete upload"):
            objects.remove_partial(
                f"../elsewhere/ab/{address[2:]}?uploadId={foreign[f'elsewhere/ab/{address[2:]}']}"
            )
    finally:
        for key, upload in foreign.items():
            objects.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload)
        store.close()


# -- S3: large objects in parts, several at once ---------------------------------------------------
def _s3_objects(s3: S3Server) -> FsspecObjectStore:
    objects = FsspecObjectStore(s3.fresh_prefix(), s3.options())
    # small parts (S3's minimum is 5 MiB), so that a 12 MiB object is a 3-part upload
    objects.part_size, objects.concurrency = 5 << 20, 2
    return objects


def _uploads(objects: FsspecObjectStore) -> list[str]:
    bucket, _, key_prefix = objects.prefix.partition("/")
    page = objects.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key_prefix)
    return [u["Key"] for u in page.get("Uploads") or []]


def test_s3_copies_large_objects_in_parts_and_reads_them_back_in_order(
    tmp_path: Path, s3: S3Server
) -> None:
    """A 3-part upload (parts sent concurrently) and ranged GETs read ahead give back the same bytes, verified."""
    data = os.urandom((12 << 20) + 12345)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    objects = _s3_objects(s3)
    address = objects.put_file(f)
    assert objects.size(address) == len(data) and _uploads(objects) == []
    assert b"".join(objects.iter_chunks(address, 1 << 20)) == data
    # a copy from another store (what push does) goes through the same upload
    local = folder_store(tmp_path / "local").objects
    local.put_verified(objects.iter_chunks(address, 4 << 20), address)
    assert local.get(address) == data
    other = _s3_objects(s3)
    other.put_verified(local.iter_chunks(address), address)
    assert other.get(address) == data and _uploads(other) == []


def test_s3_multipart_upload_of_wrong_bytes_publishes_nothing_and_leaves_no_upload(
    s3: S3Server,
) -> None:
    """Bytes that do not hash to the address, or a source that fails after its last chunk: the upload is aborted."""
    objects = _s3_objects(s3)
    parts = [os.urandom(4 << 20) for _ in range(3)]
    wrong = "ab" + "c" * 62
    with pytest.raises(CorruptObjectError):
        objects.put_verified(iter(parts), wrong)
    assert not objects.exists(wrong) and list(objects) == [] and _uploads(objects) == []

    def failing() -> Iterator[bytes]:
        yield from parts
        raise CorruptObjectError(wrong, "0" * 64)  # what iter_chunks of a corrupt source does

    with pytest.raises(CorruptObjectError):
        objects.put_verified(failing(), wrong)
    assert list(objects) == [] and _uploads(objects) == []
    assert list(objects.partials()) == []


def test_s3_parts_at_once_keep_memory_bounded(tmp_path: Path, s3: S3Server) -> None:
    """A 96 MiB object up in 5 MiB parts, 2 at once, and down in 1 MiB ranges: the peak is a few parts, not the object."""
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for i in range(12):
            fh.write(bytes([i]) * (8 << 20))
    local = folder_store(tmp_path / "store").objects
    address = local.put_file(big)
    objects = _s3_objects(s3)
    tracemalloc.start()
    objects.put_verified(local.iter_chunks(address, 1 << 20), address)
    _, up = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    with (tmp_path / "out.bin").open("wb") as out:
        for chunk in objects.iter_chunks(address, 1 << 20):
            out.write(chunk)
    _, down = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # each part being sent is held about three times (the part, botocore's copy, the socket's buffer)
    assert up < 64 << 20 and down < 32 << 20, f"peaks {up >> 20} MiB up, {down >> 20} MiB down"
    assert (tmp_path / "out.bin").read_bytes() == big.read_bytes()
