"""``seedline ui`` and ``seedline report``: browse the store in a browser, or write one HTML file."""

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_cmd)
    app.command("report")(report_cmd)


def ui_cmd(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; anything but loopback needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 5000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SEEDLINE_TOKEN",
            help="Token every request must carry (browsers: open /?token=TOKEN once; env SEEDLINE_TOKEN).",
        ),
    ] = None,
) -> None:
    """Browse runs, compare them, and trace models to their data, in a web page on loopback."""
    from seedline.cli.main import _console, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store
    from seedline.serving.app import check_bind
    from seedline.ui.app import serve_ui

    try:
        check_bind(host, token)
        store = Store.find()
    except SeedlineError as exc:
        _fail(exc)
    where = f"[{host}]" if ":" in host else host
    _console(stderr=True).print(
        f"seedline ui on http://{where}:{port}/ (store {store.root}); Ctrl+C stops it"
    )
    serve_ui(store, host=host, port=port, token=token or None)


def report_cmd(
    runs: Annotated[
        list[str],
        typer.Argument(metavar="RUN [RUN2]", help="A run to show, or two runs to compare."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
) -> None:
    """Write one self-contained HTML file (opens offline): a run's page, or two runs compared."""
    from seedline.cli.main import _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store
    from seedline.ui.app import report_html

    try:
        if not 1 <= len(runs) <= 2:
            raise SeedlineError(
                f"report takes one run or two runs to compare; got {len(runs)}",
                hint="seedline report RUN -o report.html, or seedline report RUN_A RUN_B",
            )
        html = report_html(Store.find(), runs)
    except SeedlineError as exc:
        _fail(exc)
    tmp = output.with_name(f".{output.name}.part")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(output)  # a reader never sees half a report
    typer.echo(f"wrote {output} ({len(html.encode()) / 1e6:.1f} MB)")
