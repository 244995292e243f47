"""Benchmarks of issue 9 (runs that travel): push and pull of a data snapshot, and fsck throughput.

1. ``seedline push`` of a run whose data snapshot is one large file, to a SeaweedFS S3
   server on loopback (records in a SQLite file), against ``dvc push`` of the same file to
   the same server; then ``seedline pull`` into an empty store against ``dvc pull`` into an
   empty cache. Target: at least as fast as DVC.
2. A second push of unchanged data. Target: under 0.1 s.
3. ``fsck`` throughput: GB of objects re-hashed per second, on the local store and on the
   S3 remote (the large snapshot); and objects per second for many small objects on S3,
   one at a time against fsck's default of several at once.

Both tools are timed in this process's trials, interleaved (seedline, dvc, seedline, ...),
each trial against a fresh prefix of the bucket. The file is 256 MiB by default (a
shared 2-core machine); ``--size-mb 1024`` gives the 1 GiB of the issue.

DVC is found as ``$DVC`` or on ``PATH`` (install it into a separate virtual environment:
``python -m venv /tmp/dvcvenv && /tmp/dvcvenv/bin/pip install 'dvc[s3]>=3,<4'``, then
``DVC=/tmp/dvcvenv/bin/dvc``); without it the DVC columns say so and the rest runs.

Usage: python benchmarks/remotes.py [--size-mb N] [--trials N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/services.py starts the S3 server

from tests.services import S3Server, s3_server  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_file(path: Path, size: int) -> None:
    """Incompressible bytes, written a chunk at a time."""
    chunk = 8 << 20
    with path.open("wb") as fh:
        left = size
        while left > 0:
            fh.write(os.urandom(min(chunk, left)))
            left -= chunk


def make_run(store: object, data: Path) -> str:
    """A finished run whose manifest names ``data`` as its snapshot (what 'run --snapshot' records)."""
    from seedline.records.manifest import DataRecord, Manifest, SourceRecord
    from seedline.records.tracking import Store, new_run_id
    from seedline.storage.metadata import now_iso

    assert isinstance(store, Store)
    address = store.objects.put_file(data)
    m = Manifest(
        seedline_version="bench",
        run_id=new_run_id(),
        status="running",
        created_at=now_iso(),
        spec={"name": "bench"},
        spec_fingerprint="spec:bench",
        project_root=str(data.parent),
        data=DataRecord(
            sources=[
                SourceRecord(
                    uri=data.name,
                    kind="csv",
                    fingerprint=f"file:{address}",
                    bytes=data.stat().st_size,
                    rows=0,
                    table={},
                    snapshot=address,
                )
            ],
            table={},
            target="y",
            features=[],
            split={},
        ),
    )
    store.begin_run(m)
    m.status = "succeeded"
    m.artifacts["model"] = store.objects.put(b"a model")
    store.finish_run(m, duration_s=0.0)
    return m.run_id


def remote_store(tmp: Path, s3: S3Server) -> object:
    from seedline.records.tracking import Store

    folder = Path(tempfile.mkdtemp(dir=tmp, prefix="remote-"))
    return Store(
        folder,
        f"sqlite:///{folder / 'metadata.db'}",
        objects_url=s3.fresh_prefix(),
        objects_options={"endpoint_url": s3.endpoint},
    )


def remote_toml(remote: object, s3: S3Server) -> str:
    from seedline.records.tracking import Store

    assert isinstance(remote, Store)
    return (
        "[remotes.bench]\n"
        f'database = "{remote.database_url}"\n'
        f'objects = "{remote.objects_url}"\n'
        "[remotes.bench.objects_options]\n"
        f'endpoint_url = "{s3.endpoint}"\n'
    )


def seedline_cli(cwd: Path, env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "seedline", *args, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"seedline {' '.join(args)} failed: {proc.stderr.strip()[-800:]}")


def dvc_binary() -> str | None:
    given = os.environ.get("DVC")
    if given and Path(given).exists():
        return given
    return shutil.which("dvc")


def dvc(binary: str, cwd: Path, env: dict[str, str], *args: str) -> None:
    proc = subprocess.run([binary, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed: {proc.stderr.strip()[-800:]}")


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--size-mb", type=int, default=256, help="size of the data file in MiB (default 256)"
    )
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument(
        "--small-objects", type=int, default=500, help="small objects for the S3 fsck rate"
    )
    args = ap.parse_args()
    size = args.size_mb << 20

    from seedline.records.tracking import Store
    from seedline.records.transfer import Selection, transfer
    from seedline.workflow.fsck import REMOTE_WORKERS, fsck

    binary = dvc_binary()
    print(f"load average before: {load()}  (nproc {os.cpu_count()})")
    tmp = Path(tempfile.mkdtemp(prefix="seedline-bench-remotes-"))
    try:
        with s3_server() as s3:
            env = {**os.environ, **s3.env()}
            os.environ.update(s3.env())
            data = tmp / "big.bin"
            write_file(data, size)
            project = tmp / "project"
            (project / ".seedline").mkdir(parents=True)
            local = Store(project / ".seedline")
            run_id = make_run(local, data)

            times: dict[str, list[float]] = {
                k: []
                for k in (
                    "push",
                    "push again",
                    "pull",
                    "push CLI",
                    "push again CLI",
                    "pull CLI",
                    "dvc push",
                    "dvc push again",
                    "dvc pull",
                )
            }
            for _trial in range(args.trials):
                remote = remote_store(tmp, s3)
                times["push"].append(
                    timed(lambda r=remote: transfer(local, r, Selection(runs=[run_id])))
                )
                times["push again"].append(
                    timed(lambda r=remote: transfer(local, r, Selection(runs=[run_id])))
                )
                fresh_dir = Path(tempfile.mkdtemp(dir=tmp, prefix="pulled-"))
                fresh = Store(
                    fresh_dir,
                    f"sqlite:///{fresh_dir / 'metadata.db'}",
                    objects_url=str(fresh_dir / "objects"),
                )
                times["pull"].append(
                    timed(lambda r=remote, f=fresh: transfer(r, f, Selection(runs=[run_id])))
                )
                assert fresh.objects.exists(fresh.manifest(run_id).data.sources[0].snapshot or "")
                shutil.rmtree(fresh_dir)

                # the same through the command line, a fresh interpreter each, as dvc is timed
                cli_remote = remote_store(tmp, s3)
                toml = remote_toml(cli_remote, s3)
                (project / "seedline.toml").write_text(toml)
                times["push CLI"].append(
                    timed(lambda: seedline_cli(project, env, "push", "bench", run_id))
                )
                times["push again CLI"].append(
                    timed(lambda: seedline_cli(project, env, "push", "bench", run_id))
                )
                clone = Path(tempfile.mkdtemp(dir=tmp, prefix="clone-"))
                (clone / "seedline.toml").write_text(toml)
                (clone / ".seedline").mkdir()
                times["pull CLI"].append(
                    timed(lambda c=clone: seedline_cli(c, env, "pull", "bench", run_id))
                )
                shutil.rmtree(clone)

                if binary is None:
                    continue
                repo = Path(tempfile.mkdtemp(dir=tmp, prefix="dvc-"))
                dvc(binary, repo, env, "init", "--no-scm", "-q")
                dvc(binary, repo, env, "config", "core.analytics", "false")
                dvc(binary, repo, env, "remote", "add", "-d", "bench", s3.fresh_prefix())
                dvc(binary, repo, env, "remote", "modify", "bench", "endpointurl", s3.endpoint)
                shutil.copy(data, repo / "big.bin")
                dvc(
                    binary, repo, env, "add", "big.bin", "-q"
                )  # hashing, like seedline's snapshot: not timed
                times["dvc push"].append(timed(lambda r=repo: dvc(binary, r, env, "push", "-q")))
                times["dvc push again"].append(
                    timed(lambda r=repo: dvc(binary, r, env, "push", "-q"))
                )
                shutil.rmtree(repo / ".dvc" / "cache")
                (repo / "big.bin").unlink()
                times["dvc pull"].append(timed(lambda r=repo: dvc(binary, r, env, "pull", "-q")))
                shutil.rmtree(repo)

            report = fsck(local)
            fsck_rate = report.bytes / report.seconds / 1e9
            s3_report = fsck(remote)
            s3_rate = s3_report.bytes / s3_report.seconds / 1e9
            small = remote_store(tmp, s3)
            for i in range(args.small_objects):
                small.objects.put(i.to_bytes(4, "big") * 1024)  # 4 KiB each
            serial_small = [fsck(small, workers=1).seconds for _ in range(args.trials)]
            default_small = [fsck(small).seconds for _ in range(args.trials)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) if v else None for k, v in times.items()}
    mb = size / 1e6
    print(
        f"\ndata snapshot: {args.size_mb} MiB, {args.trials} trials, medians; S3 = SeaweedFS on loopback"
    )
    print(f"{'':24} {'seedline':>10} {'dvc':>10} {'ratio':>8}   target")
    for ours, theirs, target in (
        ("push", "dvc push", "seedline <= dvc"),
        ("pull", "dvc pull", "seedline <= dvc"),
        ("push again", "dvc push again", "seedline < 0.1 s"),
        ("push CLI", "dvc push", "seedline <= dvc"),
        ("pull CLI", "dvc pull", "seedline <= dvc"),
        ("push again CLI", "dvc push again", "(interpreter start)"),
    ):
        a, b = med[ours], med[theirs]
        ratio = f"{a / b:.2f}" if a is not None and b else "-"
        dvc_col = f"{b:.3f} s" if b is not None else "no dvc"
        print(f"{ours + ' (s)':24} {a:>8.3f} s {dvc_col:>10} {ratio:>8}   {target}")
    print(
        f"{'push throughput':24} {mb / med['push']:>7.0f} MB/s"
        + (f" {mb / med['dvc push']:>7.0f} MB/s" if med["dvc push"] else "")
    )
    print(
        f"{'pull throughput':24} {mb / med['pull']:>7.0f} MB/s"
        + (f" {mb / med['dvc pull']:>7.0f} MB/s" if med["dvc pull"] else "")
    )
    print(
        f"fsck, local store: {report.objects} objects, {report.bytes / 1e9:.3f} GB verified at {fsck_rate:.2f} GB/s"
    )
    print(
        f"fsck, S3: {s3_report.objects} objects, {s3_report.bytes / 1e9:.3f} GB verified at {s3_rate:.2f} GB/s"
    )
    one, many = statistics.median(serial_small), statistics.median(default_small)
    print(
        f"fsck, S3, {args.small_objects} objects of 4 KiB (medians): one at a time "
        f"{args.small_objects / one:.0f} objects/s, {REMOTE_WORKERS} at once (default) "
        f"{args.small_objects / many:.0f} objects/s, ratio {one / many:.2f}"
    )
    if binary is None:
        print("note: dvc not found (set $DVC or put it on PATH): its columns are empty")
    print(f"ratio = seedline / dvc time (below 1: seedline faster). load average after: {load()}")


if __name__ == "__main__":
    main()
