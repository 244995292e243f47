"""Rendering pages: Jinja2 templates shipped in the package, filled from the workflow layer.

The same templates make the live app's pages and ``seedline report``'s single file; for the
report every asset (CSS, JavaScript, plotly.js) is inlined so it opens offline.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

STATIC = Path(__file__).with_name("static")
ASSETS = ("seedline.css", "seedline.js")


def plotly_js_path() -> Path:
    """plotly.js as bundled inside the plotly package: served by the app, never from a CDN."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _short(value: Any, n: int = 12) -> str:
    """A fingerprint's kind and first ``n`` hex digits; other values as they are."""
    s = "—" if value is None else str(value)
    kind, _, digest = s.partition(":")
    if digest and len(digest) == 64:
        return f"{kind}:{digest[:n]}"
    return s


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _signed(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}"


def _value(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("seedline.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = _short
    env.filters["num"] = _num
    env.filters["signed"] = _signed
    env.filters["value"] = _value
    return env


def render(template: str, *, inline: bool = False, **context: Any) -> str:
    """A page; ``inline`` puts every asset into the page itself (the report)."""
    assets: dict[str, str] = {}
    if inline:
        assets = {name: (STATIC / name).read_text() for name in ASSETS}
        # a </script> inside plotly.js would end the tag early; it has none, but be sure
        assets["plotly.min.js"] = plotly_js_path().read_text().replace("</script", "<\\/script")
    return environment().get_template(template).render(inline=inline, assets=assets, **context)
