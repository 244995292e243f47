"""Loading a spec's data sources into one pandas DataFrame, with a fingerprint per source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from seedline.core.errors import DataError, did_you_mean
from seedline.core.fingerprint import fingerprint_file, fingerprint_table
from seedline.core.spec import DataSpec

_DATA_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class LoadedData:
    frame: pd.DataFrame
    sources: list[dict[str, Any]]


def bundled_datasets() -> list[str]:
    """scikit-learn datasets shipped inside the package (the fetch_* ones need the network)."""
    import sklearn.datasets as ds

    return sorted(
        n
        for n in dir(ds)
        if n.startswith("load_")
        and n
        not in (
            "load_files",
            "load_svmlight_file",
            "load_svmlight_files",
            "load_sample_image",
            "load_sample_images",
        )
    )


def _load_sklearn(name: str) -> pd.DataFrame:
    import sklearn.datasets as ds

    names = bundled_datasets()
    if name not in names:
        raise DataError(
            f"'sklearn:{name}' is not a dataset bundled with scikit-learn.{did_you_mean(name, names)}",
            hint="bundled datasets: " + ", ".join(names),
        )
    bunch = getattr(ds, name)(as_frame=True)
    frame = bunch.frame
    if frame is None:
        frame = pd.concat([bunch.data, bunch.target.rename("target")], axis=1)
    return frame.reset_index(drop=True)


def _data_files(root: Path) -> list[str]:
    found: list[str] = []
    for suffix in _DATA_SUFFIXES:
        found += [
            str(p.relative_to(root))
            for p in root.rglob(f"*{suffix}")
            if ".seedline" not in p.parts and ".venv" not in p.parts
        ]
    return sorted(found)[:20]


def read_source(uri: str, root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read one source; return the frame and its record (file and table fingerprints)."""
    if uri.startswith("sklearn:"):
        frame = _load_sklearn(uri.removeprefix("sklearn:"))
        tf = fingerprint_table(frame)
        return frame, {
            "uri": uri,
            "kind": "sklearn",
            "fingerprint": tf.digest,
            "bytes": None,
            "rows": len(frame),
            "table": tf.to_dict(),
        }
    path = (root / uri).resolve()
    kind = _DATA_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"data source {uri!r} has an unknown format {path.suffix!r}",
            hint="use a .csv or .parquet file, or a bundled dataset such as 'sklearn:load_digits'",
        )
    if not path.is_file():
        files = _data_files(root)
        raise DataError(
            f"data file {uri!r} does not exist (looked for {path}).{did_you_mean(uri, files)}",
            hint=("data files in the project: " + ", ".join(files))
            if files
            else "no .csv or .parquet files found in the project",
        )
    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"cannot read {uri!r} as {kind}: {exc}") from exc
    tf = fingerprint_table(frame)
    record = {
        "uri": uri,
        "kind": kind,
        "fingerprint": fingerprint_file(path),
        "bytes": path.stat().st_size,
        "rows": len(frame),
        "table": tf.to_dict(),
    }
    return frame, record


def load_data(spec: DataSpec, root: Path, roots: dict[str, Path] | None = None) -> LoadedData:
    """Read every source; rows of several sources are concatenated in the order given.

    ``roots`` reads some sources from another folder than ``root`` (a materialized data
    snapshot); their records keep the uri the spec gives.
    """
    frames: list[pd.DataFrame] = []
    records: list[dict[str, Any]] = []
    for uri in spec.sources:
        frame, record = read_source(uri, (roots or {}).get(uri, root))
        frames.append(frame)
        records.append(record)
    if len(frames) > 1:
        cols = list(frames[0].columns)
        for uri, fr in zip(spec.sources[1:], frames[1:], strict=True):
            if list(fr.columns) != cols:
                raise DataError(
                    f"source {uri!r} has columns {list(fr.columns)}, but {spec.sources[0]!r} has {cols}",
                    hint="sources are stacked row-wise and must have the same columns in the same order",
                )
        frame = pd.concat(frames, ignore_index=True)
    else:
        frame = frames[0]
    return LoadedData(frame=frame, sources=records)


def select_columns(
    frame: pd.DataFrame, spec: DataSpec
) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """Split the table into features X and target y, checking the named columns exist."""
    cols = [str(c) for c in frame.columns]
    if spec.target not in cols:
        raise DataError(
            f"target column {spec.target!r} is not in the data.{did_you_mean(spec.target, cols)}",
            hint="columns: " + ", ".join(cols),
        )
    if spec.features is not None:
        missing = [c for c in spec.features if c not in cols]
        if missing:
            hints = "".join(did_you_mean(m, cols) for m in missing)
            raise DataError(
                f"feature column(s) {missing} are not in the data.{hints}",
                hint="columns: " + ", ".join(cols),
            )
        features = list(spec.features)
    else:
        features = [c for c in cols if c != spec.target]
    if spec.target in features:
        raise DataError(
            f"the target {spec.target!r} is also listed as a feature",
            hint="remove it from data.features",
        )
    y = frame[spec.target]
    if y.isna().any():
        raise DataError(
            f"target column {spec.target!r} has {int(y.isna().sum())} missing values",
            hint="drop those rows from the data; seedline never drops rows silently",
        )
    return frame[features], y, features
