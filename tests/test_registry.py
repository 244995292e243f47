"""The model registry: versions, aliases, references, lineage, and the parity gate with its log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_cli
from .serving_support import object_path, project_with_run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A penguins project (a small forest, to keep it quick) with two runs that predict differently."""
    root, run_a = project_with_run(
        tmp_path_factory.mktemp("registry"), overrides=["pipeline.clf.n_estimators=15"]
    )
    import seedline

    run_b = seedline.run(
        root / "seedline.yaml", overrides=["pipeline.clf.n_estimators=15", "seed=1"]
    ).run_id
    return root, run_a, run_b


def test_register_versions_aliases_and_lineage_through_the_cli(
    project: tuple[Path, str, str],
) -> None:
    """register makes versions 1 and 2, models lists them, an alias moves, and show gives the lineage."""
    root, run_a, run_b = project
    v1 = json.loads(
        run_cli(
            root, "register", run_a, "--name", "penguins", "--alias", "production", "--json"
        ).stdout
    )
    v2 = json.loads(
        run_cli(root, "register", run_b, "--name", "penguins", "-d", "seed 1", "--json").stdout
    )
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["aliases"] == ["production"] and v2["description"] == "seed 1"

    listed = json.loads(run_cli(root, "models", "--json").stdout)
    assert listed[0]["name"] == "penguins" and listed[0]["latest_version"] == 2
    assert listed[0]["aliases"] == {"production": 1}

    moved = json.loads(run_cli(root, "alias", "penguins@production", "2", "--json").stdout)
    assert moved == {"name": "penguins", "alias": "production", "version": 2, "previous": 1}

    shown = json.loads(run_cli(root, "models", "show", "penguins@production", "--json").stdout)
    assert shown["model"]["version"] == 2 and shown["run"]["id"] == run_b
    assert shown["data"]["sources"][0]["fingerprint"].startswith("file:")
    assert shown["data"]["table"].startswith("table:")
    assert len(shown["code"]["commit"]) == 40
    assert shown["environment"]["fingerprint"].startswith("env:")
    assert shown["environment"]["packages"]["scikit-learn"]
    assert shown["seeds"]["master"] == 1 and shown["seeds"]["derived"]
    assert set(shown["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro"}
    assert [v["version"] for v in shown["versions"]] == [1, 2]

    human = run_cli(root, "models", "show", "penguins@production").stdout
    assert "penguins@2" in human and run_b in human and "metrics" in human


def test_every_kind_of_reference_resolves(project: tuple[Path, str, str]) -> None:
    """NAME (latest), NAME@N, NAME@alias, NAME@latest and run ids (and prefixes) name the right model."""
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run, resolve_source

    root, run_a, run_b = project
    store = Store.find(root)
    register_run(store, run_a, "refs")
    register_run(store, run_b, "refs")
    Registry(store).set_alias("refs", "champion", 1)
    assert resolve_source("refs", start=root).ref == "refs@2"
    assert resolve_source("refs@1", start=root).run_id == run_a
    assert resolve_source("refs@champion", start=root).ref == "refs@1"
    assert resolve_source("refs@latest", start=root).ref == "refs@2"
    by_run = resolve_source(run_a, start=root)
    assert by_run.registered is None and by_run.run_id == run_a
    assert resolve_source(run_a[:9] + run_a[9:12], start=root).run_id == run_a
    # the probe rows rebuilt for a bare run are the ones the registry stored
    assert by_run.probe_input.equals(resolve_source("refs@1", start=root).probe_input)


def test_unknown_references_and_bad_names_are_clear_errors(project: tuple[Path, str, str]) -> None:
    """Typos get did-you-mean, unknown aliases list the known ones, and malformed names are refused."""
    root, run_a, _ = project
    typo = run_cli(root, "models", "show", "pengiuns", check=False)
    assert typo.returncode == 2 and "Did you mean 'penguins'" in typo.stderr
    alias = run_cli(root, "models", "show", "penguins@stagign", check=False)
    assert alias.returncode == 2 and "no alias 'stagign'" in alias.stderr
    version = run_cli(root, "models", "show", "penguins@99", check=False)
    assert "has no version 99" in version.stderr
    bad = run_cli(root, "register", run_a, "--name", "no spaces", check=False)
    assert bad.returncode == 2 and "not a valid model name" in bad.stderr
    reserved = run_cli(root, "alias", "penguins@latest", "1", check=False)
    assert reserved.returncode == 2 and "cannot be an alias" in reserved.stderr


def test_a_reference_reads_the_same_without_sqlalchemy(project: tuple[Path, str, str]) -> None:
    """On the embedded default a model is found through sqlite3 (``records.versions``): the
    same version, aliases and all, as ``Registry`` gives; a reference that names nothing
    reads as nothing there and gets the registry's own error from ``resolve_source``."""
    from seedline.records.recording import EmbeddedRecorder
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.records.versions import ModelNotFoundError, find_version
    from seedline.workflow.registration import open_model_store, register_run, resolve_source

    root, run_a, run_b = project
    store = Store.find(root)
    register_run(store, run_a, "light")
    register_run(store, run_b, "light", description="the second")
    registry = Registry(store)
    registry.set_alias("light", "champ", 1)
    light = open_model_store(root)
    assert isinstance(light, EmbeddedRecorder)
    with light._reader() as rows:
        for ref in ("light", "light@1", "light@2", "light@latest", "light@champ"):
            assert find_version(rows, ref) == registry.resolve(ref)
        assert find_version(rows, "light@1").aliases == ["champ"]  # type: ignore[union-attr]
        for ref in ("light@9", "light@nochamp", "unknown"):
            assert find_version(rows, ref) is None
    for ref, says in (
        ("light@9", "has no version 9"),
        ("light@nochamp", "no alias 'nochamp'"),
        ("lihgt", "Did you mean 'light'"),
    ):
        with pytest.raises(ModelNotFoundError, match=says):
            resolve_source(ref, start=root)
    light.close()


def test_a_parity_check_is_logged_from_the_thread_that_loads_the_model(
    project: tuple[Path, str, str],
) -> None:
    """``serve`` finds its model on the main thread and logs the parity check from the thread
    that loads it: the embedded recorder takes statements from either, one at a time."""
    import threading

    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.records.versions import record_parity
    from seedline.workflow.registration import register_run, resolve_source

    root, run_a, _ = project
    register_run(Store.find(root), run_a, "threads")
    source = resolve_source("threads@1", start=root)
    failed: list[BaseException] = []

    def log(verdict: str) -> None:
        try:
            assert source.store is not None
            record_parity(
                source.store,
                action="thread-test",
                model="threads@1",
                run_id=run_a,
                verdict=verdict,
                overridden=verdict == "failed",
                detail={"verdict": verdict},
            )
        except BaseException as exc:
            failed.append(exc)

    workers = [threading.Thread(target=log, args=(v,)) for v in ("bitwise", "failed")]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failed == []
    logged = [
        (e["verdict"], e["overridden"], e["detail"])
        for e in Registry(Store.find(root)).parity_history(run_id=run_a)
        if e["action"] == "thread-test"
    ]
    assert sorted(logged) == [
        ("bitwise", False, {"verdict": "bitwise"}),
        ("failed", True, {"verdict": "failed"}),
    ]


def test_predict_on_the_embedded_store_never_imports_sqlalchemy(
    project: tuple[Path, str, str], tmp_path: Path
) -> None:
    """``seedline predict`` finds the model, checks parity and logs it with sqlite3 alone."""
    import os
    import subprocess
    import sys

    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.storage.embedded import DATABASE_ENV, OBJECTS_ENV
    from seedline.workflow.registration import register_run, resolve_source

    root, run_a, _ = project
    register_run(Store.find(root), run_a, "quiet")
    resolve_source("quiet@1", start=root).probe_input.to_csv(tmp_path / "in.csv", index=False)
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('SQLALCHEMY', 'sqlalchemy' in sys.modules, file=sys.stderr))\n"
        "sys.argv = ['seedline', *sys.argv[1:]]\n"
        "from seedline.cli.launch import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (DATABASE_ENV, OBJECTS_ENV)}
    before = len(Registry(Store.find(root)).parity_history(run_id=run_a, limit=1000))
    out = str(tmp_path / "out.csv")
    proc = subprocess.run(
        [sys.executable, "-c", probe, "predict", "quiet@1", str(tmp_path / "in.csv"), "-o", out],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "SQLALCHEMY False" in proc.stderr
    assert (tmp_path / "out.csv").read_text().count("\n") > 1
    history = Registry(Store.find(root)).parity_history(run_id=run_a, limit=1000)
    assert len(history) == before + 1
    assert (history[0]["action"], history[0]["model"]) == ("predict", "quiet@1")


def test_registration_fails_clearly_when_the_data_changed(tmp_path: Path) -> None:
    """After a data cell changes, registering the old run says the data changed and names the column."""
    root, run_id = project_with_run(tmp_path, overrides=["pipeline.clf.n_estimators=5"])
    csv = root / "data" / "penguins.csv"
    lines = csv.read_text().splitlines()
    # change every row so the test split certainly sees it
    lines[1:] = [line.replace(",2007", ",2017") for line in lines[1:]]
    csv.write_text("\n".join(lines) + "\n")
    out = run_cli(root, "register", run_id, "--name", "changed", check=False)
    assert out.returncode == 2
    assert "the data changed since run" in out.stderr and "year" in out.stderr
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store

    assert not Registry(Store.find(root)).has_model("changed")


def test_registry_tables_are_at_the_head_migration(project: tuple[Path, str, str]) -> None:
    """The store's database is migrated to the head (0003, the registry, or later), with the registry's three tables."""
    from sqlalchemy import inspect

    from seedline.records.tracking import Store
    from seedline.storage.metadata import HEAD_REVISION, current_revision

    store = Store.find(project[0])
    assert current_revision(store.engine) == HEAD_REVISION and HEAD_REVISION >= "0003"
    tables = set(inspect(store.engine).get_table_names())
    assert {"model_versions", "model_aliases", "parity_checks"} <= tables


class BatchSensitive:
    """A model whose probabilities move with the number of rows asked together (or that raises)."""

    def __init__(self, model: Any, fail: bool = False) -> None:
        self.model, self.fail = model, fail

    def predict(self, X: Any) -> Any:
        if self.fail:
            raise ValueError("no")
        return self.model.predict(X)

    def predict_proba(self, X: Any) -> Any:
        return self.model.predict_proba(X) + 1e-12 * len(X)


def test_parity_refuses_a_model_whose_probe_predictions_differ(
    project: tuple[Path, str, str],
) -> None:
    """A version whose stored probe predictions are not what its model predicts is refused, and an override is logged."""
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.workflow.parity import ParityError, check_batching, check_parity, enforce
    from seedline.workflow.registration import load_estimator, register_run, resolve_source

    root, run_a, run_b = project
    store = Store.find(root)
    registry = Registry(store)
    good = register_run(store, run_a, "mixed")
    other = register_run(store, run_b, "other")
    # the model of run A with the probe predictions of run B (another seed): they cannot agree
    bad = registry.create_version(
        name="mixed",
        run_id=run_a,
        model_object=good.model_object,
        manifest_object=good.manifest_object,
        probe_object=other.probe_object,
        probe_input_object=good.probe_input_object,
        input_schema=good.input_schema,
        model_fingerprint=good.model_fingerprint,
        predictions_fingerprint=other.predictions_fingerprint,
    )
    source = resolve_source(bad.ref, start=root)
    model = load_estimator(source.model_bytes)
    report = check_parity(model, source, action="test")
    assert report.verdict == "failed" and not report.ok
    assert report.proba is not None and report.proba["max_abs"] > 0
    with pytest.raises(ParityError) as err:
        enforce(report, source, allow_mismatch=False)
    assert (
        "parity check failed" in err.value.message and "probabilities differ" in err.value.message
    )

    # the CLI refuses batch prediction, and lets it through (logged) with the override
    out = root / "out.csv"
    refused = run_cli(root, "predict", bad.ref, "data/penguins.csv", "-o", str(out), check=False)
    assert refused.returncode == 2 and "parity check failed" in refused.stderr and not out.exists()
    forced = run_cli(
        root, "predict", bad.ref, "data/penguins.csv", "-o", str(out), "--allow-parity-mismatch"
    )
    assert "overridden" in forced.stderr and out.exists()
    log = registry.parity_history(run_id=run_a)
    assert any(c["overridden"] and c["action"] == "predict" and c["model"] == bad.ref for c in log)
    assert any(not c["overridden"] and c["verdict"] == "failed" for c in log)

    # the good version passes bitwise in this environment
    good_source = resolve_source(good.ref, start=root)
    fine = check_parity(model, good_source, action="test")
    assert fine.verdict == "bitwise"
    # rows one at a time against rows together, as a server checks once ready
    assert check_batching(model, good_source, 4) == {"rows_checked": 4, "consistent": True}
    assert check_batching(BatchSensitive(model), good_source, 4)["consistent"] is False
    assert check_batching(BatchSensitive(model, fail=True), good_source, 4) == {
        "rows_checked": 0,
        "consistent": False,
    }
    assert object_path(root, good.probe_input_object).is_file()
