"""What the CLI prints agrees with the docs: error objects, empty values, k-fold rows and spreads, help placeholders."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import seedline
from seedline.cli.render import render_manifest
from seedline.core.errors import PipelineError

from .conftest import clean_env

SPEC = """\
name: tiny
seed: 3
data: {source: data.csv, target: species}
split: {kind: kfold, n_splits: 3}
pipeline:
  - name: clf
    class: sklearn.tree.DecisionTreeClassifier
metrics: [accuracy]
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    rows = "\n".join(f"{i},{(i * 7) % 11},{'Adelie' if i % 3 else 'Gentoo'}" for i in range(40))
    (tmp_path / "data.csv").write_text("a,b,species\n" + rows + "\n")
    (tmp_path / "seedline.yaml").write_text(SPEC)
    return tmp_path


def _shown(m: seedline.Manifest | dict[str, Any]) -> str:
    out = Console(record=True, width=160, color_system=None)
    render_manifest(out, m.to_dict() if isinstance(m, seedline.Manifest) else m)
    return out.export_text()


def test_show_prints_folds_spread_and_no_python_none(tiny: Path) -> None:
    """A k-fold run shows each fold's rows and metrics, the std, the real split sizes, and '-' for empty values."""
    m = seedline.run(tiny).manifest
    text = _shown(m)
    assert "None" not in text and "False" not in text
    assert "address: -" in text and "git: not inside a git repository" in text
    assert "kfold seed" in text and "3 folds of 40 rows, each 26-27 train / 13-14 test" in text
    assert "40 train / 40 test" not in text
    assert "mean of folds" in text and "std" in text
    lines = text.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["fold", "train", "test"])
    assert [ln.split()[0] for ln in lines[header + 1 : header + 4]] == ["0", "1", "2"]


def test_show_reads_an_absent_key_as_the_models_default(tiny: Path) -> None:
    """`show` renders the stored JSON as it is (the quick path has no model): a manifest without
    the optional keys (as an older seedline wrote it) prints what the model's defaults print."""
    full = seedline.run(tiny).manifest.to_dict()
    optional = {k for k, f in seedline.Manifest.model_fields.items() if not f.is_required()}
    step_optional = {"output_shape", "resolved_columns", "cache", "layers", "frozen_from"}
    for keep in ({"schema_version", "steps", "metrics", "cv"}, {"schema_version"}):
        bare = {k: v for k, v in full.items() if k not in optional or k in keep}
        if "steps" in bare:
            bare["steps"] = [
                {k: v for k, v in s.items() if k not in step_optional} for s in bare["steps"]
            ]
        filled = seedline.Manifest.from_json(json.dumps(bare)).to_dict()
        assert filled != bare  # the model did fill defaults in
        assert _shown(bare) == _shown(filled)


def test_runs_json_gives_the_error_as_the_same_object_as_run_json(tiny: Path) -> None:
    """runs --json's error is {phase, type, message}, as in run --json (less the traceback)."""
    with pytest.raises(PipelineError) as failure:
        seedline.run(tiny, overrides=["pipeline.clf.max_depth=-1"])
    run_error = failure.value.result.summary()["error"]
    listed = seedline.Store.open(tiny).list_runs()[0].to_dict()["error"]
    assert listed == {k: run_error[k] for k in ("phase", "type", "message")}
    assert listed["phase"] == "cross-validate" and "max_depth" in listed["message"]


def _help(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "seedline", *args, "--help"],
        env=clean_env(COLUMNS="120"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_help_shows_names_not_python_types() -> None:
    """--help shows '--sweep SWEEP' and bare flags, never <bool>, <str> or {RUN}; promote takes --alias."""
    for args in (("runs",), ("promote",), ("show",), ("predict",)):
        text = _help(*args)
        assert "<bool>" not in text and "<str>" not in text and "{" not in text, text
    promote = _help("promote")
    assert "--alias" in promote and "Usage: python -m seedline promote [OPTIONS] SWEEP" in promote
    assert "SWEEP" in _help("runs")
    run = _help("run")
    assert "--set" in run and " SET " in run and "SET_" not in run


def test_the_commands_annotations_are_objects_not_strings() -> None:
    """typer reads every command's signature at each start; strings it would compile and evaluate."""
    import typer

    from seedline.cli.main import app

    def commands(group: Any) -> Iterator[Any]:
        for command in getattr(group, "commands", {}).values():
            yield command
            yield from commands(command)

    callbacks = [c.callback for c in commands(typer.main.get_command(app)) if c.callback]
    assert len(callbacks) > 20
    for callback in callbacks:
        annotations = inspect.get_annotations(inspect.unwrap(callback))
        assert annotations and not any(isinstance(a, str) for a in annotations.values()), callback


def test_an_unknown_sweep_points_at_a_command_that_exists(tiny: Path) -> None:
    """The hint for an unknown sweep names 'seedline sweeps', not a 'sweep ls' that does not exist."""
    from seedline.workflow.sweep import SweepError, sweep_info

    with pytest.raises(SweepError) as err:
        sweep_info(seedline.Store.open(tiny), "zzzz")
    assert "'seedline sweeps'" in str(err.value)


def test_run_json_contract_lists_every_key() -> None:
    """Every key of run --json's summary is named in the README's scripting contract."""
    from .conftest import REPO

    readme = (REPO / "README.md").read_text()
    section = readme.split("#### Scripting contract of `seedline run --json`", 1)[1].split(
        "###", 1
    )[0]
    keys = ["run_id", "status", "spec", "metrics", "fingerprints", "steps", "seeds"]
    keys += ["duration_s", "cv", "warnings", "error"]
    missing = [k for k in keys if f"`{k}" not in section]
    assert not missing, missing
    assert "git commit id or\n`null`" not in section
    assert json.dumps(keys)
