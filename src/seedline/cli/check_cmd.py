"""``seedline check``: audit a pipeline for nondeterminism, shown as a table or printed as JSON.

Registered in ``cli/main.py`` with ``app.command("check")(check_cmd)``. Only typer and the
standard library are imported here at module level, so ``seedline --help`` stays fast;
the check itself (``seedline.workflow.check``) is imported when the command runs.
"""

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

_COLOURS = {
    "deterministic": "green",
    "thread-count sensitive": "yellow",
    "hash-seed sensitive": "magenta",
    "nondeterministic": "bold red",
}


def check_cmd(
    spec: Annotated[
        Path, typer.Argument(help="Spec file, or a folder holding seedline.yaml.")
    ] = Path("seedline.yaml"),
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            min=1,
            help="Fit on this many rows of the training split (a random subset seeded from the spec).",
        ),
    ] = 1000,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: spec, sample_rows, steps, hygiene, comparisons, seconds.",
        ),
    ] = False,
    api: Annotated[
        bool,
        typer.Option(
            "--api",
            help="Instead: run scikit-learn's estimator checks on the spec's project-local classes and explain each violation.",
        ),
    ] = False,
) -> None:
    """Find nondeterminism before it bites: refit, other hash seeds, thread counts and n_jobs.

    Each step gets a verdict (deterministic, hash-seed sensitive, thread-count sensitive, nondeterministic) and advice; hygiene findings follow. Exit status 1 when a step is nondeterministic, 2 for a spec or data error, else 0.
    """
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import PipelineError, SeedlineError

    if api:
        _api_check(spec, as_json)
        return
    try:
        from seedline.workflow.check import check

        # stdout carries the report alone: what the pipeline's steps print goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            if as_json or not sys.stderr.isatty():
                report = check(spec, sample=sample)
            else:
                report = _check_with_progress(spec, sample, _console(stderr=True))
    except PipelineError as exc:
        _fail(exc, code=1)
    except SeedlineError as exc:
        _fail(exc)
    from seedline.workflow.browse import record_check

    try:
        report_id: str | None = record_check(report, spec)
    except SeedlineError as exc:  # the audit still stands when the store cannot take it
        _console(stderr=True).print(f"[yellow]warning:[/] report not stored: {exc.message}")
        report_id = None
    if as_json:
        _echo_json(report.to_dict())
    else:
        _render(_console(), report)
        if report_id:
            _console().print(f"stored as check report {report_id} ('seedline ui' shows it)")
    if report.nondeterministic:
        raise typer.Exit(1)


def _check_with_progress(spec: Path, sample: int, console: Any) -> Any:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from seedline.workflow.check import check

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(msg: str, i: int, n: int) -> None:
            bar.update(task, description=msg, completed=i, total=n)

        return check(spec, sample=sample, progress=update)


def _short_class(cls: str) -> str:
    # sklearn's private module paths say nothing to a reader; user classes keep theirs
    return cls.rsplit(".", 1)[-1] if cls.startswith("sklearn.") else cls


def _render(out: Any, report: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    out.print(
        f"check [bold]{escape(report.spec)}[/] on {report.sample_rows} of {report.train_rows} "
        f"training rows ({report.seconds:.1f}s)"
    )
    t = Table(header_style="bold", show_lines=True)
    t.add_column("step")
    t.add_column("class")
    t.add_column("verdict")
    t.add_column("why")
    t.add_column("what to do")
    for s in report.steps:
        colour = _COLOURS.get(s.verdict, "white")
        t.add_row(
            escape(s.name),
            escape(_short_class(s.cls)),
            f"[{colour}]{s.verdict}[/]",
            escape("\n".join(s.reasons)),
            "-" if s.verdict == "deterministic" else escape(s.advice.replace(" | ", "\n")),
        )
    out.print(t)
    for c in report.comparisons.values():
        state = f"[dim]skipped: {escape(c.skipped)}[/]" if c.skipped else "compared"
        out.print(f"  {c.name:<10} {escape(c.a)} vs {escape(c.b)}: {state}")
    if report.hygiene:
        h = Table(header_style="bold", title="hygiene", title_justify="left", show_lines=True)
        h.add_column("kind")
        h.add_column("finding")
        h.add_column("what to do")
        for f in report.hygiene:
            h.add_row(escape(f.kind), escape(f.message), escape(f.advice))
        out.print(h)
    else:
        out.print("hygiene: nothing to report")
    counts: dict[str, int] = {}
    for s in report.steps:
        counts[s.verdict] = counts.get(s.verdict, 0) + 1
    summary = ", ".join(
        f"[{_COLOURS.get(v, 'white')}]{n} {v}[/]" for v, n in sorted(counts.items())
    )
    out.print(f"{summary}; {len(report.hygiene)} hygiene finding(s)")
    if report.nondeterministic:
        out.print("[bold red]nondeterministic steps found[/]: exit status 1")


def _api_check(spec: Path, as_json: bool) -> None:
    from rich.markup import escape

    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError

    try:
        from seedline.workflow.api_check import api_check

        with contextlib.redirect_stdout(sys.stderr):
            report = api_check(spec)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(report.to_dict())
    else:
        out = _console()
        if not report.classes:
            out.print(
                f"check --api {escape(report.spec)}: the spec uses no project-local class; "
                "scikit-learn's own classes pass its checks"
            )
        for c in report.classes:
            state = (
                "[green]follows the estimator API[/]"
                if not c.violations
                else f"[bold red]{len(c.violations)} violation(s)[/]"
            )
            out.print(
                f"[bold]{escape(c.cls)}[/] (step {escape(c.step)}): {state}; "
                f"{c.passed} checks passed, {c.skipped} skipped"
            )
            for v in c.violations:
                out.print(f"  [red]✗[/] {escape(v.meaning)}")
                out.print(f"      [dim]{escape(v.check)}: {escape(v.detail)}[/]")
        out.print(
            f"{report.violations} violation(s) in {len(report.classes)} class(es) ({report.seconds:.1f}s)"
        )
    if report.violations:
        raise typer.Exit(1)
