"""The quick listing path (cli/listing.py): the same output as the full command line, far fewer imports.

``seedline runs``, ``show``, ``models``, ``sweeps`` and ``cache ls`` answer from an embedded
store with the standard library's sqlite3 when nothing needs the full command line; anything
unusual steps aside to it, having printed nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seedline.cli.listing import answer, parse
from seedline.storage.embedded import DATABASE_ENV, open_embedded
from seedline.storage.objects import LocalObjectStore

from .conftest import clean_env, make_project, run_cli, run_here, run_here_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Penguins with a run (its step-cache entries), a tag, a model with an alias, and a sweep."""
    root = make_project(tmp_path_factory.mktemp("listing"), "penguins")
    run_cli(root, "sweep", "--param", "pipeline.clf.n_estimators=5,10")
    run_id = run_here_json(root, "runs")[0]["run_id"]
    run_here(root, "tag", run_id, "team=vision", "stage=try")
    run_here(root, "register", run_id, "--name", "penguins")
    run_here(root, "alias", "penguins@production", "1")
    return root


@pytest.fixture
def here(project: Path) -> Iterator[Path]:
    with contextlib.chdir(project):
        yield project


def quick(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[bool, str]:
    """What the quick path does with ``seedline ARGS`` in the current folder: (answered, stdout)."""
    capsys.readouterr()
    wanted = clean_env()  # the environment run_here and run_cli give the full path
    with pytest.MonkeyPatch.context() as env:
        for name in set(os.environ) - set(wanted):
            env.delenv(name)
        for name, value in wanted.items():
            env.setenv(name, value)
        answered = answer(["seedline", *args])
    return answered, capsys.readouterr().out


LISTINGS = [
    ["runs"],
    ["runs", "--json"],
    ["runs", "-n", "1"],
    ["runs", "--limit=2", "--json"],
    ["show", "PREFIX"],
    ["show", "RUN", "--json"],
    ["models"],
    ["models", "--json"],
    ["sweeps"],
    ["sweeps", "--json"],
    ["cache", "ls"],
    ["cache", "ls", "--json"],
]


@pytest.mark.parametrize("args", LISTINGS, ids=" ".join)
def test_the_quick_path_prints_what_the_full_command_line_prints(
    here: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    run_id = run_here_json(here, "runs")[0]["run_id"]
    args = [{"PREFIX": run_id[:10], "RUN": run_id}.get(a, a) for a in args]
    answered, out = quick(capsys, *args)
    assert answered, args
    full = run_here(here, *args).stdout
    assert out == full
    # the store holds something for every listing: none prints its empty-store line
    empty = ("no runs yet", "no registered models yet", "no sweeps yet", "the step cache is empty")
    assert out.strip() and not out.startswith(empty) and out.strip() != "[]"


def test_a_listing_in_a_fresh_process_imports_no_sqlalchemy_typer_pydantic_or_numpy(
    project: Path,
) -> None:
    code = (
        "import atexit, sys\nsys.argv = ['seedline', *sys.argv[1:]]\n"
        "heavy = ('sqlalchemy', 'typer', 'click', 'pydantic', 'numpy', 'pandas', 'sklearn')\n"
        # the command ends the process (cli.launch.leave): what it imported is read at exit
        "atexit.register(lambda: print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr))\n"
        "from seedline.cli.launch import main\nmain()\n"
    )
    run_id = run_here_json(project, "runs")[0]["run_id"]
    for command in (
        ["runs"],
        ["models"],
        ["sweeps"],
        ["cache", "ls"],
        ["runs", "--json"],
        ["show", run_id],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code, *command],
            cwd=project,
            env=clean_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        assert proc.stderr.strip().splitlines()[-1] == "[]", (command, proc.stderr)
        assert proc.stdout == run_here(project, *command).stdout


def test_the_quick_path_never_writes_the_database(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = here / ".seedline" / "metadata.db"
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    run_id = run_here_json(here, "runs")[0]["run_id"]
    for args in (["runs"], ["show", run_id], ["models"], ["sweeps"], ["cache", "ls"]):
        assert quick(capsys, *args)[0]
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    store = open_embedded(here)
    assert store is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.connection.execute("DELETE FROM runs")
    store.connection.close()


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "--tag", "team=vision"],  # an option the quick path does not take
        ["runs", "--help"],
        ["runs", "-n", "many"],
        ["show"],
        ["show", "zzzzzzzz"],  # matches no run: the full path says so, with a hint
        ["show", "1"],  # several runs match: the full path lists them
        ["cache", "du"],
        ["models", "show", "penguins"],
        ["run"],
        [],
    ],
    ids=lambda a: " ".join(a) or "(nothing)",
)
def test_anything_else_steps_aside_having_printed_nothing(
    here: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    answered, out = quick(capsys, *args)
    assert not answered and out == ""


def test_the_entry_point_tries_the_quick_path_for_the_listing_commands_only() -> None:
    from seedline.cli.launch import LISTING_COMMANDS
    from seedline.cli.listing import _COMMANDS

    assert {name.split()[0] for name in _COMMANDS} == LISTING_COMMANDS


def test_parse_reads_only_the_plain_forms() -> None:
    assert parse(["runs", "-n", "3", "--json"]) == ("runs", {"as_json": True, "limit": 3})
    assert parse(["cache", "ls"]) == ("cache ls", {"as_json": False})
    assert parse(["show", "abc", "--json"]) == ("show", {"as_json": True, "ref": "abc"})
    assert parse(["show", "a", "b"]) is None
    assert parse(["models", "--limit", "3"]) is None  # only runs takes a limit
    assert parse(["sweeps", "extra"]) is None


def test_a_team_store_a_config_file_or_an_older_schema_take_the_full_path(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where the full path could answer differently (or must migrate), the quick one steps aside."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    with contextlib.chdir(copy):
        assert quick(capsys, "runs")[0]
        (copy / "seedline.toml").write_text("[store]\n")
        assert quick(capsys, "runs") == (False, "")
        (copy / "seedline.toml").unlink()
        with pytest.MonkeyPatch.context() as env:
            env.setenv(DATABASE_ENV, f"sqlite:///{copy / '.seedline' / 'metadata.db'}")
            assert quick(capsys, "runs") == (False, "")
        # a store whose schema is behind: the full path must migrate it first
        conn = sqlite3.connect(copy / ".seedline" / "metadata.db")
        with conn:
            conn.execute("UPDATE alembic_version SET version_num = '0007'")
        conn.close()
        assert open_embedded(copy) is None
        assert quick(capsys, "runs") == (False, "")


@pytest.mark.parametrize(
    ("change", "full_path_says"),
    [
        ({"schema_version": 2}, "newer than this seedline understands"),
        ({"metrics": {"accuracy": "high"}}, "not a seedline manifest"),
    ],
    ids=["a newer format", "a document the model refuses"],
)
def test_show_steps_aside_from_a_manifest_it_cannot_read(
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    full_path_says: str,
) -> None:
    """`show` renders the stored JSON without the model; what the model would refuse, it leaves
    to the full path (which says why), having printed nothing."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    run_id = run_here_json(copy, "runs")[0]["run_id"]
    objects = LocalObjectStore(copy / ".seedline" / "objects")
    conn = sqlite3.connect(copy / ".seedline" / "metadata.db")
    with conn:
        (address,) = conn.execute(
            "SELECT manifest_object FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        document = {**json.loads(objects.get(address)), **change}
        conn.execute(
            "UPDATE runs SET manifest_object = ? WHERE id = ?",
            (objects.put(json.dumps(document).encode()), run_id),
        )
    conn.close()
    with contextlib.chdir(copy):
        assert quick(capsys, "show", run_id) == (False, "")
    refused = run_here(copy, "show", run_id, check=False)
    assert refused.returncode != 0 and full_path_says in refused.stderr


def test_a_run_whose_process_is_gone_is_left_to_the_full_path_which_marks_it(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    # a process begins a run and dies before finishing it
    begin = (
        "from seedline.records.tracking import Store, new_run_id\n"
        "store = Store.find()\n"
        "m = store.manifest(store.list_runs(limit=1)[0].run_id)\n"
        "store.begin_run(m.model_copy(update={'run_id': new_run_id(), 'status': 'running'}))\n"
        "import os; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", begin], cwd=copy, env=clean_env(), check=True)
    with contextlib.chdir(copy):
        assert quick(capsys, "runs") == (False, "")
    assert run_here_json(copy, "runs")[0]["status"] == "interrupted"
    # marked once by the full path, the quick path answers again, with the same rows
    with contextlib.chdir(copy):
        answered, out = quick(capsys, "runs", "--json")
    assert answered and out == run_here(copy, "runs", "--json").stdout


def test_a_reader_that_stops_early_ends_the_listing_quietly(project: Path, tmp_path: Path) -> None:
    """`seedline runs | head -1` on a big store: no BrokenPipeError traceback, exit 0 (as the full path)."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    conn = sqlite3.connect(copy / ".seedline" / "metadata.db")
    with conn:
        row = list(conn.execute("SELECT * FROM runs LIMIT 1").fetchone())
        marks = ", ".join("?" * len(row))
        for i in range(3000):  # about 2 MB of JSON: far more than a pipe holds
            conn.execute(f"INSERT INTO runs VALUES ({marks})", [f"0{i:012d}", *row[1:]])
    conn.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "seedline", "runs", "-n", "0", "--json"],
        cwd=copy,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == b"["
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err, err
