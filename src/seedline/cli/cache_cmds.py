"""``seedline cache ls|du|prune``: inspect and prune the step cache."""

import json
from typing import Annotated

import typer

cache_app = typer.Typer(help="Inspect and prune the step cache.", no_args_is_help=True)

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1000,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1000**3,
    "GIB": 1024**3,
}


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


def parse_size(text: str) -> int:
    """'500MB' -> 500000000; '2GiB' -> 2147483648."""
    t = text.strip().upper()
    num = t.rstrip("KMGIB")
    unit = t[len(num) :]
    if unit not in _UNITS or not num.replace(".", "", 1).isdigit():
        raise typer.BadParameter(f"expected a size such as 500MB or 2GiB, got {text!r}")
    return int(float(num) * _UNITS[unit])


@cache_app.command("ls")
def cache_ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List cache entries, most recently used first."""
    from seedline.cli.main import _console, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.cache_index import list_entries
    from seedline.records.tracking import Store

    try:
        entries = list_entries(Store.find())
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    from seedline.cli.render import render_cache_entries

    render_cache_entries(_console(), entries)


@cache_app.command("du")
def cache_du(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """How many entries the cache holds, and their size."""
    from seedline.cli.main import _fail
    from seedline.cli.render import human_size
    from seedline.core.errors import SeedlineError
    from seedline.records.cache_index import usage
    from seedline.records.tracking import Store

    try:
        u = usage(Store.find())
    except SeedlineError as exc:
        _fail(exc)
    typer.echo(json.dumps(u) if as_json else f"{u['entries']} entries, {human_size(u['bytes'])}")


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", help="Remove entries not used for this many days."),
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size",
            help="Remove least recently used entries until the cache fits, e.g. 500MB.",
        ),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Remove every cache entry.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Remove cache entries by age or size; objects a stored run or registered model needs are kept."""
    from seedline.cli.main import _fail
    from seedline.cli.render import human_size
    from seedline.core.errors import SeedlineError
    from seedline.execution.cache import prune
    from seedline.records.tracking import Store

    if older_than is None and max_size is None and not everything:
        _fail(
            SeedlineError(
                "say what to prune", hint="use --older-than DAYS, --max-size SIZE or --all"
            )
        )
    try:
        done = prune(
            Store.find(),
            older_than_days=older_than,
            max_bytes=parse_size(max_size) if max_size else None,
            everything=everything,
        )
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(done))
    else:
        typer.echo(
            f"removed {done['entries']} entries ({human_size(done['bytes'])}), {done['objects']} objects"
        )
    for bad in done["unreadable_manifests"]:
        typer.echo(
            f"warning: skipped run {bad['run']}: its manifest {bad['object'] or '(none)'} cannot be read "
            f"({bad['error']}); 'seedline fsck' checks the store",
            err=True,
        )
