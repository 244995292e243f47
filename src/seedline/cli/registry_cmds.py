"""``seedline register | models | alias | serve | predict | export``: the model registry and every way a model leaves seedline.

Only typer and the standard library are imported here at module level; each command
imports what it needs when it runs, so ``seedline --help`` stays fast.
"""

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

models_app = typer.Typer(
    help="List registered models, or show one version's lineage.",
    invoke_without_command=True,
    no_args_is_help=False,
)

_TRUST_HELP = "Load the model even if it holds types outside seedline's trusted list (logged)."
_EXPECT_HELP = (
    "Refuse the model unless it has this model fingerprint (model:...) or is the model of this "
    "registry reference or run: a bundle's own hashes cannot vouch for it."
)
_ALLOW_HELP = (
    "Go on even if the probe predictions do not match training time (logged in the registry)."
)


def register(app: typer.Typer) -> None:
    """Add the registry, serving, batch and export commands to the ``seedline`` app."""
    app.command("register")(register_cmd)
    app.add_typer(models_app, name="models")
    app.command("alias")(alias_cmd)
    app.command("serve")(serve_cmd)
    app.command("predict")(predict_cmd)
    app.command("export")(export_cmd)


def _echo_json(data: Any) -> None:
    _echo_json(data)


def _checked_model(
    ref: str,
    action: str,
    *,
    trust: bool,
    allow_mismatch: bool,
    quiet: bool,
    expect_fingerprint: str | None = None,
    source: Any = None,
) -> tuple[Any, Any, Any]:
    """(source, fitted model, parity report) after the parity gate; raises SeedlineError.

    ``source`` is the already resolved model source, when the caller needed it first.
    """
    from seedline.cli.main import _console
    from seedline.workflow.integrity import expected_fingerprint, verify_model_fingerprint
    from seedline.workflow.parity import check_parity, enforce
    from seedline.workflow.registration import resolve_source

    expected = expected_fingerprint(expect_fingerprint) if expect_fingerprint else None
    source = source if source is not None else resolve_source(ref)
    offending = source.untrusted_types()
    model = source.load(trust=trust)
    if expected is not None:
        verify_model_fingerprint(model, expected, source.ref)
    report = check_parity(model, source, action=action)
    if offending:
        report.batching["trusted_types_override"] = offending
    enforce(report, source, allow_mismatch=allow_mismatch)
    if not quiet:
        err = _console(stderr=True)
        if report.overridden:
            err.print(
                f"[bold yellow]warning:[/] parity check failed and was overridden (logged): {report.summary()}",
                highlight=False,
            )
        else:
            err.print(f"[green]parity[/] {source.ref}: {report.summary()}", highlight=False)
    return source, model, report


# -- registry -----------------------------------------------------------------------------------
def register_cmd(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of it.")],
    name: Annotated[
        str,
        typer.Option("--name", "-n", help="Model name; each registration adds the next version."),
    ],
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="A note kept with the version.")
    ] = None,
    alias: Annotated[
        list[str] | None,
        typer.Option("--alias", "-a", help="Point this alias at the new version (repeatable)."),
    ] = None,
    trust_local: Annotated[
        bool,
        typer.Option(
            "--trust-local/--no-trust-local",
            help="Record that this version may load the run's own project-local classes "
            "(from the sources the run stored, checked by hash) without --trust.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the new version as JSON.")] = False,
) -> None:
    """Register a run's model as the next version of NAME (its probe rows are stored for parity checks)."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run

    try:
        store = Store.find()
        version = register_run(
            store, run_ref, name, description=description, trust_local=trust_local
        )
        registry = Registry(store)
        for a in alias or []:
            registry.set_alias(name, a, version.version)
        version = registry.get(name, version.version)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(version.to_dict())
        return
    out = _console()
    out.print(
        f"registered [bold]{version.ref}[/] from run {version.run_id}"
        + (f"  aliases: {', '.join('@' + a for a in version.aliases)}" if version.aliases else ""),
        highlight=False,
    )
    if version.trusted_local:
        out.print(
            "trusts the run's own local classes (sources stored, checked by hash): "
            + ", ".join(version.trusted_local),
            highlight=False,
        )
    out.print(f"serve it: [bold]seedline serve {version.ref}[/]", highlight=False)


@models_app.callback()
def models_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List registered models: latest version, number of versions, aliases."""
    if ctx.invoked_subcommand is not None:
        return
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store

    try:
        rows = Registry(Store.find()).list_models()
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(rows)
        return
    from seedline.cli.render import render_models

    render_models(_console(), rows)


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(metavar="MODEL", help="NAME, NAME@VERSION or NAME@ALIAS.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the lineage as JSON.")] = False,
) -> None:
    """Show a version's lineage: run, data fingerprints, commit, environment, seeds, metrics, parity checks."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.tracking import Store
    from seedline.workflow.browse import model_lineage

    try:
        info = model_lineage(Store.find(), ref)
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(info)
        return
    out = _console()
    m, run, data, code, env, seeds = (
        info["model"],
        info["run"],
        info["data"],
        info["code"],
        info["environment"],
        info["seeds"],
    )
    out.print(
        f"[bold]{m['ref']}[/]"
        + (f"  aliases: {', '.join('@' + a for a in m['aliases'])}" if m["aliases"] else "")
        + f"  registered {m['created_at']}",
        highlight=False,
    )
    if m.get("description"):
        out.print(f"  {m['description']}", highlight=False)
    out.print(
        f"run         {run['id']}  spec {run['spec']}  created {run['created_at']}", highlight=False
    )
    for b in info["built_on"]:
        out.print(
            f"built on    step {b['step']} from {b['ref']}  (run {b['run_id']}"
            + (f", {b['model']}" if b["model"] else "")
            + f")  {b['fitted']}",
            highlight=False,
        )
    out.print(f"data        {data['table']}", highlight=False)
    for s in data["sources"]:
        out.print(
            f"  source    {s['uri']}  {s['fingerprint']}  ({s['rows']} rows)", highlight=False
        )
    out.print(
        f"code        commit {code['commit'] or '-'}"
        + ("  (uncommitted changes)" if code.get("dirty") else ""),
        highlight=False,
    )
    out.print(
        f"environment {env['fingerprint']}  Python {env['python']}  "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        highlight=False,
    )
    out.print(
        f"seeds       master {seeds['master']}  PYTHONHASHSEED {seeds['hash_seed']}  "
        + ", ".join(f"{k}={v}" for k, v in sorted(seeds["derived"].items())),
        highlight=False,
    )
    out.print(
        "metrics     " + "  ".join(f"{k} {v:.6g}" for k, v in sorted(info["metrics"].items())),
        highlight=False,
    )
    out.print(
        f"model       {info['fingerprints'].get('model')}\nprobe       {info['probe'].get('rows')} rows, predictions {info['probe'].get('predictions')}",
        highlight=False,
    )
    out.print(
        "versions    "
        + ", ".join(
            f"{v['version']}" + (f" (@{', @'.join(v['aliases'])})" if v["aliases"] else "")
            for v in info["versions"]
        ),
        highlight=False,
    )
    for c in info["parity_checks"][:5]:
        out.print(
            f"parity      {c['at']}  {c['action']}  {c['verdict']}"
            + ("  [yellow]OVERRIDDEN[/]" if c["overridden"] else ""),
            highlight=False,
        )


def alias_cmd(
    target: Annotated[str, typer.Argument(metavar="NAME@ALIAS", help="e.g. churn@production")],
    version: Annotated[
        int | None, typer.Argument(metavar="VERSION", help="The version the alias points at.")
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Point an alias (churn@production) at a version, or move it there; --delete removes it."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.records.registry import ModelRef, Registry, RegistryError
    from seedline.records.tracking import Store

    try:
        if target.partition("@")[2] == "latest":
            raise RegistryError(
                "'latest' cannot be an alias: NAME@latest always means the newest version",
                hint="choose another alias, e.g. production or staging",
            )
        ref = ModelRef.parse(target)
        if ref.alias is None:
            raise RegistryError(
                f"{target!r} names no alias",
                hint="write NAME@ALIAS, e.g. 'seedline alias churn@production 3'",
            )
        registry = Registry(Store.find())
        if delete:
            removed = registry.remove_alias(ref.name, ref.alias)
            result: dict[str, Any] = {
                "name": ref.name,
                "alias": ref.alias,
                "version": None,
                "previous": removed,
            }
        else:
            if version is None:
                raise RegistryError(
                    "which version should the alias point at?",
                    hint=f"seedline alias {target} VERSION",
                )
            before = registry.set_alias(ref.name, ref.alias, version)
            result = {"name": ref.name, "alias": ref.alias, "version": version, "previous": before}
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(result)
        return
    out = _console()
    if delete:
        out.print(f"removed {target} (it pointed at version {result['previous']})", highlight=False)
    elif result["previous"] is None:
        out.print(f"{target} -> version {version}", highlight=False)
    else:
        out.print(f"{target} moved: version {result['previous']} -> {version}", highlight=False)


# -- serving ------------------------------------------------------------------------------------
def serve_cmd(
    model_ref: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="NAME, NAME@VERSION, NAME@ALIAS, a run id, or a bundle folder."
        ),
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; anything but loopback needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-w", help="Worker processes (each loads the model and checks parity)."
        ),
    ] = 1,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SEEDLINE_TOKEN",
            help="Bearer token required on every endpoint but health (env SEEDLINE_TOKEN).",
        ),
    ] = None,
    trust: Annotated[bool, typer.Option("--trust", help=_TRUST_HELP)] = False,
    allow_parity_mismatch: Annotated[
        bool, typer.Option("--allow-parity-mismatch", help=_ALLOW_HELP)
    ] = False,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", help="Largest request body accepted (413 beyond).")
    ] = 16.0,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch", help="Most rows predicted in one call when requests are batched."
        ),
    ] = 256,
    no_batching: Annotated[
        bool, typer.Option("--no-batching", help="Predict each request on its own.")
    ] = False,
    no_access_log: Annotated[
        bool, typer.Option("--no-access-log", help="Do not write the JSON access log.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn and seedline log level.")
    ] = "info",
    expect_fingerprint: Annotated[
        str | None, typer.Option("--expect-fingerprint", help=_EXPECT_HELP)
    ] = None,
) -> None:
    """Serve a model over the Open Inference Protocol (V2) and MLflow's /invocations, after a parity self-check."""
    from seedline.cli.main import _fail
    from seedline.core.errors import SeedlineError
    from seedline.serving.app import ServeConfig, serve

    config = ServeConfig(
        ref=model_ref,
        project=os.getcwd(),
        token=token or None,
        trust=trust,
        allow_parity_mismatch=allow_parity_mismatch,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_batch_rows=max_batch,
        batching=not no_batching,
        access_log=not no_access_log,
        expect_fingerprint=expect_fingerprint,
    )
    try:
        serve(config, host=host, port=port, workers=workers, log_level=log_level)
    except SeedlineError as exc:
        _fail(exc)


# -- batch prediction ---------------------------------------------------------------------------
def predict_cmd(
    model_ref: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="NAME, NAME@VERSION, NAME@ALIAS, a run id, or a bundle folder."
        ),
    ],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="A .csv or .parquet file.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write predictions (.csv or .parquet); written atomically.",
        ),
    ],
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column", help="Copy this input column into the output to join rows back."
        ),
    ] = None,
    proba: Annotated[
        bool, typer.Option("--proba", help="Also write one proba_<class> column per class.")
    ] = False,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Rows per chunk (memory is bounded by this).")
    ] = 50_000,
    input_format: Annotated[
        str | None,
        typer.Option("--input-format", help="csv or parquet (default: from the suffix)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing output file.")
    ] = False,
    expect_fingerprint: Annotated[
        str | None, typer.Option("--expect-fingerprint", help=_EXPECT_HELP)
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option("--output-format", help="csv or parquet (default: from the suffix)."),
    ] = None,
    trust: Annotated[bool, typer.Option("--trust", help=_TRUST_HELP)] = False,
    allow_parity_mismatch: Annotated[
        bool, typer.Option("--allow-parity-mismatch", help=_ALLOW_HELP)
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary (rows, seconds, parity).")
    ] = False,
) -> None:
    """Predict a CSV or Parquet file in chunks of constant memory, after a parity self-check."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.workflow.outputs import check_prediction_target
    from seedline.workflow.predict import check_input, predict_file
    from seedline.workflow.registration import resolve_source

    try:
        check_prediction_target(output, force=force)  # before the model is loaded
        # the input is checked against the model's schema before the model is loaded and
        # parity-checked, which takes seconds
        source = resolve_source(model_ref)
        check_input(
            source.schema,
            input_path,
            output,
            id_column=id_column,
            input_format=input_format,
            output_format=output_format,
        )
        source, model, report = _checked_model(
            model_ref,
            "predict",
            trust=trust,
            allow_mismatch=allow_parity_mismatch,
            quiet=as_json,
            expect_fingerprint=expect_fingerprint,
            source=source,
        )
        kwargs: dict[str, Any] = {
            "id_column": id_column,
            "proba": proba,
            "chunk_rows": chunk_rows,
            "input_format": input_format,
            "output_format": output_format,
            "force": force,
            "threads": source.manifest.settings.threads,
        }
        if as_json or not sys.stderr.isatty():
            result = predict_file(model, source.schema, input_path, output, **kwargs)
        else:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("predicting"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=_console(stderr=True),
                transient=True,
            ) as bar:
                task = bar.add_task("predict", total=None)

                def update(done: int, total: int | None) -> None:
                    bar.update(task, completed=done, total=total)

                result = predict_file(
                    model, source.schema, input_path, output, progress=update, **kwargs
                )
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json({**result.to_dict(), "model": source.ref, "parity": report.to_dict()})
        return
    _console().print(
        f"wrote {result.rows} predictions of {source.ref} to {result.output} "
        f"({result.chunks} chunk{'s' if result.chunks != 1 else ''}, {result.seconds:.1f}s)",
        highlight=False,
    )


# -- export -------------------------------------------------------------------------------------
def export_cmd(
    model_ref: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="NAME, NAME@VERSION, NAME@ALIAS, a run id, or a bundle folder."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx, mlflow or bundle.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The file (onnx) or folder (mlflow, bundle) to write."),
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output.")] = False,
    atol: Annotated[
        float | None,
        typer.Option(
            "--atol",
            help="onnx: largest probability deviation accepted on the probe set (default: labels must agree, deviation reported).",
        ),
    ] = None,
    allow_deviation: Annotated[
        bool,
        typer.Option("--allow-deviation", help="onnx: write it even if it predicts differently."),
    ] = False,
    trust: Annotated[bool, typer.Option("--trust", help=_TRUST_HELP)] = False,
    allow_parity_mismatch: Annotated[
        bool, typer.Option("--allow-parity-mismatch", help=_ALLOW_HELP)
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the export report as JSON.")
    ] = False,
) -> None:
    """Export a model as ONNX, an MLflow model directory, or a serving bundle, each verified on the probe set."""
    from seedline.cli.main import _console, _echo_json, _fail
    from seedline.core.errors import SeedlineError
    from seedline.workflow.export import FORMATS, ExportError, export_model
    from seedline.workflow.outputs import check_export_target

    try:
        if fmt not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}", hint="use one of: " + ", ".join(FORMATS))
        check_export_target(output, force=force, folder=fmt != "onnx")  # before the model is loaded
        source, model, report = _checked_model(
            model_ref,
            f"export:{fmt}",
            trust=trust,
            allow_mismatch=allow_parity_mismatch,
            quiet=as_json,
        )
        result = export_model(
            model,
            source,
            fmt,
            output,
            parity=report,
            force=force,
            atol=atol,
            allow_deviation=allow_deviation,
        )
    except SeedlineError as exc:
        _fail(exc)
    if as_json:
        _echo_json(result.to_dict())
        return
    out = _console()
    out.print(f"exported {source.ref} as {fmt} to [bold]{result.path}[/]", highlight=False)
    if fmt == "onnx":
        out.print(
            f"onnxruntime on the probe set: {result.labels_equal}/{result.rows} labels agree, "
            f"largest deviation {result.max_abs_deviation:.3g}"
            + (f" (at {result.deviation_at})" if result.deviation_at else ""),
            highlight=False,
        )
    else:
        out.print(
            f"re-loaded and checked on {result.rows} probe rows: bitwise identical predictions",
            highlight=False,
        )
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
