"""The ``seedline`` command line: a thin layer over the Python API.

Only typer is imported at module level: ``seedline --help`` must start fast and never
import scikit-learn. Each command imports what it needs when it runs.

This module and the ``*_cmd(s)`` modules whose commands it registers leave out
``from __future__ import annotations``: typer reads every command's signature at each start,
and annotations kept as strings it compiles and evaluates one by one (about 70 ms of every
command, ``--help`` included; ``tests/test_cli_output.py`` checks they stay objects).
"""

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from seedline.cli import cache_cmds, registry_cmds, remote_cmds, sweep_cmds, ui_cmds
from seedline.cli.check_cmd import check_cmd
from seedline.cli.exec_cmd import exec_cmd
from seedline.cli.help_text import plain_placeholders
from seedline.cli.inspect_cmd import inspect_cmd
from seedline.core.version import __version__

app = typer.Typer(
    name="seedline",
    help="Reproducible scikit-learn pipelines: run with every source of randomness controlled, record everything, prove a rebuild.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# set by main(): only a real command-line start may re-exec the interpreter
_ENTRYPOINT = False
_PINNED_FLAG = "_SEEDLINE_HASH_SEED_PINNED"


def _console(stderr: bool = False) -> Any:
    from seedline.cli.render import console

    return console(stderr)


def _echo_json(data: Any) -> None:
    """What a command prints with --json: one document, keys sorted, indented."""
    from seedline.cli.render import json_document

    typer.echo(json_document(data))


def _fail(exc: BaseException, code: int = 2) -> NoReturn:
    from rich.markup import escape

    # messages quote specs and TOML ('[remotes.team]'): brackets are text, not rich markup
    err = _console(stderr=True)
    err.print(
        f"[bold red]error:[/] {escape(getattr(exc, 'message', str(exc)))}",
        markup=True,
        highlight=False,
    )
    hint = getattr(exc, "hint", None)
    if hint:
        err.print(f"[yellow]hint:[/] {escape(hint)}", markup=True, highlight=False)
    raise typer.Exit(code)


def _store_if_any() -> Any:
    """The project's store, or None outside a project (a manifest .json file needs none)."""
    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store

    try:
        return Store.find()
    except SeedlineError:
        return None


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"seedline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """seedline: declare, run, record and prove reproducible ML pipelines."""


def _pin_hash_seed(spec_path: Path, overrides: list[str]) -> None:
    """Re-exec with PYTHONHASHSEED derived from the spec's seed, unless already so.

    ``cli.launch`` normally did this before anything was imported; this checks its quick
    reading of the spec against the full one, and restarts (once more at most) if they differ.
    """
    if not _ENTRYPOINT or os.environ.get(_PINNED_FLAG) == "2":
        return
    from seedline.core.seeding import SeedPlan
    from seedline.core.spec import load_spec

    spec = load_spec(spec_path, overrides)
    wanted = str(SeedPlan(spec.seed).hash_seed())
    if os.environ.get("PYTHONHASHSEED") == wanted:
        return
    again = os.environ.get(_PINNED_FLAG) == "1"
    _reexec_with_hash_seed(wanted, flag="2" if again else "1", force=again)


def _reexec_with_hash_seed(wanted: str | None, *, flag: str = "1", force: bool = False) -> None:
    """Start this command again in an interpreter whose string hashing uses ``wanted``.

    The hash seed is read once, when the interpreter starts, so it can only be pinned by
    starting a new one. ``None`` (the original run was not pinned) changes nothing.
    """
    if not _ENTRYPOINT or wanted is None:
        return
    if os.environ.get(_PINNED_FLAG) == "1" and not force:
        return
    if os.environ.get("PYTHONHASHSEED") == wanted:
        return
    env = dict(os.environ, PYTHONHASHSEED=wanted, **{_PINNED_FLAG: flag})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "seedline", *sys.argv[1:]], env)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Project folder (created if missing).")] = Path(
        "."
    ),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing seedline.yaml.")
    ] = False,
) -> None:
    """Scaffold a working example: seedline.yaml, data/penguins.csv and the .seedline/ store."""
    from seedline.cli.scaffold import scaffold
    from seedline.core.errors import SeedlineError

    try:
        written = scaffold(directory, force=force)
    except SeedlineError as exc:
        _fail(exc)
    out = _console()
    for p in written:
        out.print(f"[green]created[/] {p}")
    out.print("\nnext: [bold]seedline run[/]  (fits the pipeline and records the run)")


@app.command("run")
def run_cmd(
    spec: Annotated[
        Path, typer.Argument(help="Spec file, or a folder holding seedline.yaml.")
    ] = Path("seedline.yaml"),
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec value: path.to.key=value (repeatable)."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (run_id, status, metrics, fingerprints)."
        ),
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Fit every step; neither read nor write the step cache."),
    ] = False,
    executor: Annotated[
        str, typer.Option("--executor", help="Where k-fold folds run: serial, processes or dask.")
    ] = "serial",
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (processes, dask).")
    ] = 1,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Dask scheduler tcp://HOST:PORT (default: a LocalCluster)."),
    ] = None,
    no_plots: Annotated[
        bool,
        typer.Option(
            "--no-plots",
            help="Skip the plot data (confusion matrix, curves, importances) stored for 'seedline ui'.",
        ),
    ] = False,
    snapshot: Annotated[
        bool | None,
        typer.Option(
            "--snapshot/--no-snapshot",
            help="Keep the data files in the store, so a clone without them can reproduce (default: the spec's data.snapshot).",
            show_default=False,
        ),
    ] = None,
    snapshot_max_size: Annotated[
        str | None,
        typer.Option(
            "--snapshot-max-size",
            help="Refuse a snapshot of more data than this, e.g. 5GiB (default 2GiB).",
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            help="Tag the run: KEY=VALUE (repeatable). Tags are not in the manifest: they change no fingerprint.",
        ),
    ] = None,
) -> None:
    """Fit and evaluate the pipeline, with every seed pinned, and record the run."""
    from seedline.cli.cache_cmds import parse_size
    from seedline.core.errors import PipelineError, SeedlineError
    from seedline.records.tags import parse_tags

    try:
        tags = parse_tags(tag or [])
    except SeedlineError as exc:
        _fail(exc)
    overrides = list(set_ or [])
    where: dict[str, Any] = {
        "tags": tags,
        "executor": executor,
        "workers": workers,
        "address": address,
        "plots": not no_plots,
        "snapshot": snapshot,
        "snapshot_max_bytes": parse_size(snapshot_max_size) if snapshot_max_size else None,
    }
    try:
        _pin_hash_seed(spec, overrides)
        from seedline.execution.runner import run

        if as_json or not sys.stderr.isatty():
            # whatever the pipeline prints goes to stderr: stdout carries one JSON document
            with contextlib.redirect_stdout(sys.stderr):
                result = run(spec, overrides=overrides, use_cache=not no_cache, **where)
        else:
            result = _run_with_progress(spec, overrides, use_cache=not no_cache, **where)
    except PipelineError as exc:
        if as_json and exc.result is not None:
            _echo_json(exc.result.summary())
        _fail(exc, code=1)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(result.summary())
        return
    from seedline.cli.render import render_run

    render_run(_console(), result.manifest.to_dict())


def _run_with_progress(spec: Path, overrides: list[str], *, use_cache: bool, **where: Any) -> Any:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from seedline.execution.runner import run

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(msg: str, i: int, n: int) -> None:
            bar.update(task, description=msg, completed=i, total=n)

        return run(spec, overrides=overrides, progress=update, use_cache=use_cache, **where)


app.command(
    "exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)(exec_cmd)


@app.command()
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Show at most this many runs (newest first).")
    ] = 50,
    sweep: Annotated[
        str | None,
        typer.Option("--sweep", help="Only the trials of this sweep, best first by its metric."),
    ] = None,
    remove_interrupted: Annotated[
        bool,
        typer.Option(
            "--remove-interrupted",
            help="First delete the records of interrupted runs (their process is gone; they have no manifest).",
        ),
    ] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", help="Only runs with this tag: KEY=VALUE, or KEY for any value (repeatable)."
        ),
    ] = None,
) -> None:
    """List the runs in this project's store, newest first (or a sweep's trials, best first)."""
    from seedline.core.errors import SeedlineError
    from seedline.records.tags import parse_tag_filter
    from seedline.records.tracking import Store

    try:
        wanted = dict(parse_tag_filter(t) for t in tag or [])
        store = Store.find()
        if remove_interrupted:
            removed = store.remove_interrupted_runs()
            if not as_json:
                _console(stderr=True).print(
                    f"removed {len(removed)} interrupted run(s)"
                    + (f": {', '.join(removed)}" if removed else ""),
                    highlight=False,
                )
        if sweep is not None:
            from seedline.workflow.browse import ranked_trials

            rows = [t["summary"] for t in ranked_trials(store, sweep, limit=limit)["trials"]]
            rows = [r for r in rows if all(_has_tag(r.tags, k, v) for k, v in wanted.items())]
        else:
            rows = store.list_runs(limit=limit, tags=wanted)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json([r.to_dict() for r in rows])
        return
    from seedline.cli.render import render_runs

    render_runs(_console(), rows)


def _has_tag(tags: dict[str, str], key: str, value: str | None) -> bool:
    return key in tags and (value is None or tags[key] == value)


@app.command()
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of it.")],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the whole manifest as JSON, with the run's tags under 'tags'."
        ),
    ] = False,
) -> None:
    """Show a run's manifest: spec, seeds, data, environment, per-step fingerprints, metrics, tags."""
    from seedline.core.errors import SeedlineError
    from seedline.records.tags import tags_of
    from seedline.records.tracking import Store

    try:
        store = Store.find()
        manifest = store.manifest(run_ref)
        tags = tags_of(store, [manifest.run_id])[manifest.run_id]
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        # tags are not part of the manifest: 'reproduce run.json' reads this document and drops them
        typer.echo(json.dumps({**manifest.to_dict(), "tags": tags}, indent=2))
        return
    from seedline.cli.render import render_manifest

    render_manifest(_console(), manifest.to_dict(), tags)


@app.command("tag")
def tag_cmd(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of it.")],
    tags: Annotated[
        list[str] | None,
        typer.Argument(metavar="[KEY=VALUE]...", help="Tags to set (replacing a key's value)."),
    ] = None,
    delete: Annotated[
        list[str] | None,
        typer.Option("--delete", "-d", metavar="KEY", help="Delete this tag (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's tags as JSON.")] = False,
) -> None:
    """Set or delete a run's tags. Tags label runs; they are not in the manifest and change no fingerprint."""
    from seedline.core.errors import SeedlineError
    from seedline.records.tags import delete_tags, parse_tags, set_tags, tags_of
    from seedline.records.tracking import Store

    try:
        wanted = parse_tags(tags or [])
        store = Store.find()
        run_id = store.resolve(run_ref)
        if delete:
            delete_tags(store, run_id, delete)
        now = set_tags(store, run_id, wanted) if wanted else tags_of(store, [run_id])[run_id]
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json({"run_id": run_id, "tags": now})
        return
    out = _console()
    if not now:
        out.print(f"run {run_id} has no tags", highlight=False)
    for key, value in now.items():
        out.print(f"{run_id}  {key}={value}", markup=False, highlight=False)


@app.command()
def reproduce(
    run_ref: Annotated[
        str,
        typer.Argument(
            metavar="RUN_OR_MANIFEST", help="Run id (or unique prefix), or a manifest .json file."
        ),
    ],
    allow_data_change: Annotated[
        bool, typer.Option("--allow-data-change", help="Rerun even though a data file changed.")
    ] = False,
    at_commit: Annotated[
        bool,
        typer.Option(
            "--at-commit",
            help="Rebuild in a temporary git worktree at the recorded commit, with the recorded uncommitted diff applied.",
        ),
    ] = False,
    rtol: Annotated[
        float | None,
        typer.Option(
            "--rtol", help="Relative tolerance for the 'tolerance' verdict (default 1e-6)."
        ),
    ] = None,
    atol: Annotated[
        float | None,
        typer.Option(
            "--atol", help="Absolute tolerance for the 'tolerance' verdict (default 1e-9)."
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 unless the reproduction is bitwise.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the report as JSON (verdict, first_divergent_step, differences, ...).",
        ),
    ] = False,
) -> None:
    """Rebuild a run from its manifest alone and verify it: bitwise, within tolerance, or failed (exit 1)."""
    from seedline.core.errors import SeedlineError
    from seedline.workflow.reproduce import DEFAULT_ATOL, DEFAULT_RTOL, load_manifest
    from seedline.workflow.reproduce import reproduce as reproduce_run

    try:
        store = _store_if_any()
        original = load_manifest(run_ref, store)
        if original.spec.get("kind") == "script":
            _reproduce_script(
                original.run_id, store, rtol, atol, allow_data_change, strict, as_json
            )
            return
        if original.seeds is not None:
            _reexec_with_hash_seed(original.seeds.hash_seed.get("PYTHONHASHSEED"))
        report = reproduce_run(
            run_ref,
            store=store,
            allow_data_change=allow_data_change,
            at_commit=at_commit,
            rtol=DEFAULT_RTOL if rtol is None else rtol,
            atol=DEFAULT_ATOL if atol is None else atol,
        )
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(report.to_dict())
    else:
        from seedline.cli.render import render_reproduction

        render_reproduction(_console(), report)
    if report.verdict == "failed" or (strict and report.verdict != "bitwise"):
        raise typer.Exit(1)


def _reproduce_script(
    run_id: str,
    store: Any,
    rtol: float | None,
    atol: float | None,
    allow_data_change: bool,
    strict: bool,
    as_json: bool,
) -> None:
    """A ``seedline exec`` run: re-run its script in a copy of the project, compare the outputs."""
    from seedline.cli.exec_cmd import render_script_reproduction
    from seedline.workflow.reproduce import DEFAULT_ATOL, DEFAULT_RTOL
    from seedline.workflow.scripts import reproduce_script

    report = reproduce_script(
        run_id,
        store=store,
        rtol=DEFAULT_RTOL if rtol is None else rtol,
        atol=DEFAULT_ATOL if atol is None else atol,
        allow_data_change=allow_data_change,
        quiet=as_json,
    )
    if as_json:
        _echo_json(report.to_dict())
    else:
        render_script_reproduction(_console(), report)
    if report.verdict == "failed" or (strict and report.verdict != "bitwise"):
        raise typer.Exit(1)


@app.command()
def diff(
    run_a: Annotated[
        str, typer.Argument(metavar="RUN_A", help="Run id/prefix or manifest .json file.")
    ],
    run_b: Annotated[
        str, typer.Argument(metavar="RUN_B", help="Run id/prefix or manifest .json file.")
    ],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print differences, first_divergent_step and metrics as JSON."),
    ] = False,
) -> None:
    """Explain why two runs differ: data, params, seeds, code, environment, settings, platform; then steps and metrics."""
    from seedline.core.errors import SeedlineError
    from seedline.workflow.compare import diff_manifests
    from seedline.workflow.reproduce import load_manifest

    try:
        store = _store_if_any()
        report = diff_manifests(load_manifest(run_a, store), load_manifest(run_b, store))
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(report.to_dict())
        return
    from seedline.cli.render import render_diff

    render_diff(_console(), report)


cache_cmds.register(app)
sweep_cmds.register(app)
app.command("check")(check_cmd)
app.command("inspect")(inspect_cmd)
registry_cmds.register(app)
ui_cmds.register(app)
remote_cmds.register(app)


def main() -> None:
    """Console-script entry point."""
    global _ENTRYPOINT
    _ENTRYPOINT = True
    command = typer.main.get_command(app)
    plain_placeholders(command)
    command()


if __name__ == "__main__":  # pragma: no cover
    main()
