"""Careless or oversized input gets a clear error early, never unbounded memory or a misleading run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import seedline
from seedline.core.bounded_yaml import YAMLExpansionError, load_bounded
from seedline.core.errors import DataError, SpecError
from seedline.execution.data import check_line_lengths

BOMB = """\
name: bomb
seed: 1
data: {source: data.csv, target: y}
pipeline:
  - name: clf
    class: sklearn.linear_model.LogisticRegression
    params:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
metrics: [accuracy]
"""


def _spec(root: Path, text: str) -> Path:
    path = root / "seedline.yaml"
    path.write_text(text)
    return path


def test_a_yaml_alias_bomb_in_step_params_is_refused_quickly(tmp_path: Path) -> None:
    """Nine levels of nine aliases (387 million values) are refused at load, in well under a second."""
    t = time.perf_counter()
    with pytest.raises(SpecError, match=r"expands to more than 100,000 values") as err:
        seedline.load_spec(_spec(tmp_path, BOMB))
    assert time.perf_counter() - t < 5
    assert "seedline.yaml" in str(err.value) and "fewer nested aliases" in str(err.value)


def test_modest_aliases_still_load_and_recursive_ones_are_refused() -> None:
    """Aliases that expand a little are ordinary YAML; an alias inside itself is an error, not a hang."""
    assert load_bounded("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}
    with pytest.raises(YAMLExpansionError, match="contains it"):
        load_bounded("a: &x [1, *x]\n")
    with pytest.raises(YAMLExpansionError, match="more than 10 values"):
        load_bounded("a: &x [1, 2, 3, 4]\nb: [*x, *x, *x]\n", max_nodes=10)


def test_a_data_file_without_line_breaks_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV whose line exceeds the (configurable) limit fails with a message naming the file and the line."""
    spec = _spec(
        tmp_path,
        "name: long\nseed: 1\ndata: {source: data.csv, target: y}\n"
        "pipeline:\n  - name: clf\n    class: sklearn.linear_model.LogisticRegression\n"
        "metrics: [accuracy]\n",
    )
    (tmp_path / "data.csv").write_bytes(b"x,y\n1,0\n2,1\n" + b"9" * 5000)
    monkeypatch.setenv("SEEDLINE_MAX_LINE_BYTES", "4096")
    with pytest.raises(DataError, match=r"data file 'data.csv': line 4 is longer than 4,096 bytes"):
        seedline.run(spec)
    assert not (tmp_path / ".seedline").exists(), "a refused input stores nothing"
    # the same file under the default limit is read (and is then just a bad table)
    monkeypatch.delenv("SEEDLINE_MAX_LINE_BYTES")
    check_line_lengths(tmp_path / "data.csv")


@pytest.mark.parametrize("chunk", [3, 7, 1 << 20])
def test_the_line_scan_finds_long_lines_across_chunk_edges(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Line numbers and lengths are right whatever the chunk size the file is read in."""
    monkeypatch.setattr("seedline.execution.data._SCAN_CHUNK", chunk)
    path = tmp_path / "t.csv"
    path.write_bytes(b"ab\n" + b"c" * 10 + b"\nde\n" + b"f" * 12)
    check_line_lengths(path, limit=12)
    with pytest.raises(DataError, match="line 2 is longer than 9 bytes"):
        check_line_lengths(path, limit=9)
    with pytest.raises(DataError, match="line 4 is longer than 11 bytes"):
        check_line_lengths(path, limit=11)


CLASSIFIER = """\
name: one-class
seed: 1
data: {source: data.csv, target: species}
pipeline:
  - name: clf
    class: sklearn.tree.DecisionTreeClassifier
metrics: [accuracy]
"""


def test_a_single_class_target_is_refused_for_a_classifier(tmp_path: Path) -> None:
    """A classifier on a target with one class would score 1.0; the error names the column instead."""
    rows = "\n".join(f"{i},{i * 2},Adelie" for i in range(40))
    (tmp_path / "data.csv").write_text("a,b,species\n" + rows + "\n")
    with pytest.raises(DataError, match=r"target column 'species' has only the class 'Adelie'"):
        seedline.run(_spec(tmp_path, CLASSIFIER))
    assert not (tmp_path / ".seedline").exists()


def test_an_entirely_missing_feature_column_is_reported(tmp_path: Path) -> None:
    """A feature column with no values is a warning in the manifest and in run --json's summary."""
    rows = "\n".join(f"{i},,{'Adelie' if i % 2 else 'Gentoo'}" for i in range(40))
    (tmp_path / "data.csv").write_text("a,empty,species\n" + rows + "\n")
    result = seedline.run(_spec(tmp_path, CLASSIFIER))
    expected = "feature column 'empty' is entirely missing (40 of 40 values)"
    assert result.status == "succeeded"
    assert [w for w in result.manifest.warnings if expected in w]
    assert [w for w in result.summary()["warnings"] if expected in w]
    stored = seedline.Store.open(tmp_path).manifest(result.run_id)
    assert stored.warnings == result.manifest.warnings
