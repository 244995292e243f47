"""The ``seedline ui`` web app: FastAPI serving server-rendered pages over the workflow layer.

Every page is one call of ``seedline.workflow.browse`` rendered by a Jinja2 template; the
JSON endpoints under ``/api`` return the same data. All assets, plotly.js included, are
served by the app itself: nothing is fetched from the internet. Bound to loopback unless a
token is given (the rule of ``seedline serve``); with a token, a browser opens
``/?token=TOKEN`` once and keeps it in a cookie, other clients send ``Authorization: Bearer``.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)

from seedline.core.errors import RunNotFoundError, SeedlineError
from seedline.core.version import __version__
from seedline.records.sweeps import list_sweeps
from seedline.records.tracking import Store
from seedline.serving.app import check_bind
from seedline.ui.pages import ASSETS, STATIC, plotly_js_path, render
from seedline.workflow import browse

TOKEN_COOKIE = "seedline_ui_token"
# assets change only with the installed package: browsers may keep them for an hour
CACHED = {"Cache-Control": "public, max-age=3600"}


def _query_args(request: Request) -> dict[str, Any]:
    q = request.query_params
    args: dict[str, Any] = {k: q.get(k) or "" for k in q}
    args["param"] = q.getlist("param")
    args["metric"] = q.getlist("metric")
    args["tag"] = q.getlist("tag")
    return args


def _filter_string(args: dict[str, Any]) -> str:
    """The page's filters as a query string, for sort and page links that keep them."""
    pairs: list[tuple[str, str]] = []
    for key in ("spec", "status", "kind", "since", "until", "sweep", "limit"):
        if args.get(key):
            pairs.append((key, str(args[key])))
    for key in ("param", "metric", "tag"):
        pairs.extend((key, v) for v in args.get(key, []) if v)
    return urlencode(pairs)


def sweep_page_data(sw: dict[str, Any]) -> dict[str, Any]:
    """The JSON a sweep page plots: each successful trial's parameter values and metric."""
    metric = sw["metric"]
    return {
        "metric": metric,
        "params": sw["params"],
        "trials": [
            {
                "run_id": t["summary"].run_id,
                "value": t["summary"].metrics.get(metric)
                if t["summary"].status == "succeeded"
                else None,
                "values": t["values"],
            }
            for t in sw["trials"]
        ],
    }


def create_app(store: Store, *, token: str | None = None) -> FastAPI:
    """The UI over ``store``; with ``token``, every request must carry it."""
    app = FastAPI(title="seedline ui", version=__version__, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if token is None:
            return await call_next(request)
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        cookie = request.cookies.get(TOKEN_COOKIE)
        if any(x is not None and secrets.compare_digest(x, token) for x in (given, bearer, cookie)):
            response = await call_next(request)
            if given is not None:
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        return JSONResponse(
            {
                "error": "this UI needs its token: open /?token=TOKEN once, or send 'Authorization: Bearer TOKEN'",
            },
            status_code=401,
        )

    def page(template: str, section: str, data: Any = None, **context: Any) -> HTMLResponse:
        return HTMLResponse(render_page(template, section, data, **context))

    @app.exception_handler(SeedlineError)
    async def seedline_error(request: Request, exc: SeedlineError) -> Response:
        # "no run matches ...", "no registered model is named ...": the thing is not there
        status = 404 if isinstance(exc, RunNotFoundError) or exc.message.startswith("no ") else 400
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=status)
        return HTMLResponse(
            render_page("error.html", "", message=exc.message, hint=exc.hint),
            status_code=status,
        )

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/runs")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return FileResponse(plotly_js_path(), media_type="text/javascript", headers=CACHED)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in ASSETS:
            return JSONResponse({"error": f"no asset {name!r}"}, status_code=404)
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return FileResponse(STATIC / name, media_type=media, headers=CACHED)

    # -- runs ------------------------------------------------------------------------------------
    @app.get("/api/runs")
    def api_runs(request: Request) -> dict[str, Any]:
        result = browse.runs_page(store, browse.parse_query(_query_args(request)))
        return result

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request) -> Response:
        args = _query_args(request)
        result = browse.runs_page(store, browse.parse_query(args))
        shown = {
            **{k: args.get(k, "") for k in ("spec", "status", "kind", "since", "until")},
            "param": (args["param"] or [""])[0],
            "metric": (args["metric"] or [""])[0],
            "tag": (args["tag"] or [""])[0],
        }
        return page(
            "runs.html",
            "runs",
            None,
            page=result,
            args=shown,
            base_args=_filter_string(args),
            all_params=result["all_params"],
        )

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> dict[str, Any]:
        detail = browse.run_detail(store, run_id)
        detail.pop("pipeline_html")
        return detail

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(run_id: str) -> Response:
        return HTMLResponse(run_page(store, run_id))

    @app.get("/api/compare")
    def api_compare(request: Request) -> dict[str, Any]:
        result = browse.compare_runs(store, request.query_params.getlist("run"))
        result.pop("pipeline_html")
        return result

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request) -> Response:
        return HTMLResponse(compare_page(store, request.query_params.getlist("run")))

    def twins(path: str, template: str, section: str, name: str, fetch: Callable[..., Any]) -> None:
        """A page at ``path`` and its JSON twin at ``/api`` + ``path``, both showing ``fetch(**path params)``."""

        def as_json(request: Request) -> Any:
            return fetch(**request.path_params)

        def as_page(request: Request) -> Response:
            return page(template, section, **{name: fetch(**request.path_params)})

        app.add_api_route(f"/api{path}", as_json, methods=["GET"])
        app.add_api_route(path, as_page, methods=["GET"], response_class=HTMLResponse)

    # -- sweeps, models, checks --------------------------------------------------------------------
    twins("/sweeps", "sweeps.html", "sweeps", "sweeps", lambda: list_sweeps(store))

    @app.get("/api/sweeps/{sweep_id}")
    def api_sweep(sweep_id: str) -> dict[str, Any]:
        sw = browse.ranked_trials(store, sweep_id)
        return {
            "sweep": sw["sweep"],
            **sweep_page_data(sw),
            "ranked": [t["summary"].run_id for t in sw["trials"]],
        }

    @app.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
    def sweep(sweep_id: str) -> Response:
        sw = browse.ranked_trials(store, sweep_id)
        return page("sweep.html", "sweeps", sweep_page_data(sw), sw=sw)

    twins("/models", "models.html", "models", "models", lambda: browse.list_models(store))
    twins(
        "/models/{ref}",
        "model.html",
        "models",
        "info",
        lambda ref: browse.model_lineage(store, ref),
    )
    twins("/checks", "checks.html", "checks", "reports", lambda: browse.check_reports(store))
    twins(
        "/checks/{report_id}",
        "check.html",
        "checks",
        "cr",
        lambda report_id: browse.check_report_detail(store, report_id),
    )

    return app


def serve_ui(
    store: Store, *, host: str = "127.0.0.1", port: int = 5000, token: str | None = None
) -> None:
    """Run the UI with uvicorn until interrupted; a non-loopback host needs a token."""
    import uvicorn

    check_bind(host, token)
    uvicorn.run(create_app(store, token=token), host=host, port=port, log_level="warning")


def render_page(
    template: str, section: str, data: Any = None, *, inline: bool = False, **context: Any
) -> str:
    """A page of the UI: its template, with what every page has (its kind, section, JSON data)."""
    return render(
        template,
        inline=inline,
        page_kind=template.removesuffix(".html"),
        section=section,
        data=data,
        version=__version__,
        **context,
    )


def run_page(store: Store, ref: str, *, inline: bool = False) -> str:
    """The Run page (served, or inlined into a report)."""
    detail = browse.run_detail(store, ref)
    return render_page(
        "run.html",
        "runs",
        {"plots": detail["plots"]},
        inline=inline,
        run=detail,
        pipeline_html=detail["pipeline_html"],
        divergent=None,
    )


def compare_page(store: Store, refs: list[str], *, inline: bool = False) -> str:
    """The Compare page of two or more runs (served, or inlined into a report)."""
    result = browse.compare_runs(store, refs)
    return render_page(
        "compare.html", "runs", {"plots": result["plots"]}, inline=inline, cmp=result
    )


def report_html(store: Store, refs: list[str]) -> str:
    """``seedline report``: one run's page, or the comparison of two, as one self-contained file."""
    if len(refs) == 1:
        return run_page(store, refs[0], inline=True)
    return compare_page(store, refs, inline=True)


__all__ = ["create_app", "report_html", "serve_ui"]
