"""End-to-end: the seedline command line in fresh processes, as a user's shell starts it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import clean_env, git, run_cli, run_here_json, run_json

HASHY = '''
"""A transformer whose output order depends on string hashing (iterates a set of names)."""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class SetOrder(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        names = {f"feature-{i}" for i in range(np.asarray(X).shape[1])}
        self.order_ = [int(n.rsplit("-", 1)[1]) for n in names]
        return self

    def transform(self, X):
        return np.asarray(X)[:, self.order_]
'''


@pytest.mark.slow
@pytest.mark.parametrize("example", ["penguins", "digits"])
def test_runs_from_shells_with_different_hash_seeds_are_bitwise_identical(
    example: str, request: pytest.FixtureRequest
) -> None:
    """Whatever PYTHONHASHSEED the shell had (unset, 1, 2), model and predictions fingerprints are identical."""
    project: Path = request.getfixturevalue(example)
    results = [
        run_json(project, "run", env=clean_env(PYTHONHASHSEED=hs)) for hs in (None, "1", "2")
    ]
    assert {r["status"] for r in results} == {"succeeded"}
    assert len({r["run_id"] for r in results}) == 3
    assert len({r["fingerprints"]["model"] for r in results}) == 1
    assert len({r["fingerprints"]["predictions"] for r in results}) == 1
    assert len({json.dumps(r["metrics"], sort_keys=True) for r in results}) == 1
    assert all(isinstance(v, float) for v in results[0]["metrics"].values())
    assert results[0]["fingerprints"]["model"].startswith("model:")


@pytest.mark.slow
def test_the_cli_pins_the_hash_seed_so_hash_sensitive_steps_reproduce(digits: Path) -> None:
    """A step that iterates a set of strings reproduces via the CLI, and (negative control) not without the pin."""
    (digits / "hashy.py").write_text(HASHY)
    spec = digits / "seedline.yaml"
    # 20 trees, not 150: the hash seed reaches the forest through the shuffled columns alone
    text = (
        spec.read_text()
        .replace("  - name: pca\n", "  - name: shuffle\n    class: hashy.SetOrder\n  - name: pca\n")
        .replace("params: {n_estimators: 150}", "params: {n_estimators: 20}")
    )
    assert "n_estimators: 20" in text
    spec.write_text(text)
    git(digits, "add", "-A")
    git(digits, "commit", "-q", "-m", "hash-sensitive step")
    via_cli = [run_json(digits, "run", env=clean_env(PYTHONHASHSEED=hs)) for hs in ("1", "2")]
    assert via_cli[0]["fingerprints"]["model"] == via_cli[1]["fingerprints"]["model"]
    shown = run_json(digits, "show", via_cli[0]["run_id"])
    assert shown["seeds"]["hash_seed"]["pinned"] is True
    assert shown["code"]["local_modules"]["hashy"]["path"] == "hashy.py"
    # negative control: the library API cannot re-exec, so the shell's hash seed leaks through
    code = "import json, seedline; print(json.dumps(seedline.run('seedline.yaml', use_cache=False).fingerprints))"
    direct = []
    for hs in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=digits,
            env=clean_env(PYTHONHASHSEED=hs),
            capture_output=True,
            text=True,
            check=True,
        )
        direct.append(json.loads(out.stdout.strip().splitlines()[-1])["model"])
    assert direct[0] != direct[1], (
        "the test transformer should be hash-seed sensitive without seedline's pin"
    )


@pytest.mark.slow
def test_editing_one_data_cell_changes_that_columns_hash_only(penguins: Path) -> None:
    """After one value of one column changes, the table digest and that column's hash change, no other."""
    # the manifests are read in this process: what is tested is what each run recorded
    first = run_here_json(penguins, "show", run_json(penguins, "run")["run_id"])
    csv = penguins / "data" / "penguins.csv"
    lines = csv.read_text().splitlines()
    cells = lines[1].split(",")
    assert cells[2] == "39.1"
    cells[2] = "39.2"  # bill_length_mm of the first penguin
    lines[1] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    second = run_here_json(penguins, "show", run_json(penguins, "run")["run_id"])
    a, b = first["data"]["table"], second["data"]["table"]
    assert a["digest"] != b["digest"]
    assert [c for c in a["columns"] if a["columns"][c] != b["columns"][c]] == ["bill_length_mm"]
    assert first["data"]["sources"][0]["fingerprint"] != second["data"]["sources"][0]["fingerprint"]
    assert second["code"]["changed_files"] == ["data/penguins.csv"]


@pytest.mark.slow
def test_set_overrides_are_applied_and_recorded(penguins: Path) -> None:
    """--set changes the spec for this run and is written in the manifest."""
    out = run_json(
        penguins, "run", "--set", "pipeline.clf.n_estimators=20", "--set", "split.test_size=0.3"
    )
    m = run_here_json(penguins, "show", out["run_id"])
    assert m["overrides"] == ["pipeline.clf.n_estimators=20", "split.test_size=0.3"]
    assert m["spec"]["pipeline"][1]["params"]["n_estimators"] == 20
    assert m["data"]["split"]["test_rows"] == 104


@pytest.mark.slow
def test_a_failing_run_exits_1_and_is_listed_as_failed(penguins: Path) -> None:
    """A step that raises: exit status 1, --json says failed, runs lists it, show has the error."""
    (penguins / "bad.py").write_text(
        "from sklearn.base import BaseEstimator, TransformerMixin\n"
        "class Exploder(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None):\n        raise ValueError('exploded on purpose')\n"
    )
    proc = run_cli(
        penguins,
        "run",
        "--json",
        "--set",
        "pipeline.clf.class=bad.Exploder",
        "--set",
        "pipeline.clf.params={}",
        check=False,
    )
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["status"] == "failed" and "exploded on purpose" in summary["error"]["message"]
    assert "exploded on purpose" in proc.stderr and "seedline show" in proc.stderr
    listing = run_json(penguins, "runs")
    assert listing[0]["run_id"] == summary["run_id"] and listing[0]["status"] == "failed"
    human = run_cli(penguins, "show", summary["run_id"][:11]).stdout
    assert "failed" in human and "ValueError" in human


@pytest.mark.slow
def test_malformed_spec_errors_name_file_and_line(penguins: Path) -> None:
    """Exit status 2 and a message with file:line, no traceback."""
    spec = penguins / "seedline.yaml"
    spec.write_text(spec.read_text().replace("  target: species", "  target: species: oops"))
    proc = run_cli(penguins, "run", check=False)
    assert proc.returncode == 2
    assert "seedline.yaml:9" in proc.stderr and "malformed YAML" in proc.stderr
    assert "Traceback" not in proc.stderr
    spec.write_text(
        spec.read_text()
        .replace("  target: species: oops", "  target: species")
        .replace("RandomForestClassifier", "RandomForestClasifier")
    )
    proc = run_cli(penguins, "run", check=False)
    assert proc.returncode == 2 and "Did you mean one of 'RandomForestClassifier'" in proc.stderr


def test_help_does_not_import_scikit_learn() -> None:
    """seedline --help starts fast: scikit-learn (and numpy, pandas) are not imported."""
    code = "import sys; from seedline.cli.main import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('sklearn', 'numpy', 'pandas', 'sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_listing_commands_do_not_import_numpy_pandas_or_scikit_learn(tmp_path: Path) -> None:
    """runs, sweeps, models, cache ls and cache du read the store without the numerical stack."""
    from seedline.records.tracking import Store

    Store.open(tmp_path).close()
    code = (
        "import sys\nfrom seedline.cli.main import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('sklearn', 'numpy', 'pandas', 'scipy') if m in sys.modules))"
    )
    for command in (["runs"], ["sweeps"], ["models"], ["cache", "ls"], ["cache", "du"]):
        out = subprocess.run(
            [sys.executable, "-c", code, *command],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_env(),
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "[]", (command, out.stdout)


def test_version() -> None:
    import seedline

    out = subprocess.run(
        [sys.executable, "-m", "seedline", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"seedline {seedline.__version__}"


@pytest.mark.slow
def test_init_scaffolds_a_project_that_runs(tmp_path: Path) -> None:
    """init writes a working spec and data; run then succeeds; init refuses to overwrite."""
    out = run_cli(tmp_path, "init", "proj")
    proj = tmp_path / "proj"
    assert (
        (proj / "seedline.yaml").exists()
        and (proj / "data" / "penguins.csv").exists()
        and (proj / ".seedline").is_dir()
    )
    assert "seedline run" in out.stdout
    result = run_json(proj, "run")
    assert result["status"] == "succeeded"
    again = run_cli(tmp_path, "init", "proj", check=False)
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr


@pytest.mark.slow
def test_runs_and_show_human_output_and_prefixes(digits: Path) -> None:
    """runs shows a table; show accepts a unique prefix and explains an unknown one."""
    rid = run_json(digits, "run")["run_id"]
    table = run_cli(digits, "runs").stdout
    assert rid in table and "succeeded" in table
    shown = run_cli(digits, "show", rid[:10]).stdout
    assert rid in shown and "PYTHONHASHSEED" in shown and "pca" in shown
    missing = run_cli(digits, "show", "zzzz", check=False)
    assert missing.returncode == 2 and "no run matches 'zzzz'" in missing.stderr
    nowhere = run_cli(digits.parent, "runs", check=False)
    assert nowhere.returncode == 2 and "seedline init" in nowhere.stderr
