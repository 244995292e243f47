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


def test_typed_sections_write_back_exactly_what_was_stored(digits: Path) -> None:
    """environment, code, probe, cv and settings are models, yet a stored manifest reads and writes back byte for byte, sparse sections included."""
    from seedline.records.manifest import CodeRecord, EnvironmentRecord, ProbeRecord

    m = seedline.run(
        digits / "seedline.yaml", overrides=["split.kind=kfold", "split.n_splits=3"]
    ).manifest
    text = m.to_json()
    assert Manifest.from_json(text).to_json() == text
    assert isinstance(m.environment, EnvironmentRecord) and m.environment.python.version
    assert isinstance(m.code, CodeRecord) and m.code.commit and m.code.dirty is False
    assert isinstance(m.probe, ProbeRecord) and m.probe.set == "every row"
    assert m.cv is not None and len(m.cv.folds) == 3 and set(m.cv.std) == set(m.metrics)
    assert m.settings.threads == 1 and m.settings.executor == "serial"
    # a run that failed before its environment was captured, made outside git, by an older writer
    data = json.loads(text)
    data.update(
        environment={},
        code={"repository": False, "reason": "not inside a git repository", "local_modules": {}},
        probe={},
        cv=None,
        settings={"threads": 1, "executor": "serial", "workers": 1},
    )
    sparse = json.dumps(data, indent=2)
    back = Manifest.from_json(sparse)
    assert json.loads(back.to_json()) == data
    assert back.environment.fingerprint is None and back.code.commit is None
    assert back.settings.cache is None and back.probe.predictions is None
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
