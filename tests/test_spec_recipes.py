"""The recipes of docs/spec.md run: every spec validates, and each one that needs no server trains."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import seedline
from seedline.records.tracking import Store

DOC = Path(__file__).resolve().parents[1] / "docs" / "spec.md"
BLOCK = re.compile(r"```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def recipes() -> dict[str, list[tuple[str, str]]]:
    """Recipe title -> its code blocks (language, text), from the doc's recipes section."""
    text = DOC.read_text(encoding="utf-8").split("## Recipes:", 1)[1]
    out: dict[str, list[tuple[str, str]]] = {}
    for part in text.split("\n### ")[1:]:
        title, _, body = part.partition("\n")
        out[title.strip()] = [(m["lang"], m["body"]) for m in BLOCK.finditer(body)]
    return out


def customers(n: int = 90) -> pd.DataFrame:
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(
        {
            "m_height": rng.normal(size=n),
            "m_weight": rng.normal(size=n),
            "colour": rng.choice(["red", "blue", "green"], size=n),
            "w": rng.uniform(0.5, 2.0, size=n),
            "day": pd.date_range("2026-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        }
    )
    frame["label"] = np.where(frame["m_height"] + rng.normal(size=n) > 0, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recipes")
    (root / "data").mkdir()
    customers().to_csv(root / "data" / "customers.csv", index=False)
    with sqlite3.connect(root / "sales.db") as conn:
        customers().rename_axis("id").reset_index().to_sql("customers", conn, index=False)
    for blocks in recipes().values():
        for lang, body in blocks:
            first = body.splitlines()[0]
            name = first.removeprefix("# ").removeprefix("-- ").strip()
            if lang in ("python", "sql") and name.endswith((".py", ".sql")):
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(body)
    return root


RECIPES = recipes()


def test_the_doc_has_the_recipes() -> None:
    """Every kind of source, weights, selectors, custom metrics, time splits and LightGBM have a recipe."""
    assert len(RECIPES) == 8


@pytest.mark.parametrize("title", sorted(RECIPES))
def test_recipe_runs(title: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's spec validates; unless it needs a server (S3), it trains in a project made from its blocks."""
    monkeypatch.setenv("SALES_DB", f"sqlite:///{project / 'sales.db'}")
    monkeypatch.chdir(
        project
    )  # as `seedline run` in the project folder: the loader's path is relative
    (spec_text,) = [body for lang, body in RECIPES[title] if lang == "yaml"]
    spec = seedline.Spec.from_dict(yaml.safe_load(spec_text))
    if spec.data.sources[0].startswith("s3://"):
        return  # tests/test_sources.py reads an s3:// source from a real S3 server
    result = seedline.run(spec, project_root=project, store=Store.open(project), plots=False)
    assert result.status == "succeeded"
