"""MLflow ``python_function`` loader for models exported by ``seedline export --format mlflow``.

MLflow imports this module by the name written in the model's ``MLmodel`` file and calls
``_load_pyfunc(data_path)``. The export copies this file into the model's ``code/`` folder
as ``seedline_mlflow_pyfunc.py``; it loads the model with seedline's one loader (seedline is
in the model's requirements; MLflow itself is never imported), so a scikit-learn pipeline,
a skorch or Keras network and a pipeline with project-local classes load alike:

- the model file is loaded with exactly the types approved at export
  (``seedline_trusted_types.json`` beside it); anything else in the file is refused;
- the project-local modules its classes come from are in ``code/`` at their project paths
  (MLflow's ``code_paths``), each checked against the hash its run recorded
  (``seedline_local_code.json``) before it is imported.
"""

from __future__ import annotations

import json
import os
from typing import Any

TRUSTED_TYPES_FILE = "seedline_trusted_types.json"
SCHEMA_FILE = "seedline_input_schema.json"
LOCAL_CODE_FILE = "seedline_local_code.json"


class SeedlinePyfuncModel:
    """The object MLflow's ``PyFuncModel`` wraps: ``predict(df, params=None)``."""

    def __init__(self, model: Any, columns: list[str], dtypes: dict[str, str]) -> None:
        self.model = model
        self.columns = columns
        self.dtypes = dtypes

    def get_raw_model(self) -> Any:
        return self.model

    def _frame(self, model_input: Any) -> Any:
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(
                f"the input lacks column(s) {missing}; the model was trained on {self.columns}"
            )
        frame = frame[self.columns]
        cast = {}
        for name, dtype in self.dtypes.items():
            if str(frame[name].dtype) != dtype:
                try:
                    cast[name] = frame[name].astype(dtype)  # type: ignore[call-overload]
                except (TypeError, ValueError):
                    continue  # leave it to the pipeline, which says what it cannot take
        return frame.assign(**cast) if cast else frame

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        method = (params or {}).get("predict_method", "predict")
        if method not in ("predict", "predict_proba"):
            raise ValueError(f"predict_method must be 'predict' or 'predict_proba', got {method!r}")
        return getattr(self.model, method)(self._frame(model_input))


def _local_code(folder: str) -> Any:
    from seedline.execution.localcode import LocalCode, LocalModule

    path = os.path.join(folder, LOCAL_CODE_FILE)
    if not os.path.exists(path):
        return LocalCode()
    with open(path) as fh:
        record = json.load(fh)
    modules = []
    for name, entry in sorted(record.items()):
        rel = str(entry["path"])
        if os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
            raise ValueError(f"{LOCAL_CODE_FILE} names {rel!r}, which is not a path inside code/")
        with open(os.path.join(folder, "code", rel), "rb") as fh:
            source = fh.read()
        modules.append(
            LocalModule(
                name=name, path=rel, source=source, file=entry["file"], tokens=entry.get("source")
            )
        )
    return LocalCode(tuple(modules), where=f"the MLflow model in {folder}")


def _load_pyfunc(data_path: str, model_config: Any = None) -> SeedlinePyfuncModel:
    from seedline.execution.persist import load_model

    folder = os.path.dirname(os.path.abspath(data_path))
    with open(os.path.join(folder, TRUSTED_TYPES_FILE)) as fh:
        trusted = list(json.load(fh))
    with open(data_path, "rb") as fh:
        data = fh.read()
    # only the types approved at export, and the local sources recorded by the run
    model = load_model(
        data, trusted=trusted, code=_local_code(folder), where=f"the MLflow model in {folder}"
    )
    with open(os.path.join(folder, SCHEMA_FILE)) as fh:
        schema = json.load(fh)
    columns = [c["name"] for c in schema["columns"]]
    dtypes = {c["name"]: c["dtype"] for c in schema["columns"] if c["kind"] in ("float", "string")}
    return SeedlinePyfuncModel(model, columns, dtypes)
