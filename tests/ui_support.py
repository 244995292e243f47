"""A small project with several runs, a reproduction, a sweep, a registered model and a
stored check report: what the UI tests browse. Built through the real API, once per module.

Also the browser both the UI tests and ``benchmarks/ui.py`` drive: Debian's chromium through
Playwright, every request that would leave loopback aborted and listed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

SPEC = """\
name: iris-tree
seed: 11
data:
  source: sklearn:load_iris
  target: target
split:
  kind: holdout
  test_size: 0.3
  stratify: true
pipeline:
  - name: scale
    class: sklearn.preprocessing.StandardScaler
  - name: clf
    class: sklearn.tree.DecisionTreeClassifier
    params: {max_depth: 3}
metrics: [accuracy, f1_macro]
"""


@dataclass
class UIProject:
    root: Path
    runs: list[str]  # max_depth 3, then 1 (tagged team=vision), then 5
    reproduction: str
    sweep: str
    model: str


def build_project(root: Path) -> UIProject:
    import seedline
    from seedline.records.tracking import Store
    from seedline.workflow.browse import record_check
    from seedline.workflow.registration import register_run

    root.mkdir(parents=True, exist_ok=True)
    spec = root / "seedline.yaml"
    spec.write_text(SPEC)
    runs = [
        seedline.run(spec, overrides=o, tags=t).run_id
        for o, t in (
            ([], None),
            (["pipeline.clf.params.max_depth=1"], {"team": "vision"}),
            (["pipeline.clf.params.max_depth=5"], None),
        )
    ]
    report = seedline.reproduce(runs[0], project_root=root)
    assert report.reproduction is not None
    sw = seedline.sweep(spec, {"pipeline.clf.params.max_depth": [1, 2, 4]})
    store = Store.open(root)
    version = register_run(store, runs[0], "iris")
    from seedline.records.registry import Registry

    Registry(store).set_alias("iris", "production", version.version)
    store.close()
    record_check(seedline.check(spec, sample=60), spec)
    return UIProject(
        root=root,
        runs=runs,
        reproduction=report.reproduction,
        sweep=sw.sweep_id,
        model=f"iris@{version.version}",
    )


def launch_chromium(pw: Any) -> Any:
    """Debian's chromium (Playwright never downloads a browser here)."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def loopback_page(browser: Any) -> tuple[Any, list[str]]:
    """A new page whose requests beyond loopback are aborted; the list fills with their URLs."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    foreign: list[str] = []

    def guard(route: Any) -> None:
        url = urlparse(route.request.url)
        local = url.scheme in ("data", "blob", "about", "file")
        if not local and url.hostname not in ("127.0.0.1", "localhost"):
            foreign.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", guard)
    return page, foreign
