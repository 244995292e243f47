"""The manifest: its JSON Schema is published in docs/ and every stored manifest conforms to it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

import seedline
from seedline.records.manifest import SCHEMA_VERSION, Manifest, json_schema

from .conftest import REPO

SCHEMA_FILE = REPO / "docs" / "manifest.schema.json"


def test_published_schema_matches_the_code() -> None:
    """docs/manifest.schema.json is regenerated whenever the manifest models change."""
    published = json.loads(SCHEMA_FILE.read_text())
    assert published == json_schema(), (
        "run: python -m seedline.records.manifest > docs/manifest.schema.json"
    )


def test_a_real_manifest_validates_against_the_schema_and_round_trips(digits: Path) -> None:
    """A run's manifest is valid JSON Schema instance data and parses back to an equal Manifest."""
    m = seedline.run(digits / "seedline.yaml").manifest
    data = json.loads(m.to_json())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    assert data["schema_version"] == SCHEMA_VERSION
    assert Manifest.from_json(m.to_json()) == m
    assert data["steps"][0]["class"] == "sklearn.preprocessing._data.StandardScaler"
