"""``seedline push|pull|fsck|gc``: move runs between stores, verify a store, reclaim leftovers."""

import re
import sys
from typing import Annotated, Any

import typer

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(app: typer.Typer) -> None:
    app.command("push")(push)
    app.command("pull")(pull)
    app.command("fsck")(fsck)
    app.command("gc")(gc)


def parse_age(text: str) -> float:
    """'90' or '90s' -> 90.0; '30m', '1h', '2d'."""
    m = _AGE.match(text)
    if not m:
        raise typer.BadParameter(f"expected an age such as 0, 30m, 1h or 2d, got {text!r}")
    return float(m.group(1)) * _AGE_UNITS[m.group(2)]


def _human(n: float) -> str:
    from seedline.cli.render import human_size

    return human_size(n)


def _transfer(
    direction: str,
    remote: str,
    items: list[str],
    everything: bool,
    move_aliases: bool,
    as_json: bool,
    check_objects: bool = False,
) -> None:
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.transfer import open_remote, selection_from_items, transfer

    try:
        local = _local_store(create=direction == "pull")
        other = open_remote(remote, local.project_root)
        src, dst = (local, other) if direction == "push" else (other, local)
        selection = selection_from_items(src, items, everything=everything or not items)
        if as_json or not sys.stderr.isatty():
            report = transfer(
                src, dst, selection, move_aliases=move_aliases, check_objects=check_objects
            )
        else:
            report = _with_progress(direction, src, dst, selection, move_aliases, check_objects)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(report.to_dict())
    else:
        out = _console()
        verb = "pushed" if direction == "push" else "pulled"
        out.print(_summary(verb, report))
        for s in report.skipped:
            out.print(f"[yellow]skipped[/] run {s['run']}: {s['reason']}")
        for c in report.conflicts:
            out.print(f"[red]conflict[/] {c['model']}: {c['reason']}")
    if report.conflicts:
        raise typer.Exit(1)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _summary(verb: str, report: Any) -> str:
    """'pushed 1 run, 1 model version, 1 alias: 5 objects (4.9 MiB) copied, 2 already there (0.70 s)'."""
    parts = [
        _count(len(items), what)
        for items, what in (
            (report.runs, "run"),
            (report.sweeps, "sweep"),
            (report.models, "model version"),
            (report.aliases, "alias"),
        )
        if items
    ]
    there = f"{_count(report.already_there, 'run')} already there" if report.already_there else ""
    if report.tags_set:
        parts.append(_count(report.tags_set, "tag"))
    if not parts and report.objects_copied:
        parts = ["the missing objects of runs already there"]
    if not parts:
        return f"nothing to copy{': ' + there if there else ''} ({report.seconds:.2f} s)"
    present = f", {report.objects_present} already there" if report.objects_present else ""
    return (
        f"{verb} {', '.join(parts)}: {_count(report.objects_copied, 'object')} "
        f"({_human(report.bytes_copied)}) copied{present}"
        + (f"; {there}" if there else "")
        + f" ({report.seconds:.2f} s)"
    )


def _local_store(*, create: bool) -> Any:
    """This project's store; a pull into a fresh clone (a spec here, no store yet) creates it."""
    from pathlib import Path

    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store

    try:
        return Store.find()
    except SeedlineError:
        # the spec module (pydantic models, YAML) only when there is no store yet
        from seedline.core.spec import SPEC_FILENAME

        if create and Path(SPEC_FILENAME).is_file():
            return Store.open(".")
        raise


def _with_progress(
    direction: str, src: Any, dst: Any, selection: Any, move_aliases: bool, check_objects: bool
) -> Any:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from seedline.cli.main import _console
    from seedline.records.transfer import transfer

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(f"{direction}ing", total=None)

        def update(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{direction}ing {what}")

        return transfer(
            src,
            dst,
            selection,
            progress=update,
            move_aliases=move_aliases,
            check_objects=check_objects,
        )


_REMOTE_HELP = "A remote declared in seedline.toml ([remotes.NAME]), or a folder (a project, or a store folder of its own)."
_ITEMS_HELP = (
    "Runs (id or prefix), sweeps (id) and models (NAME, NAME@3, NAME@alias); none means everything."
)


def push(
    remote: Annotated[str, typer.Argument(help=_REMOTE_HELP)],
    items: Annotated[
        list[str] | None, typer.Argument(metavar="[ITEM]...", help=_ITEMS_HELP)
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every run, sweep and model.")] = False,
    move_aliases: Annotated[
        bool,
        typer.Option("--move-aliases", help="Move an alias the remote points at another version."),
    ] = False,
    check_objects: Annotated[
        bool,
        typer.Option(
            "--check-objects",
            help="Also look up the objects of runs already there; copy any missing.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was copied as JSON.")] = False,
) -> None:
    """Copy runs, sweeps and registered models, with every object they need, to a remote store.

    Objects go first, then the records in one transaction: an interrupted push leaves no
    half-visible run, and running it again copies only what is still missing.
    """
    _transfer("push", remote, list(items or []), everything, move_aliases, as_json, check_objects)


def pull(
    remote: Annotated[str, typer.Argument(help=_REMOTE_HELP)],
    items: Annotated[
        list[str] | None, typer.Argument(metavar="[ITEM]...", help=_ITEMS_HELP)
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every run, sweep and model.")] = False,
    move_aliases: Annotated[
        bool,
        typer.Option(
            "--move-aliases", help="Move a local alias the remote points at another version."
        ),
    ] = False,
    check_objects: Annotated[
        bool,
        typer.Option(
            "--check-objects",
            help="Also look up the objects of runs already here; copy any missing (after fsck --repair).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was copied as JSON.")] = False,
) -> None:
    """Copy runs, sweeps and registered models, with every object they need, from a remote store."""
    _transfer("pull", remote, list(items or []), everything, move_aliases, as_json, check_objects)


def fsck(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Move corrupt objects aside to quarantine/ in the object store (objects/quarantine/, or PREFIX/quarantine/ on S3); never deleted.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-hash every object and check every run, model and cache entry against the objects it names; exit 1 on a problem."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store
    from seedline.workflow.fsck import fsck as check_store

    try:
        store = Store.find()
        if as_json or not sys.stderr.isatty():
            report = check_store(store, repair=repair)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            with Progress(
                TextColumn("verifying objects"),
                BarColumn(),
                MofNCompleteColumn(),
                console=_console(stderr=True),
                transient=True,
            ) as bar:
                task = bar.add_task("fsck", total=None)
                report = check_store(
                    store,
                    repair=repair,
                    progress=lambda i, n, _b: bar.update(task, completed=i, total=n),
                )
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(report.to_dict())
    else:
        out = _console()
        rate = report.bytes / report.seconds / 1e9 if report.seconds else 0.0
        out.print(
            f"checked {_count(report.objects, 'object')} ({_human(report.bytes)}) in {report.seconds:.2f} s ({rate:.2f} GB/s): "
            + (
                "[green]no problems[/]"
                if report.ok
                else f"[red]{_count(len(report.problems), 'problem')}[/]"
            )
        )
        for p in report.problems:
            who = f" needed by {', '.join(p.needed_by)}" if p.needed_by else ""
            out.print(f"  [red]{p.kind}[/] {p.object or ''} {p.detail}{who}")
        for q in report.quarantined:
            out.print(f"  [yellow]quarantined[/] {q['object']} -> {q['moved_to']}")
        if not report.ok and not repair and any(p.kind == "corrupt" for p in report.problems):
            out.print(
                "hint: 'seedline fsck --repair' moves corrupt objects aside, keeping their bytes"
            )
    if not report.ok:
        raise typer.Exit(1)


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    min_age: Annotated[
        str,
        typer.Option(
            "--min-age",
            help="Keep anything younger than this (a live process may still need it): 0, 30m, 1h, 2d.",
        ),
    ] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Reclaim partial objects and outputs left by killed processes, and objects nothing references."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store
    from seedline.workflow.reclaim import gc as reclaim

    try:
        report = reclaim(Store.find(), dry_run=dry_run, min_age_s=parse_age(min_age))
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(report.to_dict())
        return
    out = _console()
    verb = "would remove" if dry_run else "removed"
    out.print(
        f"{verb} {_count(len(report.partial_objects), 'partial object')}, "
        f"{_count(len(report.partial_outputs), 'partial output')}, "
        f"{_count(len(report.orphans), 'orphan object')} ({_human(report.bytes)})"
        + (f"; kept {report.kept_young} younger than {min_age}" if report.kept_young else "")
    )
    for path in [*report.partial_objects, *report.partial_outputs]:
        out.print(f"  {path}")
    for bad in report.unreadable_manifests:
        out.print(
            f"[yellow]warning:[/] run {bad['run']}'s manifest cannot be read ({bad['error']}): "
            "orphan objects were kept; 'seedline fsck' says more"
        )
