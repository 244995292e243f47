"""``seedline exec``: run a training script under the seed plan and record it; the script-run reproduction report.

The script's own arguments pass through untouched; seedline's options (``--outputs``,
``--data``, ``--seed``, ``--threads``, ``--json``, ``--quiet``) are recognised anywhere
before a ``--``, after which everything goes to the script.
"""

from typing import Any

import typer

_FLAGS = {"--json", "--quiet"}
_SINGLE = {"--seed", "--threads"}
_MULTI = {"--outputs", "--data"}
USAGE = "seedline exec SCRIPT.py [ARGS ...] --outputs FILE [FILE ...] [--data FILE ...] [--seed N] [--threads N] [--json] [-- ARGS ...]"


def parse_exec_args(tokens: list[str]) -> dict[str, Any]:
    """Split the command line into the script, its arguments and seedline's options."""
    opts: dict[str, Any] = {
        "outputs": [],
        "data": [],
        "seed": 0,
        "threads": 1,
        "json": False,
        "quiet": False,
    }
    script: str | None = None
    args: list[str] = []
    i = 0
    current: str | None = None
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            args.extend(tokens[i + 1 :])
            break
        name, eq, value = tok.partition("=")
        if name in _FLAGS:
            opts[name[2:]] = True
            current = None
        elif name in _SINGLE:
            if not eq:
                i += 1
                if i >= len(tokens):
                    raise typer.BadParameter(f"{name} needs a value", param_hint=USAGE)
                value = tokens[i]
            try:
                opts[name[2:]] = int(value)
            except ValueError:
                raise typer.BadParameter(
                    f"{name} must be an int; got {value!r}", param_hint=USAGE
                ) from None
            current = None
        elif name in _MULTI:
            current = name[2:]
            if eq:
                opts[current].append(value)
        elif current is not None and not tok.startswith("-"):
            opts[current].append(tok)
        elif script is None and not tok.startswith("-"):
            script = tok
        else:
            current = None
            args.append(tok)
        i += 1
    if script is None:
        raise typer.BadParameter("no script given", param_hint=USAGE)
    return {"script": script, "args": args, **opts}


def render_exec(console: Any, run: Any) -> None:
    status = "[green]succeeded[/]" if run.status == "succeeded" else "[red]failed[/]"
    console.print(
        f"run [bold]{run.run_id}[/] {status} in {run.seconds:.1f} s (script exit code {run.returncode})"
    )
    for name, fp in run.outputs.items():
        console.print(f"  {name}  {fp}")
    error = (run.manifest.error or {}).get("message")
    if error:
        console.print(f"[red]{error}[/]")
    else:
        console.print(f"\nnext: [bold]seedline reproduce {run.run_id}[/]")


def render_script_reproduction(console: Any, report: Any) -> None:
    colour = {"bitwise": "green", "tolerance": "yellow"}.get(report.verdict, "red")
    console.print(
        f"reproduction of {report.original}: [bold {colour}]{report.verdict.upper()}[/]"
        + (f"  (new run {report.reproduction})" if report.reproduction else "")
    )
    for f in report.files:
        line = f"  {f['file']}: {f['verdict']}"
        if f.get("first_differing_tensor"):
            line += f", first differing tensor {f['first_differing_tensor']!r} ({f['differing_tensors']} differ)"
        dev = f.get("deviation")
        if dev:
            line += f", max abs deviation {dev['max_abs']:.3g}"
        console.print(line)
    if report.likely_cause:
        console.print(f"likely cause: {report.likely_cause}")
    for note in report.notes:
        console.print(f"note: {note}")


def exec_cmd(ctx: typer.Context) -> None:
    """Run a training script under the seed plan (PYTHONHASHSEED pinned, every framework seeded and made deterministic) and record it."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.workflow.scripts import exec_script

    try:
        opts = parse_exec_args(list(ctx.args))
    except typer.BadParameter as exc:
        _fail(exc)
    try:
        run = exec_script(
            opts["script"],
            opts["args"],
            outputs=opts["outputs"],
            data=opts["data"],
            seed=opts["seed"],
            threads=opts["threads"],
            quiet=opts["quiet"] or opts["json"],
        )
    except SeedlineError as exc:
        _fail(exc)
    if opts["json"]:
        _echo_json(run.summary())
    else:
        render_exec(_console(), run)
    if run.status != "succeeded":
        raise typer.Exit(1)
