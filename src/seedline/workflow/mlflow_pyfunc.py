"""MLflow ``python_function`` loader for models exported by ``seedline export --format mlflow``.

MLflow imports this module by the name written in the model's ``MLmodel`` file and calls
``_load_pyfunc(data_path)``. The export copies this file into the model's ``code/`` folder
as ``seedline_mlflow_pyfunc.py``, so the model loads where seedline is not installed: it
imports only skops, numpy and pandas, never seedline or mlflow. The skops file is loaded
with exactly the types approved at export (``seedline_trusted_types.json`` beside it);
anything else in the file is refused.
"""

from __future__ import annotations

import json
import os
from typing import Any

TRUSTED_TYPES_FILE = "seedline_trusted_types.json"
SCHEMA_FILE = "seedline_input_schema.json"


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


def _load_pyfunc(data_path: str, model_config: Any = None) -> SeedlinePyfuncModel:
    import skops.io as sio

    folder = os.path.dirname(os.path.abspath(data_path))
    with open(os.path.join(folder, TRUSTED_TYPES_FILE)) as fh:
        trusted = list(json.load(fh))
    with open(data_path, "rb") as fh:
        data = fh.read()
    extra = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
    if extra:
        raise ValueError(
            f"{data_path} holds types that were not approved at export: {extra}; refusing to load it"
        )
    model = sio.loads(data, trusted=trusted)
    with open(os.path.join(folder, SCHEMA_FILE)) as fh:
        schema = json.load(fh)
    columns = [c["name"] for c in schema["columns"]]
    dtypes = {c["name"]: c["dtype"] for c in schema["columns"] if c["kind"] in ("float", "string")}
    return SeedlinePyfuncModel(model, columns, dtypes)
