"""``seedline inspect``: look inside the steps of a run, or compare one step's output between two runs.

Registered in ``cli/main.py`` with ``app.command("inspect")(inspect_cmd)``; the work is
done by ``seedline.workflow.inspection``, imported when the command runs.
"""

import contextlib
import sys
from typing import Annotated, Any

import typer


def inspect_cmd(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix).")],
    other: Annotated[
        str | None,
        typer.Argument(help="A second run: compare the output of --step between the two."),
    ] = None,
    step: Annotated[
        str | None,
        typer.Option("--step", help="Only this step (required when comparing two runs)."),
    ] = None,
    rows: Annotated[
        int, typer.Option("--rows", min=0, help="How many first rows of each output to show.")
    ] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """What each step did: output shape, feature names, dtypes, missing values, statistics, first rows, fitted attributes.

    Outputs are recomputed from the run's stored fitted model on its training rows and
    checked against the fingerprints the run recorded. With a second run and --step, the
    step's outputs are compared cell by cell and the first differing column and row named.
    Exit status 1 when the compared outputs differ, 2 on an error.
    """
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError

    try:
        from seedline.records.tracking import Store
        from seedline.workflow.inspection import compare_step, inspect_run

        store = Store.find()

        with contextlib.redirect_stdout(sys.stderr):
            if other is not None:
                if step is None:
                    raise SeedlineError(
                        "comparing two runs needs --step NAME: the step whose outputs to compare",
                        hint=f"e.g. seedline inspect {run} {other} --step prep",
                    )
                diff = compare_step(store, run, other, step)
            else:
                views = inspect_run(store, run, step=step, rows=rows)
    except SeedlineError as exc:
        _fail(exc)
    out = _console()
    if other is not None:
        if as_json:
            _echo_json(diff.to_dict())
        else:
            _render_difference(out, diff)
        raise typer.Exit(0 if diff.identical else 1)
    if as_json:
        _echo_json({"steps": [v.to_dict() for v in views]})
        return
    for view in views:
        _render_view(out, view)


def _render_view(out: Any, view: Any) -> None:
    from rich.table import Table

    from seedline.cli.render import short

    match = {
        True: "[green]matches the run's record[/]",
        False: "[red]differs from the run's record[/]",
    }
    out.print(f"\n[bold]step {view.name}[/]  {view.cls}")
    out.print(f"  fitted  {short(view.fitted, 24)}")
    if view.output is not None:
        out.print(
            f"  output  {short(view.output, 24)}  {match.get(view.output_matches, 'nothing recorded to compare')}"
        )
    out.print(f"  shape   {' x '.join(str(s) for s in view.shape or [])}")
    for note in view.notes:
        out.print(f"  [yellow]note:[/] {note}")
    cols = Table(title=None, show_edge=False, pad_edge=False)
    for header in ("column", "dtype", "missing", "mean", "std", "min", "max"):
        cols.add_column(header, justify="left" if header in ("column", "dtype") else "right")
    shown = view.columns[:30]
    for c in shown:
        st = view.stats.get(c, {})
        cols.add_row(
            c,
            view.dtypes.get(c, ""),
            str(view.missing.get(c, 0)),
            *(_num(st.get(k)) for k in ("mean", "std", "min", "max")),
        )
    out.print(cols)
    if len(view.columns) > len(shown):
        out.print(f"  … and {len(view.columns) - len(shown)} more columns (--json lists them all)")
    if view.head:
        head = Table(show_edge=False, pad_edge=False, title=f"first {len(view.head)} rows")
        for c in shown:
            head.add_column(c, justify="right")
        for row in view.head:
            head.add_row(*(_num(v) for v in row[: len(shown)]))
        out.print(head)
    if view.attributes:
        out.print("  fitted attributes:")
        for k, v in view.attributes.items():
            out.print(f"    {k} = {v}", markup=False)


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _render_difference(out: Any, d: Any) -> None:
    if d.identical:
        out.print(
            f"step {d.step}: outputs of {d.a} and {d.b} are identical ({' x '.join(map(str, d.shape_a or []))})"
        )
        return
    out.print(f"[bold]step {d.step}[/]: outputs of {d.a} and {d.b} differ")
    if d.shape_a != d.shape_b:
        out.print(f"  shape {d.shape_a} -> {d.shape_b}")
    if d.column is not None:
        out.print(
            f"  first difference: column {d.column}, row {d.row}: {_num(d.value_a)} -> {_num(d.value_b)}"
        )
    for c in d.columns_only_in_a:
        out.print(f"  column only in {d.a}: {c}")
    for c in d.columns_only_in_b:
        out.print(f"  column only in {d.b}: {c}")
    if d.differing_cells:
        out.print(
            "  differing cells: "
            + ", ".join(
                f"{c} {n}" for c, n in sorted(d.differing_cells.items(), key=lambda x: -x[1])
            )
        )
