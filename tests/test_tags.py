"""Run tags: set at run time or afterwards, filtered on, carried by push/pull, outside every fingerprint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

SPEC = """\
name: tagged
seed: 3
data:
  source: sklearn:load_iris
  target: target
split: {kind: holdout, test_size: 0.3, stratify: true}
pipeline:
  - name: clf
    class: sklearn.tree.DecisionTreeClassifier
    params: {max_depth: 2}
metrics: [accuracy]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs of one spec: one tagged at run time, one not."""
    import seedline

    root = tmp_path_factory.mktemp("tags")
    spec = root / "seedline.yaml"
    spec.write_text(SPEC)
    tagged = seedline.run(spec, plots=False, tags={"team": "vision", "ticket": "ML-42"})
    plain = seedline.run(spec, plots=False)
    return {"root": root, "spec": spec, "tagged": tagged, "plain": plain}


@pytest.fixture
def store(project: dict[str, Any]) -> Any:
    from seedline.records.tracking import Store

    s = Store.find(project["root"])
    yield s
    s.close()


def test_tags_change_no_fingerprint_and_stay_out_of_the_manifest(
    project: dict[str, Any], store: Any
) -> None:
    """A tagged and an untagged run of one spec fingerprint alike; retagging rewrites no manifest."""
    from seedline.records.tags import delete_tags, set_tags

    tagged, plain = project["tagged"], project["plain"]
    assert tagged.fingerprints == plain.fingerprints
    assert tagged.manifest.spec_fingerprint == plain.manifest.spec_fingerprint
    assert "tags" not in tagged.manifest.to_dict()
    before = store.manifest(tagged.run_id).to_json()
    objects_before = {r.run_id: r.manifest_object for r in store.run_objects()}
    set_tags(store, tagged.run_id, {"team": "nlp", "stage": "review"})
    delete_tags(store, tagged.run_id, ["stage"])
    assert store.manifest(tagged.run_id).to_json() == before
    assert {r.run_id: r.manifest_object for r in store.run_objects()} == objects_before
    set_tags(store, tagged.run_id, {"team": "vision"})


def test_runs_list_and_query_filter_by_tag(project: dict[str, Any], store: Any) -> None:
    """list_runs and the UI's query keep runs having a tag (KEY=VALUE, or KEY for any value)."""
    from seedline.records.browsing import RunQuery, query_runs

    tagged = project["tagged"].run_id
    everything = {r.run_id: r.tags for r in store.list_runs()}
    assert everything[tagged] == {"team": "vision", "ticket": "ML-42"}
    assert everything[project["plain"].run_id] == {}
    assert [r.run_id for r in store.list_runs(tags={"team": "vision"})] == [tagged]
    assert [r.run_id for r in store.list_runs(tags={"ticket": None})] == [tagged]
    assert store.list_runs(tags={"team": "nlp"}) == []
    rows, total = query_runs(store, RunQuery(tags={"team": "vision", "ticket": "ML-42"}))
    assert total == 1 and rows[0].run_id == tagged and rows[0].tags["ticket"] == "ML-42"
    assert store.run_summary(tagged).tags == {"team": "vision", "ticket": "ML-42"}


def test_a_sweep_tags_every_trial(project: dict[str, Any], store: Any) -> None:
    """sweep(tags=...) labels each trial run, whatever its parameters."""
    import seedline

    report = seedline.sweep(
        project["spec"], {"pipeline.clf.params.max_depth": [1, 3]}, tags={"experiment": "depth"}
    )
    trials = {t["run_id"] for t in report.trials}
    assert len(trials) == 2
    assert {r.run_id for r in store.list_runs(tags={"experiment": "depth"})} == trials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("team", "must read KEY=VALUE"),
        ("=vision", "must not be empty"),
        ("my team=vision", "only letters, digits"),
        ("_team=vision", "start with a letter or digit"),
        ("k" * 101 + "=v", "at most 100 characters"),
        ("team=" + "v" * 1001, "at most 1000 characters"),
        ("team=a\nb", "printable text on one line"),
    ],
)
def test_bad_tags_are_clear_errors(text: str, expected: str) -> None:
    """Each malformed tag says what a tag must be and how to write one."""
    from seedline.records.tags import TagError, parse_tag

    with pytest.raises(TagError, match=expected) as info:
        parse_tag(text)
    assert info.value.hint


def test_a_bad_tag_fails_before_the_run_and_deleting_a_missing_tag_suggests(
    project: dict[str, Any], store: Any
) -> None:
    """run() refuses a bad tag before recording anything; deleting a key the run lacks suggests its keys."""
    import seedline
    from seedline.records.tags import TagError, delete_tags

    count = len(store.list_runs())
    with pytest.raises(TagError, match="must be text"):
        seedline.run(project["spec"], plots=False, tags={"epoch": 3})  # type: ignore[dict-item]
    assert len(store.list_runs()) == count
    with pytest.raises(TagError, match="Did you mean 'team'"):
        delete_tags(store, project["tagged"].run_id, ["teams"])


def test_push_and_pull_carry_tags(project: dict[str, Any], store: Any, tmp_path: Path) -> None:
    """A folder remote receives the runs' tags; a tag set after the first push travels with the next."""
    from seedline.records.tags import set_tags, tags_of
    from seedline.records.transfer import Selection, open_remote, transfer

    tagged = project["tagged"].run_id
    remote = open_remote(str(tmp_path / "team"), project["root"])
    first = transfer(store, remote, Selection(runs=[tagged]))
    assert tags_of(remote, [tagged])[tagged] == {"team": "vision", "ticket": "ML-42"}
    assert first.runs == [tagged] and first.tags_set == 2
    set_tags(store, tagged, {"reviewed": "yes"})
    second = transfer(store, remote, Selection(runs=[tagged]))
    assert second.runs == [] and second.tags_set == 1
    assert tags_of(remote, [tagged])[tagged]["reviewed"] == "yes"
    # and back: a fresh store pulls the runs with their tags
    from seedline.records.tracking import Store

    clone = Store(tmp_path / "clone" / ".seedline")
    transfer(remote, clone, Selection(everything=True))
    assert tags_of(clone, [tagged])[tagged]["team"] == "vision"
    set_tags(store, tagged, {"reviewed": "no"})
    from seedline.records.tags import delete_tags

    delete_tags(store, tagged, ["reviewed"])


def test_a_manifest_file_with_tags_loads_without_them(
    project: dict[str, Any], tmp_path: Path
) -> None:
    """'show --json' adds the tags beside the manifest; reproduce's loader drops them."""
    from seedline.workflow.reproduce import load_manifest

    m = project["tagged"].manifest
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**m.to_dict(), "tags": {"team": "vision"}}))
    assert load_manifest(str(path), None).to_json() == m.to_json()


def test_cli_run_tag_runs_and_show(tmp_path: Path) -> None:
    """run --tag, tag, tag --delete, runs --tag and show --json; a bad key exits 2 with a hint."""
    (tmp_path / "seedline.yaml").write_text(SPEC)
    made = json.loads(
        run_cli(tmp_path, "run", "--no-plots", "--tag", "team=vision", "--json").stdout
    )
    run_id = made["run_id"]
    tagged = run_cli(tmp_path, "tag", run_id, "stage=review", "--delete", "team").stdout
    assert f"{run_id}  stage=review" in tagged and "team" not in tagged
    listed = json.loads(run_cli(tmp_path, "runs", "--tag", "stage=review", "--json").stdout)
    assert [r["run_id"] for r in listed] == [run_id] and listed[0]["tags"] == {"stage": "review"}
    shown = json.loads(run_cli(tmp_path, "show", run_id, "--json").stdout)
    assert shown["tags"] == {"stage": "review"} and shown["run_id"] == run_id
    bad = run_cli(tmp_path, "tag", run_id, "my key=x", check=False)
    assert bad.returncode == 2 and "only letters, digits" in bad.stderr and "hint:" in bad.stderr
