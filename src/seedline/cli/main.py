"""The ``seedline`` command line: a thin layer over the Python API.

Only typer is imported at module level: ``seedline --help`` must start fast and never
import scikit-learn. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from seedline.cli import cache_cmds, registry_cmds, sweep_cmds
from seedline.cli.check_cmd import check_cmd
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
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output is read by people in logs and by tests: don't squeeze tables into 80 columns
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def _fail(exc: BaseException, code: int = 2) -> NoReturn:
    err = _console(stderr=True)
    err.print(
        f"[bold red]error:[/] {getattr(exc, 'message', str(exc))}", markup=True, highlight=False
    )
    hint = getattr(exc, "hint", None)
    if hint:
        err.print(f"[yellow]hint:[/] {hint}", markup=True, highlight=False)
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
    """Re-exec with PYTHONHASHSEED derived from the spec's seed, unless already so."""
    if not _ENTRYPOINT or os.environ.get(_PINNED_FLAG) == "1":
        return
    from seedline.core.seeding import SeedPlan
    from seedline.core.spec import load_spec

    spec = load_spec(spec_path, overrides)
    _reexec_with_hash_seed(str(SeedPlan(spec.seed).hash_seed()))


def _reexec_with_hash_seed(wanted: str | None) -> None:
    """Start this command again in an interpreter whose string hashing uses ``wanted``.

    The hash seed is read once, when the interpreter starts, so it can only be pinned by
    starting a new one. ``None`` (the original run was not pinned) changes nothing.
    """
    if not _ENTRYPOINT or wanted is None or os.environ.get(_PINNED_FLAG) == "1":
        return
    if os.environ.get("PYTHONHASHSEED") == wanted:
        return
    env = dict(os.environ, PYTHONHASHSEED=wanted, **{_PINNED_FLAG: "1"})
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
) -> None:
    """Fit and evaluate the pipeline, with every seed pinned, and record the run."""
    from seedline.core.errors import PipelineError, SeedlineError

    overrides = list(set_ or [])
    where: dict[str, Any] = {"executor": executor, "workers": workers, "address": address}
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
            typer.echo(json.dumps(exc.result.summary(), indent=2, sort_keys=True))
        _fail(exc, code=1)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result.summary(), indent=2, sort_keys=True))
        return
    from seedline.cli.render import render_run

    render_run(_console(), result.manifest)


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
) -> None:
    """List the runs in this project's store, newest first (or a sweep's trials, best first)."""
    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store

    try:
        store = Store.find()
        if sweep is not None:
            from seedline.workflow.sweep import sweep_info

            info = sweep_info(store, sweep)
            rows = store.list_runs(sweep=info["sweep_id"])
            metric = info["metric"]
            # ties go to the earlier trial, as the sweep's own 'best' does
            trial = {
                r.run_id: (store.manifest(r.run_id).sweep or {}).get("trial", "") for r in rows
            }
            rows.sort(
                key=lambda r: (
                    r.status != "succeeded",
                    -r.metrics.get(metric, float("-inf")),
                    trial[r.run_id],
                )
            )
            rows = rows[:limit]
        else:
            rows = store.list_runs(limit=limit)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True))
        return
    from seedline.cli.render import render_runs

    render_runs(_console(), rows)


@app.command()
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of it.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole manifest as JSON.")
    ] = False,
) -> None:
    """Show a run's manifest: spec, seeds, data, environment, per-step fingerprints, metrics."""
    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store

    try:
        manifest = Store.find().manifest(run_ref)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        typer.echo(manifest.to_json())
        return
    from seedline.cli.render import render_manifest

    render_manifest(_console(), manifest)


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
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        from seedline.cli.render import render_reproduction

        render_reproduction(_console(), report)
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
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str))
        return
    from seedline.cli.render import render_diff

    render_diff(_console(), report)


cache_cmds.register(app)
sweep_cmds.register(app)
app.command("check")(check_cmd)
app.command("inspect")(inspect_cmd)
registry_cmds.register(app)


def main() -> None:
    """Console-script entry point."""
    global _ENTRYPOINT
    _ENTRYPOINT = True
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
