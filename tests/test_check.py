"""``seedline check``: each kind of nondeterminism is caught and blamed on the right step.

The projects are copies of the examples with ``badsteps.py``, a module of deliberately bad
transformers, added. End-to-end checks run in fresh interpreters, as a user's shell would.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seedline.workflow.check import check, compare_fits
from seedline.workflow.probe import StepResult

from .conftest import CliResult, clean_env, git, make_project

BADSTEPS = '''
"""Deliberately bad transformers: each hides a kind of nondeterminism seedline check must catch."""
import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin


class GlobalNoise(TransformerMixin, BaseEstimator):
    """Adds noise drawn at fit time from NumPy's global RNG, which the seed plan cannot reach."""

    def fit(self, X, y=None):
        self.noise_ = np.random.normal(scale=1e-3, size=np.asarray(X).shape[1])
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) + self.noise_


class SetOrder(TransformerMixin, BaseEstimator):
    """Orders its output columns by iterating a set of strings: the order follows the hash seed."""

    def fit(self, X, y=None):
        names = {f"feature-{i}" for i in range(np.asarray(X).shape[1])}
        self.order_ = [int(n.rsplit("-", 1)[1]) for n in names]
        return self

    def transform(self, X):
        return np.asarray(X)[:, self.order_]


class BlasThreads(TransformerMixin, BaseEstimator):
    """Float32 matrix-vector products tall.T @ v, built from the data, that depend on the BLAS thread count.

    OpenBLAS splits such a product between threads when the width is not a multiple of 32,
    so 1 and 2 threads add in different orders and round differently (tall.T @ tall does not).
    """

    def fit(self, X, y=None):
        flat = np.asarray(X, dtype=np.float32).ravel()
        weights = []
        for rows, width in ((100_000, 50), (100_000, 63), (2_000, 2_000)):
            tall = np.resize(flat, rows * width).reshape(rows, width)
            weights.append(tall.T @ np.linspace(-1.0, 1.0, rows, dtype=np.float32))
        self.weights_ = np.concatenate(weights)
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) + float(self.weights_.sum(dtype=np.float64)) * 1e-6


class ChunkedSum(TransformerMixin, BaseEstimator):
    """Column sums accumulated in float32 over one chunk per job: the chunking changes the rounding."""

    def __init__(self, n_jobs=None):
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float32)
        chunks = np.array_split(X, 1 if self.n_jobs is None else self.n_jobs)
        parts = Parallel(n_jobs=self.n_jobs)(
            delayed(np.cumsum)(c, axis=0, dtype=np.float32) for c in chunks
        )
        self.sums_ = np.sum([p[-1] for p in parts], axis=0, dtype=np.float32)
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64)


class Unreachable(TransformerMixin, BaseEstimator):
    """Random consumers the seed plan cannot reach: a seed left None and a RandomState instance."""

    def __init__(self, seed=None, random_state=np.random.RandomState(0)):
        self.seed = seed
        self.random_state = random_state

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64)
'''

# until cli/main.py registers the command, a two-line typer app runs the same function
_CHECK_APP = (
    "import typer\n"
    "from seedline.cli.check_cmd import check_cmd\n"
    "app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)\n"
    "app.callback()(lambda: None)\n"
    "app.command('check')(check_cmd)\n"
    "app()\n"
)


def _registered() -> bool:
    from seedline.cli.main import app

    return any(c.name == "check" for c in app.registered_commands)


def run_check(cwd: Path, *args: str) -> CliResult:
    """``seedline check ARGS`` in a fresh interpreter."""
    start = ["-m", "seedline"] if _registered() else ["-c", _CHECK_APP]
    return subprocess.run(
        [sys.executable, *start, "check", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def check_json(cwd: Path, *args: str, expect: int) -> Any:
    proc = run_check(cwd, *args, "--json")
    assert proc.returncode == expect, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return json.loads(proc.stdout)


def add_bad_steps(project: Path, steps: list[tuple[str, str]], before: str = "pca") -> None:
    """Insert badsteps classes as steps before step ``before`` and commit, so the tree is clean.

    The digits forest is cut to 20 trees: which step is blamed does not depend on the size of
    a deterministic step downstream, and check fits the pipeline about eight times.
    """
    (project / "badsteps.py").write_text(BADSTEPS)
    spec = project / "seedline.yaml"
    block = "".join(f"  - name: {name}\n    class: badsteps.{cls}\n" for name, cls in steps)
    text = spec.read_text().replace("params: {n_estimators: 150}", "params: {n_estimators: 20}")
    assert f"  - name: {before}\n" in text
    spec.write_text(text.replace(f"  - name: {before}\n", block + f"  - name: {before}\n"))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "bad steps")


def stored_report(project: Path, human_output: str) -> Any:
    """The report a ``check`` stored, by the id its human output names: the dict --json prints."""
    from seedline.records.browsing import check_report
    from seedline.records.tracking import Store

    found = re.search(r"stored as check report (\w+)", human_output)
    assert found, human_output
    store = Store.open(project, create=False)
    try:
        return check_report(store, found.group(1))["report"]
    finally:
        store.close()


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["verdict"] for s in report["steps"]}


def reasons(report: dict[str, Any], step: str) -> str:
    return " | ".join(next(s for s in report["steps"] if s["name"] == step)["reasons"])


def hygiene_kinds(report: dict[str, Any]) -> list[str]:
    return [h["kind"] for h in report["hygiene"]]


# -- attribution, without fitting ----------------------------------------------------------
def _fit(*states: tuple[str, str, str | None]) -> list[StepResult]:
    return [StepResult(name=n, cls="c", fitted=f, output=o) for n, f, o in states]


def test_compare_fits_blames_the_first_differing_output_and_marks_later_steps_downstream() -> None:
    """Steps after the first one whose output differs are 'downstream' of it, not themselves different."""
    a = _fit(("a", "f1", "o1"), ("b", "f2", "o2"), ("c", "f3", "o3"), ("d", "f4", None))
    b = _fit(("a", "f1", "o1"), ("b", "F2", "O2"), ("c", "F3", "O3"), ("d", "f4", None))
    diffs = compare_fits(a, b)
    assert not diffs["a"].differs
    assert diffs["b"].fitted and diffs["b"].output and diffs["b"].downstream_of is None
    assert diffs["c"].downstream_of == "b"
    assert not diffs["d"].differs and diffs["d"].downstream_of is None
    # a fitted state that differs while the output does not blames no later step
    c = _fit(("a", "F1", "o1"), ("b", "f2", "o2"), ("c", "F3", "o3"), ("d", "f4", None))
    diffs = compare_fits(a, c)
    assert diffs["a"].fitted and not diffs["a"].output
    assert diffs["c"].fitted and diffs["c"].downstream_of is None


def test_probe_refuses_a_bad_request_with_a_json_error() -> None:
    """The child-process entry answers a malformed request with exit status 2 and a JSON error."""
    proc = subprocess.run(
        [sys.executable, "-m", "seedline.workflow.probe", '{"spec": {}}'],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert proc.returncode == 2
    assert "lacks" in json.loads(proc.stdout)["error"]["message"]


def test_the_command_module_does_not_import_scikit_learn() -> None:
    """Importing the check command (as cli/main.py will) imports typer only, not the ML stack."""
    code = (
        "import sys; import seedline.cli.check_cmd\n"
        "print(sorted(m for m in ('sklearn', 'numpy', 'pandas', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- each kind of nondeterminism, caught -----------------------------------------------------
@pytest.mark.slow
def test_a_step_drawing_from_the_global_rng_is_nondeterministic_and_a_hygiene_finding(
    digits: Path,
) -> None:
    """Noise from np.random in fit: verdict nondeterministic, exit 1, and a global_rng hygiene finding."""
    add_bad_steps(digits, [("noise", "GlobalNoise")])
    # one check, shown to a person; the report it stored is what --json prints (to_dict)
    human = run_check(digits)
    assert human.returncode == 1
    assert "nondeterministic" in human.stdout and "noise" in human.stdout
    assert "global_rng" in human.stdout
    report = stored_report(digits, human.stdout)
    assert verdicts(report)["noise"] == "nondeterministic"
    assert "global RNG" in reasons(report, "noise")
    assert "random_state" in next(s for s in report["steps"] if s["name"] == "noise")["advice"]
    # later steps got a different input: downstream, not blamed
    assert "downstream of 'noise'" in reasons(report, "pca")
    assert verdicts(report)["scale"] == "deterministic"
    rng = [h for h in report["hygiene"] if h["kind"] == "global_rng"]
    assert len(rng) == 1 and "'noise'" in rng[0]["message"]


@pytest.mark.slow
def test_a_step_iterating_a_set_of_strings_is_hash_seed_sensitive(digits: Path) -> None:
    """Column order from a set of strings: same within a process, different across PYTHONHASHSEED."""
    add_bad_steps(digits, [("shuffle", "SetOrder")])
    report = check_json(digits, expect=0)
    assert verdicts(report)["shuffle"] == "hash-seed sensitive"
    assert "PYTHONHASHSEED=1 and 2" in reasons(report, "shuffle")
    assert "sorted(" in next(s for s in report["steps"] if s["name"] == "shuffle")["advice"]
    hs = report["comparisons"]["hash_seed"]["steps"]
    assert hs["shuffle"]["downstream_of"] is None and hs["pca"]["downstream_of"] == "shuffle"
    assert report["comparisons"]["repeat"]["steps"]["shuffle"]["fitted"] == "same"
    assert verdicts(report)["clf"] == "deterministic"


@pytest.mark.slow
def test_a_step_whose_float32_product_depends_on_blas_threads_is_thread_count_sensitive(
    digits: Path,
) -> None:
    """X.T @ v in float32 rounds differently on 1 and on 2 BLAS threads: thread-count sensitive."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip(
            "this machine has 1 CPU: check compares 1 thread with os.cpu_count() threads, so there is no second count"
        )
    add_bad_steps(digits, [("blas", "BlasThreads")])
    report = check_json(digits, expect=0)
    assert verdicts(report)["blas"] == "thread-count sensitive", reasons(report, "blas")
    assert "BLAS/OpenMP threads" in reasons(report, "blas")
    assert "execution.threads" in next(s for s in report["steps"] if s["name"] == "blas")["advice"]
    assert report["comparisons"]["threads"]["settings"]["values"] == [1, os.cpu_count()]
    assert report["comparisons"]["repeat"]["steps"]["blas"]["fitted"] == "same"
    assert report["comparisons"]["hash_seed"]["steps"]["blas"]["fitted"] == "same"


@pytest.mark.slow
def test_a_step_whose_result_depends_on_n_jobs_is_thread_count_sensitive(digits: Path) -> None:
    """Float32 sums chunked by n_jobs: thread-count sensitive, with n_jobs named; the forest's n_jobs is harmless."""
    add_bad_steps(digits, [("chunks", "ChunkedSum")])
    report = check_json(digits, expect=0)
    assert verdicts(report)["chunks"] == "thread-count sensitive"
    assert "n_jobs=1 and n_jobs=2" in reasons(report, "chunks")
    cmp = report["comparisons"]["n_jobs"]
    assert cmp["settings"]["params"] == ["chunks__n_jobs", "clf__n_jobs"]
    assert cmp["steps"]["chunks"]["fitted"] == "differs"
    # blanking n_jobs leaves the random forest identical: the parameter itself is not a difference
    assert cmp["steps"]["clf"]["fitted"] == "same"


@pytest.mark.slow
def test_several_bad_steps_are_each_blamed_for_their_own_kind(digits: Path) -> None:
    """With every bad step in one pipeline, each gets its own verdict and unseeded consumers show in hygiene."""
    add_bad_steps(
        digits,
        [
            ("noise", "GlobalNoise"),
            ("shuffle", "SetOrder"),
            ("blas", "BlasThreads"),
            ("chunks", "ChunkedSum"),
            ("odd", "Unreachable"),
        ],
    )
    report = check_json(digits, expect=1)
    v = verdicts(report)
    assert v["scale"] == "deterministic"
    assert v["noise"] == "nondeterministic"
    assert v["shuffle"] == "hash-seed sensitive"
    assert v["chunks"] == "thread-count sensitive"
    assert v["odd"] == "deterministic"
    if (os.cpu_count() or 1) >= 2:
        assert v["blas"] == "thread-count sensitive"
    assert "downstream of 'noise'" in reasons(report, "shuffle")
    kinds = hygiene_kinds(report)
    assert {"global_rng", "unseeded_param", "random_state_instance"} <= set(kinds)
    messages = " ".join(h["message"] for h in report["hygiene"])
    assert "'odd__seed'" in messages and "'odd__random_state'" in messages


# -- clean examples, output contract, errors ---------------------------------------------------
@pytest.fixture(scope="module")
def penguins_checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The unmodified penguins example and its ``check --json --sample 100`` report.

    Read by the clean-examples test and the output-contract test: one check (a fresh
    interpreter and its probes, about 20 s of CPU) serves both.
    """
    project = make_project(tmp_path_factory.mktemp("checked"), "penguins")
    return project, check_json(project, "--sample", "100", expect=0)


@pytest.mark.slow
@pytest.mark.parametrize("example", ["penguins", "digits"])
def test_the_unmodified_examples_have_no_nondeterministic_step(
    example: str, request: pytest.FixtureRequest
) -> None:
    """The shipped examples exit 0: nothing nondeterministic or hash-seed sensitive, clean tree, no RNG hygiene."""
    if example == "penguins":
        report = request.getfixturevalue("penguins_checked")[1]
    else:
        report = check_json(request.getfixturevalue(example), expect=0)
    v = verdicts(report)
    if example == "penguins":
        assert set(v.values()) == {"deterministic"}
    else:
        # PCA's matrix products use OpenBLAS, whose gemm rounds differently on 1 and on 2
        # threads on some machines; the spec pins execution.threads, so runs reproduce
        assert v["scale"] == v["clf"] == "deterministic"
        assert v["pca"] in ("deterministic", "thread-count sensitive")
    assert not {"global_rng", "dirty_tree", "unseeded_param"} & set(hygiene_kinds(report))


@pytest.mark.slow
def test_json_output_has_the_documented_keys(penguins_checked: tuple[Path, Any]) -> None:
    """--json prints spec, sample_rows, steps, hygiene, comparisons and seconds; --sample is honoured."""
    penguins, report = penguins_checked
    assert set(report) == {"spec", "sample_rows", "steps", "hygiene", "comparisons", "seconds"}
    assert report["spec"] == "penguins" and report["sample_rows"] == 100
    assert [s["name"] for s in report["steps"]] == ["prep", "clf"]
    for step in report["steps"]:
        assert set(step) == {"name", "class", "verdict", "reasons", "advice"}
        assert step["reasons"] and isinstance(step["advice"], str)
    for finding in report["hygiene"]:
        assert set(finding) == {"kind", "message", "advice"}
    assert set(report["comparisons"]) == {"repeat", "hash_seed", "threads", "n_jobs"}
    for cmp in report["comparisons"].values():
        assert {"description", "a", "b", "settings", "skipped", "steps"} <= set(cmp)
    assert report["comparisons"]["hash_seed"]["settings"]["values"] == [1, 2]
    assert isinstance(report["seconds"], float) and report["seconds"] > 0
    human = run_check(penguins, "--sample", "100")
    assert human.returncode == 0 and "prep" in human.stdout and "deterministic" in human.stdout


@pytest.mark.slow
def test_spec_and_data_errors_exit_2_without_a_traceback(penguins: Path) -> None:
    """A missing spec file and a missing target column exit 2 with a clear message, like seedline run."""
    missing = run_check(penguins, "nowhere.yaml")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    spec = penguins / "seedline.yaml"
    spec.write_text(spec.read_text().replace("target: species", "target: speciez"))
    bad = run_check(penguins)
    assert bad.returncode == 2
    assert "speciez" in bad.stderr and "Did you mean 'species'" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- hygiene, through the Python API -------------------------------------------------------------
@pytest.mark.slow
def test_a_dirty_tree_and_a_missing_lock_file_are_hygiene_findings(penguins: Path) -> None:
    """A committed project lacks only a lock file; edits make it dirty; a fully pinned requirements.txt is a lock."""
    np_state, py_state = np.random.get_state(legacy=False), random.getstate()
    clean = check(penguins, sample=60)
    # check seeds the global generators while it works, and gives them back as they were
    assert np.random.get_state(legacy=False)["state"]["pos"] == np_state["state"]["pos"]
    assert np.array_equal(
        np.random.get_state(legacy=False)["state"]["key"], np_state["state"]["key"]
    )
    assert random.getstate() == py_state
    kinds = [h.kind for h in clean.hygiene]
    assert kinds == ["no_lock_file"]
    assert str(penguins) in clean.hygiene[0].message

    (penguins / "requirements.txt").write_text("scikit-learn==1.5.2\nnumpy>=1.26\n")
    dirty = check(penguins, sample=60)
    found = {h.kind: h for h in dirty.hygiene}
    assert "dirty_tree" in found and "requirements.txt" in found["dirty_tree"].message
    assert "no_lock_file" in found and "numpy>=1.26" in found["no_lock_file"].message

    (penguins / "requirements.txt").write_text("# pinned\nscikit-learn==1.5.2\nnumpy==2.1.0\n")
    git(penguins, "add", "-A")
    git(penguins, "commit", "-q", "-m", "lock")
    locked = check(penguins, sample=60)
    assert [h.kind for h in locked.hygiene] == []


@pytest.mark.slow
def test_data_outside_the_project_or_untracked_is_a_hygiene_finding(
    penguins: Path, tmp_path: Path
) -> None:
    """A data file outside the project, and one inside it that git does not track, are both reported."""
    shutil.copy(penguins / "data" / "penguins.csv", tmp_path / "outside.csv")
    shutil.copy(penguins / "data" / "penguins.csv", penguins / "data" / "untracked.csv")
    spec = penguins / "seedline.yaml"
    spec.write_text(
        spec.read_text().replace(
            "  source: data/penguins.csv",
            "  sources: [data/penguins.csv, ../outside.csv, data/untracked.csv]",
        )
    )
    report = check(penguins, sample=60)
    by_kind: dict[str, list[str]] = {}
    for h in report.hygiene:
        by_kind.setdefault(h.kind, []).append(h.message)
    assert by_kind["data_outside_project"] == [
        f"data file '../outside.csv' lies outside the project ({(tmp_path / 'outside.csv').resolve()})"
    ]
    untracked = " ".join(by_kind["data_untracked"])
    assert "'data/untracked.csv'" in untracked and "'../outside.csv'" in untracked
    assert "'data/penguins.csv'" not in untracked


def test_thread_advice_does_not_ask_to_pin_threads_that_are_already_pinned() -> None:
    """A step that differs between 1 and 4 BLAS threads under execution.threads=1 is told to keep the value, not to pin it."""
    from seedline.workflow.check import THREAD_SENSITIVE, Comparison, StepDiff, _verdict
    from seedline.workflow.probe import StepResult

    step = StepResult(name="clf", cls="x.Y", fitted="estimator:a", output=None)
    same = Comparison(
        name="repeat", description="", a="1", b="2", steps={"clf": StepDiff(False, False)}
    )
    threads = Comparison(
        name="threads",
        description="",
        a="1 thread",
        b="4 threads",
        settings={"values": [1, 4]},
        steps={"clf": StepDiff(fitted=True, output=False)},
    )
    v = _verdict(step, {"repeat": same, "threads": threads}, [], threads=1)
    assert v.verdict == THREAD_SENSITIVE
    assert "pin execution.threads in the spec" not in v.advice
    assert "already pins BLAS/OpenMP to execution.threads=1" in v.advice
