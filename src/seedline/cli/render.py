"""Rich rendering of runs and manifests for people (scripts use --json).

The typer commands and the quick listing path (cli/listing.py) print through these same
functions, so both print the same bytes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from seedline.records.reading import RunSummary


def console(stderr: bool = False) -> Console:
    """Where a command prints: stdout (or stderr), no highlighting, long lines kept whole."""
    stream = sys.stderr if stderr else sys.stdout
    # piped output is read by people in logs and by tests: don't squeeze tables into 80 columns
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def json_document(data: Any) -> str:
    """What a command prints with --json: one document, keys sorted, indented."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def short(fp: str | None, n: int = 12) -> str:
    if not fp:
        return "-"
    kind, _, digest = fp.partition(":")
    return f"{kind}:{digest[:n]}" if digest else fp[:n]


def _status(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(status, "white")
    return f"[{colour}]{status}[/]"


def render_run(out: Console, m: Mapping[str, Any]) -> None:
    """A run's headline: metrics, steps, fingerprints; ``m`` is the manifest's JSON form.

    The JSON form (``Manifest.to_dict()``, or the stored document as it is) rather than the
    model, so that ``show`` can print a stored manifest without importing pydantic. A key
    the model requires is read as required (a document without it raises); an absent
    optional key reads as the model's default.
    """
    spec, timings = m["spec"], m.get("timings") or {}
    out.print(
        f"run [bold]{m['run_id']}[/]  {_status(m['status'])}  spec [bold]{spec.get('name')}[/]  seed {spec.get('seed')}  ({timings.get('total', 0):.2f}s)"
    )
    cv = m.get("cv") or {}
    std = cv.get("std") or {}
    metrics = m.get("metrics") or {}
    if metrics:
        t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        t.add_column("metric")
        # k-fold: the headline value is the mean over the folds, and its spread matters
        t.add_column("mean of folds" if std else "value", justify="right")
        if std:
            t.add_column("std", justify="right")
        for k, v in metrics.items():
            t.add_row(k, f"{v:.6f}", *([f"{std[k]:.6f}"] if k in std else ["-"] if std else []))
        out.print(t)
    if cv.get("folds"):
        render_folds(out, cv["folds"])
    steps = m.get("steps") or []
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False, title=None)
    t.add_column("step")
    t.add_column("fitted state")
    t.add_column("output on train")
    t.add_column("fit s", justify="right")
    for s in steps:
        t.add_row(s["name"], short(s["fitted"]), short(s.get("output")), f"{s['fit_seconds']:.3f}")
    out.print(t)
    for s in steps:
        src = s.get("frozen_from")
        if src is not None:
            out.print(
                f"  step {s['name']}: taken fitted from {src['ref']} (run {src['run_id']}"
                + (f", {src['model']}" if src.get("model") else "")
                + "), not refitted",
                highlight=False,
                markup=False,
            )
    fingerprints = m.get("fingerprints") or {}
    out.print(f"model       {fingerprints.get('model')}")
    out.print(f"predictions {fingerprints.get('predictions')}")
    if (m.get("code") or {}).get("dirty"):
        out.print(
            "[yellow]note:[/] the git working tree was dirty; the uncommitted diff is stored with the run"
        )
    for w in m.get("warnings") or []:
        out.print(f"[yellow]warning:[/] {escape(w)}", markup=True, highlight=False)


def render_folds(out: Console, folds: list[Mapping[str, Any]]) -> None:
    """One row per fold: its rows, each metric and the fold's model fingerprint."""
    names = list(folds[0].get("metrics") or {}) if folds else []
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("fold", "train", "test", *names, "model"):
        t.add_column(col, justify="left" if col in ("fold", "model") else "right")
    for f in folds:
        metrics = f.get("metrics") or {}
        t.add_row(
            str(f["fold"]),
            str(f["train_rows"]),
            str(f["test_rows"]),
            *[f"{metrics[n]:.6f}" if n in metrics else "-" for n in names],
            short(f.get("model")),
        )
    out.print(t)


def _span(values: list[int]) -> str:
    """'88' when every fold has the same count, '88-89' when they differ."""
    if not values:
        return "?"
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def split_text(split: dict[str, Any]) -> str:
    """'holdout seed S: 258 train / 86 test', or for k folds the rows each fold trains and tests on."""
    if split.get("kind") == "kfold":
        folds = split.get("folds") or []
        train = sorted({f["train_rows"] for f in folds})
        test = sorted({f["test_rows"] for f in folds})
        return (
            f"kfold seed {split.get('seed')}: {split.get('n_splits')} folds of {split.get('rows')} rows, "
            f"each {_span(train)} train / {_span(test)} test; the final model fits all {split.get('rows')}"
        )
    return f"{split.get('kind')} seed {split.get('seed')}: {split.get('train_rows')} train / {split.get('test_rows')} test"


def render_runs(out: Console, rows: list[RunSummary]) -> None:
    if not rows:
        out.print("no runs yet: 'seedline run' makes one")
        return
    metric_names: list[str] = []
    for r in rows:
        metric_names += [k for k in r.metrics if k not in metric_names]
    tagged = any(r.tags for r in rows)
    t = Table(header_style="bold")
    for col in (
        "run",
        "spec",
        "status",
        "created (UTC)",
        "secs",
        *metric_names,
        "model",
        "predictions",
        *(["tags"] if tagged else []),
    ):
        t.add_column(
            col,
            justify="right" if col in metric_names or col == "secs" else "left",
            no_wrap=col in ("run", "created (UTC)"),
        )
    for r in rows:
        t.add_row(
            r.run_id,
            r.spec_name,
            _status(r.status),
            r.created_at.replace("T", " ")[:19],
            f"{r.duration_s:.2f}" if r.duration_s is not None else "-",
            *[f"{r.metrics[k]:.4f}" if k in r.metrics else "-" for k in metric_names],
            short(r.model_fingerprint, 10),
            short(r.predictions_fingerprint, 10),
            *([" ".join(f"{k}={v}" for k, v in r.tags.items())] if tagged else []),
        )
    out.print(t)


def render_models(out: Console, rows: list[dict[str, Any]]) -> None:
    """``seedline models``: one line per registered name."""
    if not rows:
        out.print("no registered models yet: [bold]seedline register RUN --name NAME[/]")
        return
    table = Table(box=None, header_style="bold")
    for col in ("name", "latest", "versions", "aliases", "latest run", "registered"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            str(r["latest_version"]),
            str(r["versions"]),
            ", ".join(f"@{a}={v}" for a, v in sorted(r["aliases"].items())),
            r["latest_run"],
            r["updated_at"],
        )
    out.print(table)


def render_sweeps(out: Console, rows: list[dict[str, Any]]) -> None:
    """``seedline sweeps``: one line per sweep (``SweepRecord.to_dict()``)."""
    t = Table(header_style="bold")
    for col in (
        "sweep",
        "spec",
        "search",
        "trials",
        "metric",
        "best run",
        "executor",
        "created (UTC)",
    ):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["sweep_id"],
            r["spec"],
            r["search"],
            str(r["trials"]),
            r["metric"],
            r["best_run"] or "-",
            f"{r['settings']['executor']} x{r['settings']['workers']}",
            r["created_at"][:19].replace("T", " "),
        )
    out.print(t if rows else "no sweeps yet: 'seedline sweep --param ...' runs one")


def render_cache_entries(out: Console, entries: list[dict[str, Any]]) -> None:
    """``seedline cache ls``: one line per entry (``CacheEntry.to_dict()``)."""
    if not entries:
        out.print("the step cache is empty")
        return
    t = Table(header_style="bold")
    for col in ("key", "step", "class", "fitted state", "size", "hits", "last used (UTC)"):
        t.add_column(col, justify="right" if col in ("size", "hits") else "left")
    for e in entries:
        t.add_row(
            e["key"].partition(":")[2][:12],
            e["step"],
            e["class"].rsplit(".", 1)[-1],
            # in the run's model file (counted there), or a file of its own (counted here)
            "in model" if e.get("fitted_in") == "model" else "own file",
            human_size(e["size_bytes"]),
            str(e["hits"]),
            e["last_used_at"][:19].replace("T", " "),
        )
    out.print(t)


def _value(v: Any) -> str:
    """A value for people: '-' for nothing, yes/no for flags (never Python's None/True)."""
    if v is None or v == "" or v == [] or v == {}:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _kv(out: Console, title: str, items: dict[str, Any]) -> None:
    out.print(f"\n[bold underline]{title}[/]")
    for k, v in items.items():
        out.print(f"  {k}: {_value(v)}", markup=False, highlight=False)


def render_manifest(out: Console, m: Mapping[str, Any], tags: dict[str, str] | None = None) -> None:
    """Everything ``show`` prints about a run; ``m`` is the manifest's JSON form (see render_run)."""
    render_run(out, m)
    if tags:
        _kv(out, "tags", tags)
    error = m.get("error")
    if error:
        out.print(f"\n[bold red]error[/] in phase {error.get('phase')}: {error.get('message')}")
        out.print(error.get("traceback", ""), markup=False)
    if m.get("overrides"):
        _kv(out, "overrides", {str(i): o for i, o in enumerate(m["overrides"])})
    data = m.get("data")
    if data is not None:
        _kv(
            out,
            "data",
            {
                **{s["uri"]: f"{s['fingerprint']} ({s['rows']} rows)" for s in data["sources"]},
                "table": data["table"].get("digest"),
                "target": data["target"],
                "split": split_text(data["split"]),
            },
        )
    seeds = m.get("seeds")
    if seeds is not None:
        _kv(
            out,
            "seeds",
            {
                "master": seeds["master"],
                "PYTHONHASHSEED": seeds["hash_seed"].get("PYTHONHASHSEED"),
                **{f"filled {k}": v["seed"] for k, v in seeds["random_states"].items()},
            },
        )
    env = m.get("environment") or {}
    if env.get("fingerprint"):
        python, packages = env.get("python") or {}, env.get("packages") or {}
        pools = ", ".join(
            " ".join(str(x) for x in (p.get("internal_api"), p.get("version")) if x is not None)
            + f" x{p.get('num_threads')}"
            for p in env.get("thread_pools") or []
        )
        _kv(
            out,
            "environment",
            {
                "python": f"{python.get('implementation', '')} {python.get('version', '')}",
                "platform": (env.get("platform") or {}).get("platform", ""),
                "cpu": (env.get("cpu") or {}).get("model"),
                "packages": f"{len(packages)} installed (scikit-learn {packages.get('scikit-learn')}, numpy {packages.get('numpy')})",
                "thread pools": pools,
                "fingerprint": env["fingerprint"],
            },
        )
    code = m.get("code") or {}
    if code:
        _kv(
            out,
            "code",
            (
                {
                    "commit": code.get("commit"),
                    "dirty": code.get("dirty", False),
                    "diff": code.get("diff"),
                }
                if code.get("repository")
                else {"git": code.get("reason")}
            )
            | {"local modules": ", ".join(code.get("local_modules") or {})},
        )
    _kv(out, "settings", dict(m.get("settings") or {}))


_VERDICT_STYLE = {"bitwise": "bold green", "tolerance": "bold yellow", "failed": "bold red"}


def _differences_table(out: Console, diffs: list[Any], title: str) -> None:
    if not diffs:
        return
    t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for col in ("category", "what", "A", "B", "detail"):
        t.add_column(col, overflow="fold")
    for d in diffs:
        t.add_row(d.category, d.name, _cell(d.a), _cell(d.b), d.detail)
    out.print(t)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    text = v if isinstance(v, str) else str(v)
    return short(text, 16) if ":" in text and len(text) > 40 else text


def render_reproduction(out: Console, report: Any) -> None:
    style = _VERDICT_STYLE.get(report.verdict, "bold")
    what = {
        "bitwise": "BITWISE: every step and the predictions are identical",
        "tolerance": "WITHIN TOLERANCE",
        "failed": "FAILED",
    }[report.verdict]
    out.print(
        f"[{style}]{what}[/]  original {report.original} -> reproduction {report.reproduction or '(not run)'}"
    )
    if report.at_commit:
        out.print(f"rebuilt at commit {report.at_commit}")
    if report.steps:
        t = Table(header_style="bold", box=None, pad_edge=False)
        for col in ("step", "fitted state", "output", "largest deviation"):
            t.add_column(col)
        for s in report.steps:
            dev = s.get("fitted_deviation") or {}
            odev = s.get("output_deviation") or {}
            worst = max(dev.get("max_abs", 0.0), odev.get("max_abs", 0.0))
            note = (
                dev.get("mismatch")
                or odev.get("mismatch")
                or (f"{worst:.3g} (abs)" if (dev or odev) else "")
            )
            t.add_row(
                s["name"],
                "same" if s["fitted_equal"] else "[red]differs[/]",
                "same" if s["output_equal"] else "[red]differs[/]",
                note,
            )
        out.print(t)
    if report.first_divergent_step:
        out.print(f"first divergent step: [bold]{report.first_divergent_step}[/]")
    if report.likely_cause:
        out.print(f"most likely cause: {report.likely_cause}")
    if report.verdict == "tolerance":
        out.print(
            f"tolerance used: rtol={report.tolerance['rtol']:g}, atol={report.tolerance['atol']:g}"
        )
    for name in ("data", "code", "environment"):
        _differences_table(out, report.preflight.get(name, []), f"{name} now vs recorded")
    for note in report.notes:
        out.print(f"[yellow]note:[/] {note}")


def render_diff(out: Console, report: Any) -> None:
    out.print(f"[bold]diff[/] A={report.a}  B={report.b}")
    if report.differences:
        _differences_table(out, report.differences, "what differs (most likely cause first)")
    else:
        out.print("no recorded input differs")
    out.print(
        f"first divergent step: [bold]{report.first_divergent_step or 'none: every step is identical'}[/]"
    )
    out.print(f"predictions: {'identical' if report.predictions_equal else '[red]differ[/]'}")
    if report.metrics:
        t = Table(header_style="bold", box=None, pad_edge=False)
        for col in ("metric", "A", "B", "delta"):
            t.add_column(col, justify="right" if col != "metric" else "left")
        for k, m in report.metrics.items():
            fmt = lambda v: "-" if v is None else f"{v:.6f}"  # noqa: E731
            t.add_row(
                k, fmt(m["a"]), fmt(m["b"]), "-" if m["delta"] is None else f"{m['delta']:+.6f}"
            )
        out.print(t)
