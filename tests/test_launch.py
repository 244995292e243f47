"""`seedline run` pins its hash seed before importing anything heavy, to the same value as before;
commands end without the interpreter's module teardown, but with everything else exit does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seedline.cli.launch import run_arguments
from seedline.core.hashseed import derive_seed, hash_seed, spec_hash_seed
from seedline.core.seeding import SeedPlan
from seedline.core.spec import load_spec

SEEDS = [0, 1, 7, 42, 2**31 - 1, 2**32 - 1, 2**32, 2**40 + 5, 2**62 + 12345, 2**63 - 1]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_numpy_free_derivation_matches_the_seed_plan(seed: int) -> None:
    assert hash_seed(seed) == SeedPlan(seed).hash_seed()
    for path in ("split", "pipeline/clf__random_state", "héllo"):
        assert derive_seed(seed, path) == SeedPlan(seed).derive(path)


SPEC = """name: t
seed: {seed}
data: {{source: "sklearn:load_iris", target: target}}
pipeline:
  - {{name: clf, class: sklearn.linear_model.LogisticRegression}}
metrics: [accuracy]
"""


@pytest.mark.parametrize(
    ("seed_text", "overrides"),
    [
        ("12", []),
        ("12  # the master seed", []),
        ("010", []),  # YAML 1.1 reads it as octal 8: left to YAML, not the quick reading
        ("0x1f", []),
        ("12", ["seed=99"]),
        ("12", ["--", "pipeline.clf.C=2"]),
    ],
)
def test_the_quick_reading_of_a_spec_agrees_with_the_full_load(
    tmp_path: Path, seed_text: str, overrides: list[str]
) -> None:
    overrides = [o for o in overrides if o != "--"]
    (tmp_path / "seedline.yaml").write_text(SPEC.format(seed=seed_text))
    full = load_spec(tmp_path, overrides)
    assert spec_hash_seed(tmp_path, overrides) == SeedPlan(full.seed).hash_seed()


def test_the_quick_reading_gives_up_rather_than_guess(tmp_path: Path) -> None:
    spec = tmp_path / "seedline.yaml"
    assert spec_hash_seed(spec, []) is None  # missing
    spec.write_text("seed: [1, 2]\n")
    assert spec_hash_seed(spec, []) is None
    spec.write_text("seed: -3\n")
    assert spec_hash_seed(spec, []) is None
    spec.write_text("seed: 1\n'seed': 2\n")  # two keys: YAML decides which wins
    assert spec_hash_seed(spec, []) == hash_seed(2)
    spec.write_text("seeds: 3\nseed: 4\n")  # another key that starts alike is not a seed
    assert spec_hash_seed(spec, []) == hash_seed(4)
    spec.write_text("seed: 12#not a comment\n")  # YAML reads a string: not a seed
    assert spec_hash_seed(spec, []) is None


def test_run_arguments_read_the_spec_and_the_overrides_or_give_up() -> None:
    assert run_arguments(["seedline", "run"]) == ("seedline.yaml", [])
    assert run_arguments(
        ["seedline", "run", "x.yaml", "--set", "seed=3", "--json", "--set=a.b=1", "--workers", "2"]
    ) == ("x.yaml", ["seed=3", "a.b=1"])
    assert run_arguments(["seedline", "runs"]) is None
    assert run_arguments(["seedline", "run", "--help"]) is None
    assert run_arguments(["seedline", "run", "a.yaml", "b.yaml"]) is None
    assert run_arguments(["seedline", "run", "--set"]) is None


def test_the_restart_happens_before_numpy_is_imported(tmp_path: Path) -> None:
    """The first interpreter imports little; the restarted one then fails on the bad data."""
    (tmp_path / "seedline.yaml").write_text(
        SPEC.format(seed=5).replace("sklearn:load_iris", "missing.csv")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED",)}
    env.pop("_SEEDLINE_HASH_SEED_PINNED", None)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "seedline", "run", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    before_restart = [ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if "|" in ln]
    assert "seedline.core.hashseed" in before_restart
    # not even typing (and the re and collections it brings): the restart costs little more
    # than the interpreter's own start
    heavy = {"numpy", "pydantic", "typer", "sklearn", "pandas", "yaml", "typing", "re"}
    assert heavy.isdisjoint(before_restart)
    assert out.returncode != 0 and "missing.csv" in out.stderr


LEAVING = """
import atexit, sys, threading, time
from seedline.cli.launch import leave

def log(line):
    with open(sys.argv[1], "a") as f:
        f.write(line + "\\n")

def late():
    time.sleep(0.3)
    log("thread finished")

class Noisy:
    def __del__(self):
        log("teardown")

kept = Noisy()
threading.Thread(target=late).start()  # not a daemon: exit waits for it
threading._register_atexit(lambda: log("threading exit callback"))
atexit.register(lambda: log("atexit callback"))
print("buffered, not flushed", end="")
leave(eval(sys.argv[2]))
"""


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [("None", 0, ""), ("3", 3, ""), ("'error: no such run'", 1, "error: no such run\n")],
)
def test_leave_does_what_exit_does_but_the_teardown(
    tmp_path: Path, code: str, status: int, stderr: str
) -> None:
    """Threads joined, exit callbacks in the interpreter's order, output flushed, sys.exit's status."""
    log = tmp_path / "log.txt"
    out = subprocess.run(
        [sys.executable, "-c", LEAVING, str(log), code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (out.returncode, out.stdout, out.stderr) == (status, "buffered, not flushed", stderr)
    # the object's __del__ is what the teardown would have run: it is the one thing skipped
    assert log.read_text().splitlines() == [
        "threading exit callback",
        "thread finished",
        "atexit callback",
    ]


def test_a_command_leaves_the_database_closed(tmp_path: Path) -> None:
    """The store's connections close at exit: no write-ahead log is left for the next opener."""
    (tmp_path / "seedline.yaml").write_text(SPEC.format(seed=5))
    out = subprocess.run(
        [sys.executable, "-m", "seedline", "run", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert '"status": "succeeded"' in out.stdout
    store = tmp_path / ".seedline"
    assert (store / "metadata.db").exists()
    assert not (store / "metadata.db-wal").exists()
    assert not (store / "metadata.db-shm").exists()


def test_a_profiled_command_exits_the_ordinary_way(tmp_path: Path) -> None:
    """`python -m cProfile -o FILE -m seedline ...` writes its file after the command returns."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(tmp_path / "p.prof"),
            "-m",
            "seedline",
            "--version",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("seedline ")
    assert (tmp_path / "p.prof").stat().st_size > 0


GC_PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("threshold", *gc.get_threshold()))
{setup}
sys.argv = ["seedline", "--version"]
from seedline.cli.launch import main
main()
"""


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("", "threshold 5000 10 10"),  # the interpreter's default 700, raised
        ("gc.set_threshold(0, 10, 10)", "threshold 0 10 10"),  # switched off: left off
        ("gc.set_threshold(20000, 5, 5)", "threshold 20000 5 5"),  # the user's own: kept
    ],
)
def test_a_command_collects_cycles_less_often_unless_told_otherwise(
    setup: str, expected: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", GC_PROBE.format(setup=setup)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[-1] == expected


COLLECTOR_PROBE = """
import gc, sys
import seedline.cli.main as cli
cli.main = lambda: print("collector", "on" if gc.isenabled() else "off")
{setup}
sys.argv = ["seedline", sys.argv[1]]
from seedline.cli.launch import main
main()
"""


@pytest.mark.parametrize(
    ("command", "setup", "expected"),
    [
        ("run", "", "collector off"),  # paused: the run resumes it (core.collector)
        ("serve", "", "collector off"),  # paused: the server resumes it
        ("reproduce", "", "collector on"),  # any other command: as it was
        ("predict", "", "collector on"),
        ("run", "gc.disable()", "collector off"),  # the user's own choice, left alone
    ],
)
def test_only_run_and_serve_start_up_with_the_collector_paused(
    tmp_path: Path, command: str, setup: str, expected: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", COLLECTOR_PROBE.format(setup=setup), command],
        cwd=tmp_path,  # no seedline.yaml here: no restart for the hash seed
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[-1] == expected


@pytest.fixture
def collector_state() -> Any:
    """Leave the collector as the test found it: on, nothing frozen, not paused."""
    import gc

    from seedline.core import collector

    yield collector
    collector.resume()
    gc.unfreeze()
    gc.enable()


def test_resume_freezes_start_up_and_turns_the_collector_on(collector_state: Any) -> None:
    import gc

    gc.unfreeze()
    collector_state.resume()  # not paused: nothing happens
    assert gc.isenabled() and gc.get_freeze_count() == 0
    collector_state.pause()
    assert not gc.isenabled() and collector_state.paused()
    made_while_paused = [[] for _ in range(1000)]
    collector_state.resume()
    assert gc.isenabled() and not collector_state.paused()
    assert gc.get_freeze_count() >= len(made_while_paused)  # they, and start-up, are frozen


def test_a_collector_the_user_switched_off_stays_off(collector_state: Any) -> None:
    import gc

    gc.disable()
    collector_state.pause()
    assert not collector_state.paused()
    collector_state.resume()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_a_run_resumes_the_collector_once_started_up(
    collector_state: Any, penguins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused through the loading and compiling (``prepare``), on from the fit onwards."""
    import gc

    from seedline.execution import runner

    seen: dict[str, bool] = {}
    prepare = runner.prepare

    def watched_prepare(*args: Any, **kwargs: Any) -> Any:
        out = prepare(*args, **kwargs)
        seen["prepare"] = gc.isenabled()
        return out

    monkeypatch.setattr(runner, "prepare", watched_prepare)
    gc.unfreeze()
    collector_state.pause()
    runner.run(
        penguins,
        store=None,
        use_cache=False,
        plots=False,
        after_fit=lambda *_: seen.setdefault("fit", gc.isenabled()),
    )
    assert seen == {"prepare": False, "fit": True}
    assert gc.isenabled() and gc.get_freeze_count() > 0
