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

from .conftest import run_cli, run_here
from .serving_support import free_port, project_with_run


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


@pytest.mark.slow
def test_reproduce_refuses_a_manifest_whose_spec_was_edited(
    penguins_run: tuple[Path, str], tmp_path: Path
) -> None:
    """An edited manifest spec fails its own fingerprint; with the fingerprint forged, the estimator rule still holds."""
    root, run_id = penguins_run
    manifest = json.loads(run_here(root, "show", run_id, "--json").stdout)
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


@pytest.mark.slow
def test_export_force_replaces_only_seedline_exports(penguins_run: tuple[Path, str]) -> None:
    """--force replaces an earlier export, atomically; never a user's folder or file, nor '.', all without a traceback."""
    root, run_id = penguins_run
    run_cli(root, "export", run_id, "--format", "bundle", "-o", "bundle")
    first = (root / "bundle" / "seedline-bundle.json").read_text()
    run_cli(root, "export", run_id, "--format", "bundle", "-o", "bundle", "--force")
    assert (root / "bundle" / ".seedline-export").is_file()
    assert (root / "bundle" / "seedline-bundle.json").read_text() != first  # a new export
    assert not [p for p in root.iterdir() if p.name.startswith(".bundle.")]  # nothing left aside

    data_before = sorted(p.name for p in (root / "data").iterdir())
    for target, fmt in (("data", "bundle"), (".", "mlflow"), ("data/penguins.csv", "onnx")):
        out = run_cli(root, "export", run_id, "--format", fmt, "-o", target, "--force", check=False)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        assert "seedline did not export" in out.stderr or "current folder" in out.stderr
    assert sorted(p.name for p in (root / "data").iterdir()) == data_before
    assert (root / ".seedline").is_dir() and (root / "seedline.yaml").is_file()


@pytest.mark.slow
def test_predict_output_must_be_a_file_and_needs_force_to_replace(
    penguins_run: tuple[Path, str],
) -> None:
    """predict -o onto a folder is a clear error; onto an existing file it needs --force."""
    root, run_id = penguins_run
    (root / "outdir").mkdir()
    out = run_cli(root, "predict", run_id, "data/penguins.csv", "-o", "outdir", check=False)
    assert out.returncode != 0 and "is a folder" in out.stderr and "Traceback" not in out.stderr
    (root / "mine.csv").write_text("precious\n")
    out = run_cli(root, "predict", run_id, "data/penguins.csv", "-o", "mine.csv", check=False)
    assert out.returncode != 0 and "--force" in out.stderr
    assert (root / "mine.csv").read_text() == "precious\n"
    run_cli(root, "predict", run_id, "data/penguins.csv", "-o", "mine.csv", "--force")
    assert (root / "mine.csv").read_text().startswith("prediction")


def test_a_folder_is_swapped_in_without_the_target_going_missing(tmp_path: Path) -> None:
    """The exchange used by --force swaps two folders in one step (Linux), and swap_in removes the old one."""
    from seedline.workflow.outputs import exchange, swap_in

    old, new = tmp_path / "target", tmp_path / "new"
    old.mkdir()
    (old / "v").write_text("1")
    new.mkdir()
    (new / "v").write_text("2")
    if sys.platform == "linux":
        assert (
            exchange(new, old) and (old / "v").read_text() == "2" and (new / "v").read_text() == "1"
        )
        assert exchange(new, old)  # and back
    swap_in(new, old)
    assert (old / "v").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == [
        "target"
    ]


def _craft_tree(bundle: Path, field: str, value: float) -> None:
    """Edit the first tree's node array in a bundle's skops file, and its recorded hash, as an attacker would."""
    import hashlib
    import io
    import zipfile

    import numpy as np

    model = bundle / "model.skops"
    with zipfile.ZipFile(model) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    schema = json.loads(files["schema.json"])

    def first_tree(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("__class__") == "Tree":
                return node
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            return None
        for child in children:
            found = first_tree(child)
            if found is not None:
                return found
        return None

    nodes_file = first_tree(schema)["content"]["content"]["nodes"]["file"]
    nodes = np.load(io.BytesIO(files[nodes_file]), allow_pickle=False)
    inner = int(np.flatnonzero(nodes["left_child"] != -1)[0])
    nodes[field][inner] = value
    buf = io.BytesIO()
    np.save(buf, nodes, allow_pickle=False)
    files[nodes_file] = buf.getvalue()
    with zipfile.ZipFile(model, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    marker = bundle / "seedline-bundle.json"
    meta = json.loads(marker.read_text())
    meta["files"]["model.skops"] = "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()
    marker.write_text(json.dumps(meta))


@pytest.mark.slow
def test_a_crafted_tree_is_refused_not_a_crash(penguins_run: tuple[Path, str]) -> None:
    """Out-of-range children, features or a NaN threshold in a bundle's tree: a clear error, never a segfault."""
    import shutil

    root, run_id = penguins_run
    run_cli(root, "export", run_id, "--format", "bundle", "-o", "good")
    lines = (root / "data" / "penguins.csv").read_text().splitlines()
    (root / "few.csv").write_text("\n".join(lines[:21]) + "\n")
    fp = json.loads(run_here(root, "show", run_id, "--json").stdout)["fingerprints"]["model"]
    for field, value in (("left_child", 10**6), ("feature", 4096), ("threshold", float("nan"))):
        bundle = root / f"crafted-{field}"
        shutil.copytree(root / "good", bundle)
        _craft_tree(bundle, field, value)
        out = run_cli(root, "predict", bundle.name, "few.csv", "-o", "p.csv", check=False)
        assert out.returncode == 2, (out.returncode, out.stderr)
        assert "the model is malformed" in out.stderr and "Traceback" not in out.stderr
    # the server binds, fails to load the model, and exits non-zero with the reason
    out = run_cli(root, "serve", bundle.name, "--port", str(free_port()), check=False)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "cannot serve the model: the model is malformed" in out.stderr
    # a fingerprint from elsewhere vouches for the untouched bundle and refuses an edited one
    ok = run_cli(root, "predict", "good", "few.csv", "-o", "p.csv", "--expect-fingerprint", fp)
    assert ok.returncode == 0, ok.stderr
    edited = root / "edited"
    shutil.copytree(root / "good", edited)
    _craft_tree(edited, "threshold", 0.5)  # a well-formed but different model
    out = run_cli(
        root,
        "predict",
        edited.name,
        "few.csv",
        "-o",
        "q.csv",
        "--expect-fingerprint",
        run_id,
        check=False,
    )
    assert out.returncode == 2 and "not the expected" in out.stderr, out.stderr
