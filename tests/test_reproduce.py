"""reproduce and diff: proving a rebuild bit for bit, or explaining exactly why not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import seedline
from seedline.cli.main import app
from seedline.records.tracking import Store
from seedline.workflow.reproduce import reproduce

from .conftest import clean_env, git, run_cli, run_here, run_here_json, run_json

JITTER = '''
"""Adds a tiny offset read from the environment: a stand-in for a platform-dependent last bit."""
import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Jitter(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.offset_ = float(os.environ.get("SEEDLINE_TEST_JITTER", "0"))
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) + self.offset_
'''

ENTROPY = '''
"""Draws from the operating system's entropy: no seed can reach it."""
import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Entropy(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.shift_ = np.frombuffer(os.urandom(8), dtype=np.uint64)[0] / 2.0**64
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) + self.shift_
'''

MODULE_V1 = """
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Scale(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) * 2.0
"""


def add_step(project: Path, module: str, source: str, cls: str, before: str = "pca") -> None:
    (project / f"{module}.py").write_text(source)
    spec = project / "seedline.yaml"
    spec.write_text(
        spec.read_text().replace(
            f"  - name: {before}\n",
            f"  - name: {module}\n    class: {module}.{cls}\n  - name: {before}\n",
        )
    )
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", f"add {module}")


@pytest.mark.slow
@pytest.mark.parametrize("example", ["penguins", "digits"])
def test_reproduce_is_bitwise_on_the_examples(example: str, request: pytest.FixtureRequest) -> None:
    """A fresh process rebuilds the run from its manifest alone: verdict bitwise, exit 0, linked to the original."""
    project: Path = request.getfixturevalue(example)
    rid = run_json(project, "run")["run_id"]
    proc = run_cli(project, "reproduce", rid[:10], "--json")
    report = json.loads(proc.stdout)
    assert report["verdict"] == "bitwise" and report["first_divergent_step"] is None
    assert report["original"] == rid and report["reproduction"] != rid
    assert all(s["fitted_equal"] and s["output_equal"] for s in report["steps"])
    assert isinstance(report["differences"], list)
    stored = run_here_json(project, "show", report["reproduction"])
    assert stored["parent_run"] == rid and stored["reproduction"]["verdict"] == "bitwise"
    assert (
        stored["fingerprints"]["model"]
        == run_here_json(project, "show", rid)["fingerprints"]["model"]
    )
    if example == "penguins":
        # the human verdict is the same words for every example: one more reproduction (a
        # fresh interpreter fitting again) for digits would prove nothing the JSON did not
        human = run_cli(project, "reproduce", rid).stdout
        assert "BITWISE" in human


@pytest.mark.slow
def test_a_changed_data_cell_fails_fast_naming_file_and_column(penguins: Path) -> None:
    """Before rerunning, a changed input fails the reproduction and names the file and the column."""
    rid = run_json(penguins, "run")["run_id"]
    csv = penguins / "data" / "penguins.csv"
    csv.write_text(
        csv.read_text().replace(
            "Adelie,Torgersen,39.1,18.7,181,3750", "Adelie,Torgersen,39.1,18.7,182,3750", 1
        )
    )
    proc = run_cli(penguins, "reproduce", rid, "--json", check=False)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["verdict"] == "failed" and report["reproduction"] is None
    first = report["differences"][0]
    assert (first["category"], first["name"]) == ("data", "data/penguins.csv")
    assert "flipper_length_mm" in first["detail"] and "bill_length_mm" not in first["detail"]
    assert (
        "data/penguins.csv" in report["likely_cause"]
        and "flipper_length_mm" in report["likely_cause"]
    )
    human = run_cli(penguins, "reproduce", rid, check=False)
    assert (
        human.returncode == 1 and "FAILED" in human.stdout and "--allow-data-change" in human.stdout
    )
    # with the override it reruns, and still explains the data as the cause
    allowed = reproduce(rid, project_root=penguins, allow_data_change=True)
    assert allowed.reproduction is not None and allowed.verdict == "failed"
    assert allowed.differences[0].category == "data"
    assert allowed.first_divergent_step == "prep"


@pytest.mark.slow
def test_diff_names_a_changed_param_first(penguins: Path) -> None:
    """After a params change, diff puts that key first, then the first divergent step and metrics."""
    a = run_json(penguins, "run")["run_id"]
    b = run_json(penguins, "run", "--set", "pipeline.clf.n_estimators=25")["run_id"]
    d = run_here_json(penguins, "diff", a, b)
    first = d["differences"][0]
    assert first == {
        "category": "params",
        "name": "pipeline.clf.params.n_estimators",
        "a": 200,
        "b": 25,
        "detail": "",
    }
    assert d["first_divergent_step"] == "clf"
    assert set(d["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro"}
    assert set(d["metrics"]["accuracy"]) == {"a", "b", "delta"}
    human = run_cli(penguins, "diff", a, b).stdout
    assert "pipeline.clf.params.n_estimators" in human and "first divergent step: clf" in human


@pytest.mark.slow
def test_a_package_recorded_differently_is_named_by_diff_and_reproduce(
    digits: Path, tmp_path: Path
) -> None:
    """Edit a manifest copy so scikit-learn's version differs: both tools name the package."""
    rid = run_json(digits, "run")["run_id"]
    manifest = run_here_json(digits, "show", rid)
    manifest["environment"]["packages"]["scikit-learn"] = "0.24.2"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(manifest))
    d = run_here_json(digits, "diff", str(edited), rid)
    names = [(x["category"], x["name"], x["a"]) for x in d["differences"]]
    assert ("environment", "package scikit-learn", "0.24.2") in names
    report = json.loads(run_cli(digits, "reproduce", str(edited), "--json").stdout)
    assert report["verdict"] == "bitwise"  # the code really is the same; the record was edited
    assert any(x["name"] == "package scikit-learn" for x in report["preflight"]["environment"])
    assert any(x["name"] == "package scikit-learn" for x in report["differences"])


@pytest.mark.slow
def test_a_manifest_file_reproduces_on_another_clone(digits: Path, tmp_path: Path) -> None:
    """seedline show --json > run.json on one clone, reproduce run.json on another: same verdict."""
    rid = run_json(digits, "run")["run_id"]
    (tmp_path / "run.json").write_text(run_here(digits, "show", rid, "--json").stdout)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(digits), str(clone))
    assert not (clone / ".seedline").exists()
    report = json.loads(run_cli(clone, "reproduce", str(tmp_path / "run.json"), "--json").stdout)
    assert report["verdict"] == "bitwise" and report["original"] == rid
    assert (clone / ".seedline").is_dir()


@pytest.mark.slow
def test_at_commit_reproduces_a_run_made_two_commits_ago(digits: Path) -> None:
    """Code moved on by two commits: a plain reproduce names the module; --at-commit is bitwise again."""
    add_step(digits, "custom", MODULE_V1, "Scale")
    rid = run_json(digits, "run")["run_id"]
    (digits / "custom.py").write_text(MODULE_V1.replace("* 2.0", "* 3.0"))
    git(digits, "commit", "-q", "-am", "scale by three")
    spec = digits / "seedline.yaml"
    spec.write_text(spec.read_text().replace("n_estimators: 150", "n_estimators: 20"))
    git(digits, "commit", "-q", "-am", "fewer trees")
    plain = json.loads(run_cli(digits, "reproduce", rid, "--json", check=False).stdout)
    assert plain["verdict"] != "bitwise"
    assert plain["first_divergent_step"] == "custom"
    assert any(
        d["category"] == "code" and d["name"] == "module custom" for d in plain["differences"]
    )
    at = json.loads(run_cli(digits, "reproduce", rid, "--at-commit", "--json").stdout)
    assert (
        at["verdict"] == "bitwise"
        and at["at_commit"] == run_here_json(digits, "show", rid)["code"]["commit"]
    )
    assert git(digits, "worktree", "list").count("\n") == 1, "the temporary worktree is removed"


@pytest.mark.slow
def test_small_deviations_give_a_tolerance_verdict_with_the_cause(
    digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A last-bit-sized change: verdict tolerance (exit 0, or 1 with --strict), the step and the variable named."""
    add_step(digits, "jitter", JITTER, "Jitter")
    rid = run_json(digits, "run", env=clean_env(SEEDLINE_TEST_JITTER="0"))["run_id"]
    # the run and its first reproduction are fresh processes, as a user's shell starts them
    env = clean_env(SEEDLINE_TEST_JITTER="1e-13")
    proc = run_cli(digits, "reproduce", rid, "--json", env=env)
    report = json.loads(proc.stdout)
    assert report["verdict"] == "tolerance"
    assert report["first_divergent_step"] == "jitter"
    assert "SEEDLINE_TEST_JITTER" in report["likely_cause"]
    jitter = next(s for s in report["steps"] if s["name"] == "jitter")
    assert 0 < jitter["output_deviation"]["max_abs"] < 1e-12
    assert report["tolerance"] == {"rtol": 1e-6, "atol": 1e-9}

    # the options' exit codes and verdicts: the same command in this process (typer's
    # runner, the variable set for the call), which spares three interpreter starts
    monkeypatch.chdir(digits)
    runner = CliRunner()
    strict = runner.invoke(
        app, ["reproduce", rid, "--strict"], env={"SEEDLINE_TEST_JITTER": "1e-13"}
    )
    assert strict.exit_code == 1, strict.output
    big = runner.invoke(app, ["reproduce", rid, "--json"], env={"SEEDLINE_TEST_JITTER": "0.5"})
    assert big.exit_code == 1 and json.loads(big.stdout)["verdict"] == "failed"
    loose = runner.invoke(
        app, ["reproduce", rid, "--json", "--atol", "1"], env={"SEEDLINE_TEST_JITTER": "0.5"}
    )
    assert loose.exit_code == 0, loose.output
    assert json.loads(loose.stdout)["tolerance"]["atol"] == 1.0
    assert json.loads(loose.stdout)["verdict"] == "tolerance"


def test_unexplained_divergence_is_blamed_on_the_step(digits: Path) -> None:
    """When no recorded input differs, the first divergent step is called nondeterministic."""
    add_step(digits, "entropy", ENTROPY, "Entropy")
    rid = seedline.run(digits / "seedline.yaml").run_id
    report = reproduce(rid, project_root=digits)
    assert report.verdict == "failed"
    assert report.first_divergent_step == "entropy"
    assert "nondeterministic" in report.likely_cause and "seedline check" in report.likely_cause


def test_reproduce_refuses_what_cannot_be_reproduced(digits: Path, tmp_path: Path) -> None:
    """A failed original, an unknown run and a non-manifest file each get a clear error."""
    from seedline.core.errors import SeedlineError

    seedline.run(digits / "seedline.yaml")
    with pytest.raises(SeedlineError, match="no run matches"):
        reproduce("zzzz", project_root=digits)
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(SeedlineError, match="not a seedline manifest"):
        reproduce(str(bad), store=Store.open(digits))


def test_reproduce_never_uses_the_cache(digits: Path) -> None:
    """Even with every step cached, the reproduction fits every step itself."""
    rid = seedline.run(digits / "seedline.yaml").run_id
    assert [s.cache for s in seedline.run(digits / "seedline.yaml").manifest.steps] == [
        "hit",
        "hit",
        "hit",
    ]
    report = reproduce(rid, project_root=digits)
    stored = Store.open(digits).manifest(report.reproduction or "")
    assert stored.settings.cache is False
    assert [s.cache for s in stored.steps] == [None, None, None]
