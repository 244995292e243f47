"""Saving and loading fitted models without pickle.

Every fitted object seedline stores (a run's pipeline, a cached step) goes through
``dump_model``/``load_model``. scikit-learn objects are written with skops. Objects that
seedline itself wrote and verified by content address are loaded trusting the types they
contain (``trusted_own``); anything coming from outside is loaded with an explicit trusted
type list and refused otherwise (serving, ``--trust``).

A model with deep-learning steps (a skorch net, a ``seedline.keras`` estimator) is saved
as a zip archive instead, still without pickle:

- ``seedline-archive.json``: format and version, and per network its step, framework,
  weights file and the rest of its fitted state as JSON (training history, classes);
- ``model.skops``: the scikit-learn parts, each network replaced by ``"passthrough"``, and
  each network's class and parameters, which rebuild its architecture as the spec did;
- ``weights/<index>-<name>.safetensors``: the network's weights (safetensors: a JSON
  header and raw little-endian tensors, nothing executable).

``load_model`` rebuilds each network from its class and parameters, loads the weights and
puts it back in its place. Models without networks are plain skops bytes, as before.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from typing import Any

from seedline.core.deeplearning import DeepLearningError
from seedline.execution.skops_types import skops_io
from seedline.execution.skops_types import untrusted_types as _skops_untrusted

ARCHIVE_MARKER = "seedline-archive.json"
ARCHIVE_FORMAT = "seedline-model-archive"
ARCHIVE_VERSION = 1
_SKOPS_NAME = "model.skops"
# fixed timestamps: the same model always gives the same bytes, so the same object address
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _has_networks(model: Any) -> list[tuple[int | None, str, Any]]:
    from seedline.core.deeplearning import deep_learning_steps

    return deep_learning_steps(model)


def dump_model(model: Any) -> bytes:
    """Serialise a fitted estimator or pipeline (skops format; an archive with safetensors weights when it holds networks; never pickle)."""
    sio = skops_io()
    networks = _has_networks(model)
    if not networks:
        return bytes(sio.dumps(model))
    return _dump_archive(model, networks)


def _dump_archive(model: Any, networks: list[tuple[int | None, str, Any]]) -> bytes:
    from seedline.core.deeplearning import export_step, state_json

    sio = skops_io()

    skeleton: Any = None
    if networks[0][0] is not None:
        skeleton = copy.copy(model)  # shallow: the other steps are shared, not copied
        replaced = {i for i, _, _ in networks}
        skeleton.steps = [
            (name, "passthrough" if i in replaced else est)
            for i, (name, est) in enumerate(model.steps)
        ]
    architectures: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    for index, name, est in networks:
        key = f"{index if index is not None else 'model'}-{name}"
        architectures[key] = {"class": type(est), "params": est.get_params(deep=False)}
        framework, tensors, state = export_step(est)
        weights = f"weights/{key}.safetensors"
        files[weights] = _safetensors_bytes(framework, tensors)
        entries.append(
            {
                "key": key,
                "index": index,
                "name": name,
                "framework": framework,
                "class": f"{type(est).__module__}.{type(est).__qualname__}",
                "weights": weights,
                "tensors": len(tensors),
                "state": json.loads(state_json(state)),
            }
        )
    header = {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "skops": _SKOPS_NAME,
        "pipeline": skeleton is not None,
        "networks": entries,
    }
    payload = {"pipeline": skeleton, "networks": architectures}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        members = {
            ARCHIVE_MARKER: json.dumps(header, indent=2, sort_keys=True).encode(),
            _SKOPS_NAME: bytes(sio.dumps(payload)),
            **files,
        }
        for member, data in members.items():
            info = zipfile.ZipInfo(member, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _safetensors_bytes(framework: str, tensors: dict[str, Any]) -> bytes:
    if framework == "torch":
        from safetensors.torch import save as save_torch

        return bytes(save_torch(tensors))
    from safetensors.numpy import save as save_numpy

    return bytes(save_numpy(tensors))


def _load_safetensors(framework: str, data: bytes) -> dict[str, Any]:
    if framework == "torch":
        from safetensors.torch import load as load_torch

        return dict(load_torch(data))
    from safetensors.numpy import load as load_numpy

    return dict(load_numpy(data))


def _archive(data: bytes) -> zipfile.ZipFile | None:
    """The zip archive, when ``data`` is one that ``dump_model`` wrote for a model with networks."""
    if not data.startswith(b"PK\x03\x04"):
        return None
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return None
    if ARCHIVE_MARKER not in zf.namelist():
        zf.close()
        return None  # a plain skops file (skops files are zip archives too)
    return zf


def _header(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        header: dict[str, Any] = json.loads(zf.read(ARCHIVE_MARKER))
    except (ValueError, KeyError) as exc:
        raise DeepLearningError(
            f"the model archive's {ARCHIVE_MARKER} is unreadable: {exc}"
        ) from exc
    if header.get("format") != ARCHIVE_FORMAT or not isinstance(header.get("version"), int):
        raise DeepLearningError(f"not a seedline model archive (format {header.get('format')!r})")
    if header["version"] > ARCHIVE_VERSION:
        raise DeepLearningError(
            f"model archive version {header['version']} is newer than this seedline reads ({ARCHIVE_VERSION})",
            hint="upgrade seedline to load it",
        )
    return header


def untrusted_types(data: bytes) -> list[str]:
    """Types in a saved model that skops does not trust by default."""
    zf = _archive(data)
    if zf is not None:
        with zf:
            data = zf.read(_header(zf)["skops"])
    return _skops_untrusted(data)


def load_model(data: bytes, *, trusted: list[str] | None = None, trusted_own: bool = False) -> Any:
    """Load a model saved by ``dump_model``.

    ``trusted_own=True`` is for objects seedline wrote itself and read back from its
    content-addressed store (their bytes are verified against their address on read).
    For an archive, the trusted types are those of its skops part: the scikit-learn steps
    and each network's class and parameters; the weights are data, never code.
    """
    sio = skops_io()
    zf = _archive(data)
    if zf is None:
        # also admits the file's scikit-learn estimators to skops' default list (skops_types)
        found = _skops_untrusted(data)
        return sio.loads(data, trusted=found if trusted_own else list(trusted or []))
    with zf:
        header = _header(zf)
        inner = zf.read(header["skops"])
        found = _skops_untrusted(inner)
        types = found if trusted_own else list(trusted or [])
        payload = sio.loads(inner, trusted=types)
        return _restore(zf, header, payload)


def _restore(zf: zipfile.ZipFile, header: dict[str, Any], payload: dict[str, Any]) -> Any:
    from seedline.core.deeplearning import restore_step

    model = payload["pipeline"]
    for entry in header["networks"]:
        arch = payload["networks"][entry["key"]]
        tensors = _load_safetensors(entry["framework"], zf.read(entry["weights"]))
        est = restore_step(
            entry["framework"], arch["class"], arch["params"], tensors, entry["state"]
        )
        if entry["index"] is None:
            return est
        model.steps[entry["index"]] = (entry["name"], est)
    return model
