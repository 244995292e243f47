"""Hostile input: specs and manifests that try to run code, crafted bundles, exports and outputs over existing paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from seedline.core.errors import SpecError
from seedline.core.spec import Spec
from seedline.execution.compile import compile_pipeline

from .conftest import run_cli
from .serving_support import project_with_run


def _popen(marker: Path) -> dict[str, Any]:
    return {
        "class": "subprocess.Popen",
        "params": {"args": [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]},
    }


def _spec(pipeline: list[dict[str, Any]]) -> Spec:
    return Spec.from_dict(
        {
            "name": "evil",
            "seed": 1,
            "metrics": ["accuracy"],
            "data": {"source": "x.csv", "target": "y"},
            "pipeline": pipeline,
        }
    )


@pytest.mark.parametrize("where", ["top", "nested"])
def test_a_spec_never_calls_a_class_that_is_not_an_estimator(tmp_path: Path, where: str) -> None:
    """class: subprocess.Popen, as a step or as a nested estimator, is refused before it is called."""
    marker = tmp_path / "ran"
    step = (
        {"name": "evil", **_popen(marker)}
        if where == "top"
        else {
            "name": "bag",
            "class": "sklearn.ensemble.BaggingClassifier",
            "params": {"estimator": _popen(marker)},
        }
    )
    with pytest.raises(SpecError, match=r"'subprocess\.Popen' is not a scikit-learn estimator"):
        compile_pipeline(_spec([step]), pd.DataFrame({"a": [1.0, 2.0]}))
    assert not marker.exists()


@pytest.fixture(scope="module")
def penguins_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A small penguins run (5 trees), shared by the module."""
    return project_with_run(
        tmp_path_factory.mktemp("hostile"), overrides=["pipeline.clf.n_estimators=5"]
    )


def test_reproduce_refuses_a_manifest_whose_spec_was_edited(
    penguins_run: tuple[Path, str], tmp_path: Path
) -> None:
    """An edited manifest spec fails its own fingerprint; with the fingerprint forged, the estimator rule still holds."""
    root, run_id = penguins_run
    manifest = json.loads(run_cli(root, "show", run_id, "--json").stdout)
    marker = tmp_path / "ran"
    manifest["spec"]["pipeline"][1] = {"name": "clf", **_popen(marker)}
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps(manifest))
    out = run_cli(root, "reproduce", str(evil), check=False)
    assert out.returncode != 0 and not marker.exists()
    assert "does not match its recorded spec fingerprint" in out.stderr, out.stderr
    assert manifest["spec_fingerprint"] in out.stderr and "Traceback" not in out.stderr

    manifest["spec_fingerprint"] = Spec.from_dict(manifest["spec"]).fingerprint()
    evil.write_text(json.dumps(manifest))
    out = run_cli(root, "reproduce", str(evil), "--json", check=False)
    assert out.returncode != 0 and not marker.exists()
    assert "is not a scikit-learn estimator" in out.stdout + out.stderr
