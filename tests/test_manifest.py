"""The manifest: its JSON Schema is published in docs/ and every stored manifest conforms to it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

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


def test_installed_packages_are_read_as_importlib_metadata_reads_them(tmp_path: Path) -> None:
    """The header-only read gives every distribution's name and version exactly as
    ``Distribution.metadata`` does, long descriptions and CRLF files included."""
    import importlib.metadata
    import re

    from seedline.core.environment import _name_and_version, installed_distributions

    def stock() -> dict[str, str]:
        return {
            re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
            for d in importlib.metadata.distributions()
            if d.metadata["Name"]
        }

    # the shared environment may be installing a package meanwhile: read both back to back
    assert any(installed_distributions() == stock() for _ in range(3))
    info = tmp_path / "odd_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_bytes(
        b"Metadata-Version: 2.1\r\nName: Odd.Pkg\r\nSummary: a\r\n  folded line\r\n"
        b"Version: 1.0.post2\r\n\r\nVersion: 9 (the description, not a header)\r\n"
    )
    dist = importlib.metadata.PathDistribution(info)
    assert _name_and_version(dist) == (dist.metadata["Name"], dist.version)
    assert _name_and_version(dist) == ("Odd.Pkg", "1.0.post2")


@pytest.mark.parametrize(
    "block",
    [
        "Metadata-Version: 2.1\nName: plain\nVersion: 1.0",
        "Metadata-Version: 2.1\r\nName: crlf\r\nVersion: 2.0\r\n",
        "name: lower\nVERSION: 3.0",
        "Name:   spaced  \nVersion:\t4.0\t",
        "Name: first\nName: second\nVersion: 1\nVersion: 2",
        "Summary: a\n  folded: line with a colon\nName: after-fold\nVersion: 5",
        "Name: folded\n  name\nVersion: 6",
        "Name: x\nVersion: 7\n\tfolded version",
        "Name: cr\rVersion: 8",
        "From someone\nName: unixfrom\nVersion: 9",
        "Name: no-version",
        "Version: 10",
        "Name:\nVersion:",
        "Author: J\u00f6rg\nName: accented\nVersion: 11",
        "Bad Field: x\nName: defect\nVersion: 12",
        "not a header at all",
        "Name: lone\udcff surrogate\nVersion: 13",
        "",
    ],
)
def test_a_header_block_reads_as_the_email_parser_reads_it(block: str) -> None:
    """The one-pass header read answers the email parser's Name and Version (the first
    occurrence, any case of the field's name, the value's blanks after the colon removed),
    or hands the block to that parser where it could read it differently."""
    import email

    from seedline.core.environment import _name_and_version, _plain_fields

    message = email.message_from_string(block)
    expected = (message["Name"], message["Version"])
    plain = _plain_fields(block)
    if plain is not None:
        assert plain == expected
    dist = type("Dist", (), {"read_text": lambda self, name: block + "\n\nDescription"})()
    assert _name_and_version(dist) == expected


def test_the_one_pass_header_read_serves_ordinary_blocks() -> None:
    """Not a path that always falls back to the parser: plain blocks, CRLF ones and
    lower-case field names are read in one pass."""
    from seedline.core.environment import _plain_fields

    assert _plain_fields("Metadata-Version: 2.1\nName: a\nVersion: 1") == ("a", "1")
    assert _plain_fields("name: b\r\nversion:  2 \r\n") == ("b", "2 ")
    assert _plain_fields("Name: c\n  folded") is None
    assert _plain_fields("From x\nName: d") is None


def test_a_distributions_version_is_what_importlib_metadata_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step cache's code versions read versions from the one walk, with the library's
    answers: for every installed distribution by any spelling of its name, the first of two
    copies on the import path, and the library's error for none."""
    import importlib.metadata

    from seedline.core.environment import distribution_version

    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            for spelling in (name, name.upper(), name.replace("-", "_")):
                assert distribution_version(spelling) == importlib.metadata.version(spelling)
    for where, version in (("first", "1.0"), ("second", "2.0")):
        info = tmp_path / where / "twice-1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: twice\nVersion: {version}\n")
        monkeypatch.syspath_prepend(str(tmp_path / where))
    # syspath_prepend puts the last one first: "second" is found first
    assert distribution_version("twice") == importlib.metadata.version("twice") == "2.0"
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        distribution_version("no-such-distribution-anywhere")


def test_top_level_modules_are_mapped_to_distributions_as_importlib_metadata_does(
    tmp_path: Path,
) -> None:
    """The step cache's code versions name the same distributions as the library would."""
    import importlib.metadata

    from seedline.core.environment import (
        _inferred_top_level,
        first_distribution,
        packages_distributions,
    )

    uncached = packages_distributions.__wrapped__
    assert any(uncached() == importlib.metadata.packages_distributions() for _ in range(3))
    # a step's key asks for one module's first provider, read only as far as that one
    mapping = packages_distributions()
    assert {top: first_distribution.__wrapped__(top) for top in mapping} == {
        top: names[0] for top, names in mapping.items()
    }
    assert first_distribution.__wrapped__("no_such_module_anywhere") is None
    # RECORD paths of every shape: nested, top-level module, data, absolute, dotted, quoted
    info = tmp_path / "shapes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shapes\nVersion: 1.0\n")
    (info / "RECORD").write_text(
        "pkg/__init__.py,sha256=x,1\nsolo.py,,\npkg/data.json,,\n/abs/lib/mod.py,,\n"
        "./dotted/x.py,,\n.py,,\nodd//double.py,,\n"
        '"comma,name/y.py",,\nshapes-1.0.dist-info/RECORD,,\n'
    )
    dist = importlib.metadata.PathDistribution(info)
    expected = {
        f.parts[0] if len(f.parts) > 1 else f.with_suffix("").name
        for f in dist.files or []
        if f.suffix == ".py"
    }
    assert _inferred_top_level(dist) == expected
    assert expected >= {"pkg", "solo", "/", "dotted", "odd", "comma,name"}
