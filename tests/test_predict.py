"""``seedline predict``: chunked batch prediction of CSV and Parquet files, atomic output, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from .conftest import clean_env, run_cli
from .serving_support import load_model, project_with_run


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """A penguins project with a small forest registered as small@1."""
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run

    root, run_id = project_with_run(
        tmp_path_factory.mktemp("predict"), overrides=["pipeline.clf.n_estimators=10"]
    )
    register_run(Store.find(root), run_id, "small")
    source, model = load_model(root, "small@1")
    return root, source, model


def _frame(root: Path) -> pd.DataFrame:
    frame = pd.read_csv(root / "data" / "penguins.csv")
    frame.insert(0, "penguin_id", [f"p{i:04d}" for i in range(len(frame))])
    return frame


def test_csv_and_parquet_in_chunks_keep_the_id_and_match_the_model(
    registered: tuple[Path, Any, Any],
) -> None:
    """Predictions written in chunks of 50 rows equal model.predict, with the id column and probabilities."""
    from seedline.workflow.predict import predict_file

    root, source, model = registered
    frame = _frame(root)
    frame.to_csv(root / "in.csv", index=False)
    frame.to_parquet(root / "in.parquet")
    X = frame[source.schema.names]
    out = json.loads(
        run_cli(
            root,
            "predict",
            "small",
            "in.csv",
            "-o",
            "out.csv",
            "--id-column",
            "penguin_id",
            "--proba",
            "--chunk-rows",
            "50",
            "--json",
        ).stdout
    )
    assert (
        out["rows"] == len(frame) and out["chunks"] == 7 and out["parity"]["verdict"] == "bitwise"
    )
    written = pd.read_csv(root / "out.csv")
    assert list(written.columns) == [
        "penguin_id",
        "prediction",
        "proba_Adelie",
        "proba_Chinstrap",
        "proba_Gentoo",
    ]
    assert written["penguin_id"].tolist() == frame["penguin_id"].tolist()
    assert written["prediction"].tolist() == model.predict(X).tolist()
    result = predict_file(
        model,
        source.schema,
        root / "in.parquet",
        root / "out.parquet",
        id_column="penguin_id",
        proba=True,
        chunk_rows=100,
    )
    back = pd.read_parquet(root / "out.parquet")
    assert result.rows == len(frame) and result.chunks == 4
    assert back["prediction"].tolist() == model.predict(X).tolist()
    # Parquet keeps float64 exactly: bitwise the model's probabilities
    assert np.array_equal(
        back[["proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]].to_numpy(), model.predict_proba(X)
    )


def test_bad_input_names_the_column_and_leaves_no_output(registered: tuple[Path, Any, Any]) -> None:
    """A missing column or a text value in a number column fails with the column (and row) named, and no output file."""
    root, _, _ = registered
    frame = _frame(root)
    frame.drop(columns=["sex"]).to_csv(root / "nosex.csv", index=False)
    out = run_cli(root, "predict", "small", "nosex.csv", "-o", "bad.csv", check=False)
    assert out.returncode == 2 and "lacks column(s) ['sex']" in out.stderr
    assert not (root / "bad.csv").exists()
    broken = frame.astype({"body_mass_g": object})
    broken.loc[200, "body_mass_g"] = "heavy"
    broken.to_csv(root / "typo.csv", index=False)
    out = run_cli(
        root, "predict", "small", "typo.csv", "-o", "bad.csv", "--chunk-rows", "64", check=False
    )
    assert out.returncode == 2
    assert "column 'body_mass_g'" in out.stderr and "'heavy' at row 200" in out.stderr
    assert not (root / "bad.csv").exists() and not list(root.glob(".bad.csv.*"))
    missing_id = run_cli(
        root, "predict", "small", "typo.csv", "-o", "bad.csv", "--id-column", "idd", check=False
    )
    assert missing_id.returncode == 2 and "id column 'idd'" in missing_id.stderr


def test_the_input_is_checked_before_the_model_is_loaded(
    registered: tuple[Path, Any, Any],
) -> None:
    """A missing file, a missing column or a missing id column fails before the model loads and its parity check runs."""
    root, _, _ = registered
    _frame(root).drop(columns=["sex"]).to_csv(root / "nosex.csv", index=False)
    _frame(root).to_csv(root / "ok.csv", index=False)
    cases = [
        (("nothere.csv",), "input file nothere.csv does not exist"),
        (("nosex.csv",), "lacks column(s) ['sex']"),
        (("ok.csv", "--id-column", "idd"), "id column 'idd' is not in ok.csv"),
    ]
    for args, message in cases:
        out = run_cli(root, "predict", "small", args[0], "-o", "early.csv", *args[1:], check=False)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        # the parity line is printed once the model is loaded and checked: it must not appear
        assert "parity" not in out.stderr, out.stderr
        assert not (root / "early.csv").exists()


_RSS = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(proc.stderr)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_mb(root: Path, rows_file: str, out: str) -> float:
    """Peak resident memory (MiB) of a 'seedline predict' child process, measured by its parent."""
    cmd = [
        sys.executable,
        "-c",
        _RSS,
        sys.executable,
        "-m",
        "seedline",
        "predict",
        "small",
        rows_file,
        "-o",
        out,
        "--chunk-rows",
        "20000",
    ]
    done = subprocess.run(
        cmd, cwd=root, env=clean_env(), capture_output=True, text=True, timeout=600
    )
    code, kib = done.stdout.split()
    assert code == "0", done.stderr
    return int(kib) / 1024


@pytest.mark.slow
def test_one_million_rows_stay_under_a_fixed_memory_bound(
    registered: tuple[Path, Any, Any],
) -> None:
    """Predicting 1,000,000 rows peaks at about the memory of 20,000 rows: chunked, not loaded whole."""
    root, source, model = registered
    base = _frame(root)[source.schema.names]
    reps = -(-1_000_000 // len(base))
    big = pd.concat([base] * reps, ignore_index=True).iloc[:1_000_000]
    big.to_csv(root / "million.csv", index=False)
    big.iloc[:20_000].to_csv(root / "small.csv", index=False)
    del big
    small_peak = _peak_rss_mb(root, "small.csv", "small-out.csv")
    big_peak = _peak_rss_mb(root, "million.csv", "million-out.csv")
    lines = sum(1 for _ in (root / "million-out.csv").open())
    assert lines == 1_000_001
    # 1M rows of this table are ~60 MiB as CSV and ~110 MiB as a DataFrame; the chunked run must not grow by that
    print(f"peak RSS: {small_peak:.0f} MiB for 20,000 rows, {big_peak:.0f} MiB for 1,000,000 rows")
    assert big_peak < small_peak + 60, (small_peak, big_peak)
    assert big_peak < 800, big_peak
    tail = pd.read_csv(root / "million-out.csv", skiprows=range(1, 999_991))
    want = model.predict(base.iloc[[(999_990 + i) % len(base) for i in range(10)]])
    assert tail["prediction"].tolist() == want.tolist()
