"""``seedline sweep``, ``seedline sweeps`` and ``seedline promote``: searches over spec values."""

import json
from pathlib import Path
from typing import Annotated

import typer

EXECUTOR_HELP = "Where tasks run: serial, processes or dask."


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
    app.command("sweeps")(sweeps_cmd)
    app.command("promote")(promote_cmd)


def sweep_cmd(
    spec: Annotated[
        Path, typer.Argument(help="Spec file, or a folder holding seedline.yaml.")
    ] = Path("seedline.yaml"),
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Values to try: path.to.key=v1,v2,... (repeatable; or a 'sweep:' section in the spec).",
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option("--search", help="grid (default), random, or tpe (Optuna, optional extra)."),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", "-n", help="Number of trials for random and tpe search."),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric to rank by (default: the spec's first).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a spec value for every trial.")
    ] = None,
    executor: Annotated[str, typer.Option("--executor", help=EXECUTOR_HELP)] = "serial",
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (processes, dask).")
    ] = 1,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Dask scheduler, tcp://HOST:PORT (default: start a LocalCluster)."
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Fit every step of every trial.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the sweep (trials, best) as JSON.")
    ] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Tag every trial: KEY=VALUE (repeatable; not in the manifest)."),
    ] = None,
) -> None:
    """Run a grid, random or TPE search; every trial is a run linked to the sweep."""
    from seedline.cli.main import _console, _echo_json, _fail, _pin_hash_seed
    from seedline.core.errors import SeedlineError
    from seedline.records.tags import parse_tags
    from seedline.workflow.sweep import parse_param, sweep

    try:
        tags = parse_tags(tag or [])
        _pin_hash_seed(spec, list(set_ or []))
        params = dict(parse_param(p) for p in param or [])
        report = sweep(
            spec,
            params or None,
            search=search,
            trials=trials,
            metric=metric,
            overrides=list(set_ or []),
            executor=executor,
            workers=workers,
            address=address,
            use_cache=not no_cache,
            tags=tags,
        )
    except SeedlineError as exc:
        _fail(exc)
    all_failed = bool(report.trials) and len(report.failed) == len(report.trials)
    if as_json:
        _echo_json(report.to_dict())
        if all_failed:
            raise typer.Exit(1)
        return
    from rich.table import Table

    out = _console()
    out.print(
        f"sweep [bold]{report.sweep_id}[/]: {len(report.trials)} trials ({report.search}) on {report.settings['executor']} x{report.settings['workers']}, ranked by {report.metric}"
    )
    t = Table(header_style="bold")
    for col in ("trial", "run", "status", report.metric, "overrides"):
        t.add_column(col)
    ranked = sorted(report.trials, key=lambda r: -(r["metrics"].get(report.metric, float("-inf"))))
    best = report.best
    for r in ranked:
        mark = " *" if best is not None and r["run_id"] == best["run_id"] else ""
        t.add_row(
            r["trial"],
            r["run_id"] + mark,
            r["status"],
            f"{r['metrics'].get(report.metric, float('nan')):.6f}",
            " ".join(r["overrides"]),
        )
    out.print(t)
    for warning in report.warnings:
        _console(stderr=True).print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    if best is not None:
        out.print(f"best: {best['run_id']}  ->  seedline promote {report.sweep_id} --name MODEL")
    failures = report.failure_summary()
    if failures:
        err = _console(stderr=True)
        label = "[bold red]error:[/]" if all_failed else "[yellow]warning:[/]"
        err.print(f"{label} {failures}", highlight=False)
        first = report.failed[0]
        err.print(
            f"[yellow]hint:[/] 'seedline show {first['run_id']}' has the traceback",
            highlight=False,
        )
    if all_failed:
        raise typer.Exit(1)


def sweeps_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the sweeps in this project's store."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.sweeps import list_sweeps
    from seedline.records.tracking import Store

    try:
        rows = list_sweeps(Store.find())
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(rows)
        return
    from seedline.cli.render import render_sweeps

    render_sweeps(_console(), rows)


def promote_cmd(
    sweep_ref: Annotated[str, typer.Argument(metavar="SWEEP", help="Sweep id or unique prefix.")],
    name: Annotated[
        str, typer.Option("--name", help="Registry name to register the best trial's model under.")
    ],
    alias: Annotated[
        list[str] | None,
        typer.Option("--alias", "-a", help="Point this alias at the new version (repeatable)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the new model version as JSON.")
    ] = False,
) -> None:
    """Register the best trial of a sweep as the next version of a model."""
    from seedline.cli.main import _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run
    from seedline.workflow.sweep import sweep_info

    try:
        store = Store.find()
        info = sweep_info(store, sweep_ref)
        if not info["best_run"]:
            raise SeedlineError(f"sweep {info['sweep_id']} has no successful trial to promote")
        version = register_run(
            store,
            info["best_run"],
            name,
            description=f"best of sweep {info['sweep_id']} by {info['metric']}",
        )
        registry = Registry(store)
        for a in alias or []:
            registry.set_alias(name, a, version.version)
    except SeedlineError as exc:
        _fail(exc)
    payload = {
        "sweep_id": info["sweep_id"],
        "run_id": info["best_run"],
        "name": name,
        "version": version.version,
        "aliases": sorted(alias or []),
    }
    aliases = "".join(f"  @{a}" for a in sorted(alias or []))
    typer.echo(
        json.dumps(payload)
        if as_json
        else f"registered {name}@{version.version} from run {info['best_run']} (best of sweep {info['sweep_id']} by {info['metric']}){aliases}"
    )
