"""Sweeps in-process: the spec's sweep section, TPE, and the errors a user can make."""

from __future__ import annotations

from pathlib import Path

import pytest

import seedline
from seedline.core.seeding import SeedPlan
from seedline.workflow.sweep import SweepError, parse_param, plan_trials, sweep


def test_param_values_parse_as_yaml() -> None:
    """--param values keep their types; lists may be given in YAML flow style."""
    assert parse_param("pipeline.clf.C=0.1,1,10") == ("pipeline.clf.C", [0.1, 1, 10])
    assert parse_param("a.b=null,true,text") == ("a.b", [None, True, "text"])
    assert parse_param("a.b=[1, 2]") == ("a.b", [1, 2])
    with pytest.raises(SweepError, match=r"path\.to\.key=v1,v2"):
        parse_param("nonsense")


def test_trial_plans_are_stable() -> None:
    """Grid order is sorted by name; a random sample depends only on the seed."""
    params = {"b": [1, 2], "a": ["x", "y", "z"]}
    grid = plan_trials(params, "grid", None, SeedPlan(1))
    assert grid[0] == ['a="x"', "b=1"] and len(grid) == 6
    r1 = plan_trials(params, "random", 4, SeedPlan(1))
    assert r1 == plan_trials(params, "random", 4, SeedPlan(1)) and len({tuple(t) for t in r1}) == 4
    assert r1 != plan_trials(params, "random", 4, SeedPlan(2))


def test_the_spec_sweep_section_drives_a_sweep_and_is_ignored_by_run(digits: Path) -> None:
    """A 'sweep:' section in seedline.yaml defines the search; 'seedline run' ignores it."""
    spec = digits / "seedline.yaml"
    spec.write_text(
        spec.read_text()
        + "sweep:\n  metric: f1_macro\n  params:\n    pipeline.clf.n_estimators: [5, 10]\n"
    )
    plain = seedline.load_spec(spec)
    assert "sweep" not in plain.to_dict()
    report = sweep(spec)
    assert report.metric == "f1_macro" and [t["overrides"] for t in report.trials] == [
        ["pipeline.clf.n_estimators=5"],
        ["pipeline.clf.n_estimators=10"],
    ]
    assert all(t["status"] == "succeeded" for t in report.trials)
    run = seedline.Store.open(digits).manifest(report.trials[0]["run_id"])
    assert run.sweep == {
        "id": report.sweep_id,
        "trial": "trial-000",
        "overrides": ["pipeline.clf.n_estimators=5"],
    }


def test_tpe_is_seeded_and_independent_of_workers(digits: Path) -> None:
    """Optuna's TPE, seeded from the plan and asked in fixed batches, proposes the same trials on 1 or 2 workers."""
    params = {"pipeline.clf.n_estimators": [5, 10, 20], "pipeline.clf.max_depth": [3, 6, None]}
    a = sweep(digits / "seedline.yaml", params, search="tpe", trials=6)
    b = sweep(
        digits / "seedline.yaml", params, search="tpe", trials=6, executor="processes", workers=2
    )
    assert [t["overrides"] for t in a.trials] == [t["overrides"] for t in b.trials]
    assert [t["fingerprints"]["model"] for t in a.trials] == [
        t["fingerprints"]["model"] for t in b.trials
    ]


def test_sweep_errors_are_explained(digits: Path) -> None:
    """No params, a misspelt path, an unknown search or metric each get a clear error."""
    with pytest.raises(SweepError, match="nothing to sweep"):
        sweep(digits / "seedline.yaml")
    with pytest.raises(SweepError, match="n_estimatorz"):
        sweep(digits / "seedline.yaml", {"pipeline.clf.n_estimatorz": [1, 2]})
    with pytest.raises(SweepError, match="search must be one of"):
        sweep(digits / "seedline.yaml", {"pipeline.clf.n_estimators": [1]}, search="bayes")
    with pytest.raises(SweepError, match="not among the spec's metrics"):
        sweep(digits / "seedline.yaml", {"pipeline.clf.n_estimators": [1]}, metric="roc_auc")


@pytest.mark.parametrize("text", ["pipeline.clf.C=", "pipeline.clf.C=1,,2", "pipeline.clf.C=1, "])
def test_an_empty_param_value_is_rejected_not_read_as_null(text: str) -> None:
    """'--param x=' used to become [None]; an empty value is an error that says how to write null."""
    with pytest.raises(SweepError, match="has an empty value") as err:
        parse_param(text)
    assert "null" in str(err.value)
    assert parse_param("pipeline.clf.C=null,1") == ("pipeline.clf.C", [None, 1])


@pytest.mark.slow
def test_a_sweep_whose_every_trial_failed_exits_1_with_the_first_error(digits: Path) -> None:
    """Every trial failing is a failed sweep: exit 1, the count and the first trial's error on stderr."""
    from .conftest import run_cli

    proc = run_cli(digits, "sweep", "--param", "pipeline.clf.n_estimators=-1,-2", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 of 2 trials failed; the first, trial-000" in proc.stderr
    assert "n_estimators" in proc.stderr and "seedline show" in proc.stderr
