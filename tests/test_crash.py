"""SIGKILL harness: runs, pushes and prunes killed at several points leave a store that opens,
shows no half-written object or half-visible run, and still reproduces the runs made before."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import seedline
from seedline.records.tracking import Store
from seedline.records.transfer import Selection, open_remote, transfer
from seedline.workflow.fsck import fsck
from seedline.workflow.reclaim import gc

from .conftest import clean_env, git, run_cli
from .test_remote import SPEC

pytestmark = pytest.mark.slow

# seconds after the start at which a process is killed: during start-up, reading, fitting,
# snapshotting or copying, and writing records (the exact phase varies with the load)
KILL_POINTS = (0.5, 2.0, 4.0, 7.0)


def big_project(root: Path, rows: int = 300_000) -> Path:
    """A project whose data file (~15 MB) takes long enough to read, snapshot and copy to be killed mid-way."""
    root.mkdir(parents=True)
    (root / "seedline.yaml").write_text(SPEC)
    (root / ".gitignore").write_text("data/\n")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, 3)).round(6)
    label = (x[:, 0] + x[:, 1] > 0).astype(int)
    (root / "data").mkdir()
    with (root / "data" / "table.csv").open("w") as fh:
        fh.write("a,b,c,label\n")
        np.savetxt(
            fh, np.column_stack([x, label]), fmt=["%.6f", "%.6f", "%.6f", "%d"], delimiter=","
        )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def kill_after(cwd: Path, delay: float, *args: str) -> int | None:
    """Start ``seedline ARGS`` and SIGKILL it after ``delay`` seconds; its exit code if it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "seedline", *args],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def assert_store_sound(store: Store) -> None:
    """No corrupt object and nothing a finished run or model needs is missing; partials are not objects."""
    report = fsck(store)
    assert report.ok, [p.to_dict() for p in report.problems]
    assert all(".part" not in a for a in store.objects)


def test_killed_runs_pushes_and_prunes_leave_a_sound_store(tmp_path: Path) -> None:
    """Kill each at several points; afterwards everything opens, nothing is half-visible, the first run reproduces."""
    project = big_project(tmp_path / "p")
    first = seedline.run(project / "seedline.yaml", snapshot=True)
    store = Store.open(project)

    for delay in KILL_POINTS:
        kill_after(project, delay, "run", "--snapshot", "--set", f"seed={int(delay * 10)}")
        assert_store_sound(Store.open(project))
    # a killed run shows as interrupted, never 'running' forever
    assert all(r.status != "running" for r in Store.open(project).list_runs())

    remote_dir = tmp_path / "team"
    for delay in KILL_POINTS:
        kill_after(project, delay, "push", str(remote_dir))
        if remote_dir.exists():
            remote = open_remote(str(remote_dir), project)
            assert_store_sound(remote)
            # a run is at the remote whole (every object it names) or not at all
            for r in remote.list_runs():
                assert r.status != "running"
    remote = open_remote(str(remote_dir), project)
    done = transfer(store, remote, Selection(everything=True))
    assert first.run_id in {r.run_id for r in remote.list_runs()}
    assert done.conflicts == []
    assert_store_sound(remote)

    for delay in (0.5, 2.0):
        kill_after(project, delay, "cache", "prune", "--all")
        assert_store_sound(Store.open(project))
    run_cli(project, "cache", "prune", "--all")
    # whatever a killed prune or run left behind is reclaimed, and nothing a run needs
    gc(Store.open(project), min_age_s=0)
    assert_store_sound(Store.open(project))

    report = seedline.reproduce(first.run_id, project_root=project)
    assert report.verdict == "bitwise", report.to_dict()


def test_a_killed_materialization_never_leaves_a_partial_snapshot_in_use(tmp_path: Path) -> None:
    """A reproduce killed while writing the snapshot out: the next one writes it whole and is bitwise."""
    project = big_project(tmp_path / "p", rows=200_000)
    first = seedline.run(project / "seedline.yaml", snapshot=True)
    (project / "data" / "table.csv").unlink()
    for delay in (1.0, 3.0):
        kill_after(project, delay, "reproduce", first.run_id)
    time.sleep(0.1)
    report = seedline.reproduce(first.run_id, project_root=project)
    assert report.verdict == "bitwise"
    gc(Store.open(project), min_age_s=0)
    assert not list((project / ".seedline").rglob("*.part"))
