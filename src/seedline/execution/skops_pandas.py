"""pandas tables, columns and indexes inside a saved model, in skops' format, without pickle.

Some libraries keep pandas objects in their fitted state: category_encoders' encoders hold
their category-to-code mappings as ``Series`` and ``DataFrame`` objects indexed by the
categories. skops cannot save them (pandas' internals refuse ``__reduce__``), so seedline
registers one more node type with skops:

- saving: the object becomes an Arrow table (its index kept by pyarrow's pandas metadata,
  its column labels and a ``Series``' name kept as ordinary skops values beside it) written
  into the skops zip as one Arrow IPC stream;
- loading: the Arrow stream is read back with pyarrow and turned into pandas. Reading Arrow
  IPC runs no code from the file, so the node's own types are trusted (the types of the
  objects around it still go through seedline's trust policy).

The node is registered when seedline imports skops (:func:`register`): a model holding
pandas objects is loaded by seedline, not by a bare ``skops.io.load``. Values Arrow cannot
hold (an object column mixing numbers and strings) are refused when saving, naming the column.
"""

from __future__ import annotations

import io
from typing import Any

from seedline.core.fingerprint import fingerprint_bytes

LOADER = "SeedlinePandasNode"


def _kind(obj: Any) -> str:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return "frame"
    if isinstance(obj, pd.Series):
        return "series"
    return "index"


def _as_frame(obj: Any, kind: str) -> Any:
    """A frame whose columns are named c0, c1, ... (Arrow wants string names; labels are kept apart)."""
    import pandas as pd

    if kind == "frame":
        frame = obj.copy(deep=False)
        frame.columns = [f"c{i}" for i in range(obj.shape[1])]
        return frame
    if kind == "series":
        return obj.to_frame(name="c0")
    return pd.DataFrame(index=obj)


def get_state(obj: Any, save_context: Any) -> dict[str, Any]:
    """skops' state of a DataFrame, Series or Index: an Arrow IPC stream in the zip, labels beside it."""
    import pandas as pd
    import pyarrow as pa
    from skops.io._utils import get_module
    from skops.io._utils import get_state as skops_state
    from skops.io.exceptions import UnsupportedTypeException

    kind = _kind(obj)
    if isinstance(obj, pd.RangeIndex):
        # Arrow keeps a range index only beside columns: its four numbers say it all
        return {
            "__class__": type(obj).__name__,
            "__module__": get_module(type(obj)),
            "__loader__": LOADER,
            "kind": "range",
            "labels": skops_state([obj.start, obj.stop, obj.step, obj.name], save_context),
        }
    try:
        table = pa.Table.from_pandas(_as_frame(obj, kind), preserve_index=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise UnsupportedTypeException(
            f"a pandas {type(obj).__name__} in the model cannot be saved without pickle: {exc} "
            "(Arrow holds one type per column; convert the column to one type, e.g. str, before fitting)"
        ) from exc
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue()
    # named by content: the same model gives the same entry names, equal objects share one
    name = f"pandas-{fingerprint_bytes(data).rpartition(':')[2][:40]}.arrow"
    if name not in save_context.zip_file.NameToInfo:
        save_context.zip_file.writestr(name, data)
    state: dict[str, Any] = {
        "__class__": type(obj).__name__,
        "__module__": get_module(type(obj)),
        "__loader__": LOADER,
        "kind": kind,
        "file": name,
    }
    if kind == "frame":
        state["labels"] = skops_state(list(obj.columns), save_context)
    elif kind == "series":
        state["labels"] = skops_state(obj.name, save_context)
    return state


def _node_class() -> type:
    from skops.io._audit import Node, get_tree

    class SeedlinePandasNode(Node):
        """Rebuilds a DataFrame, Series or Index from the Arrow stream ``get_state`` wrote."""

        def __init__(self, state: dict[str, Any], load_context: Any, trusted: Any = None) -> None:
            super().__init__(state, load_context, trusted)
            self.trusted = self._get_trusted(trusted, list(trusted_type_names()))
            self.kind = state["kind"]
            if self.kind not in ("frame", "series", "index", "range"):
                raise ValueError(f"unknown pandas node kind {self.kind!r}: the file is damaged")
            self.data = b"" if self.kind == "range" else load_context.src.read(state["file"])
            self.labels = (
                get_tree(state["labels"], load_context, trusted=trusted)
                if "labels" in state
                else None
            )
            self.children = {} if self.labels is None else {"labels": self.labels}

        def _construct(self) -> Any:
            import pandas as pd
            import pyarrow as pa

            if self.kind == "range":
                assert self.labels is not None  # a range node always carries its four numbers
                start, stop, step, name = self.labels.construct()
                return pd.RangeIndex(int(start), int(stop), int(step), name=name)
            table = pa.ipc.open_stream(self.data).read_all()
            # offsets and lengths checked before pandas reads a buffer: a crafted file fails here
            table.validate(full=True)
            frame = table.to_pandas()
            labels = None if self.labels is None else self.labels.construct()
            if self.kind == "frame":
                frame.columns = labels
                out = frame
            elif self.kind == "series":
                out = frame["c0"].rename(labels)
            else:
                out = frame.index
            if type(out).__name__ != self.class_name:
                raise ValueError(
                    f"the file says {self.module_name}.{self.class_name} but holds a "
                    f"{type(out).__name__}: the file is damaged"
                )
            return out

    return SeedlinePandasNode


def trusted_type_names() -> frozenset[str]:
    """The pandas types this node builds: tables, columns and every kind of index."""
    import pandas as pd

    types = [pd.DataFrame, pd.Series, pd.Index] + [
        t
        for t in vars(pd).values()
        if isinstance(t, type) and issubclass(t, pd.Index) and t is not pd.Index
    ]
    return frozenset(f"{t.__module__}.{t.__name__}" for t in types)


def register() -> None:
    """Teach the loaded ``skops.io`` to save and load pandas objects (idempotent)."""
    import pandas as pd
    from skops.io import _audit, _utils
    from skops.io._protocol import PROTOCOL

    key = (LOADER, PROTOCOL)
    if key in _audit.NODE_TYPE_MAPPING:
        return
    for cls in (pd.DataFrame, pd.Series, pd.Index):
        _utils._get_state.register(cls)(get_state)
    _audit.NODE_TYPE_MAPPING[key] = _node_class()
