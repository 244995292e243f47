"""The step cache: reuse a fitted step and its output when nothing that decides them changed.

Key = step identity + canonical params (with the filled ``random_state``) + code version
(the library's version for library classes; for user classes, their source with comments
and docstrings stripped, plus the local modules they import) + the numerical context
(NumPy/SciPy/scikit-learn versions, BLAS library, kernel and threads) + the fingerprint
of the step's input. A hit loads the fitted step and its output from the object store;
both are verified (content address on read, and the loaded step's fingerprint against
the recorded one), so the cache can only ever save time, never change a result.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import io
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seedline.core.deeplearning import framework_versions
from seedline.core.environment import (
    distinct_pools,
    distribution_version,
    first_distribution,
    source_fingerprint,
)
from seedline.core.errors import CorruptObjectError
from seedline.core.fingerprint import fingerprint_estimator, fingerprint_value
from seedline.execution.loadmemo import remember
from seedline.execution.persist import dump_model, is_plain_skops, load_model
from seedline.records.cache_index import CacheEntry, CacheIndex, list_entries
from seedline.records.recording import RunRecords
from seedline.storage.embedded import now_iso

if TYPE_CHECKING:  # maintenance takes the full store; a run records through RunRecords
    from seedline.records.tracking import Store

CACHE_VERSION = 1


def _local_imports(module: Any, root: Path, seen: set[str]) -> dict[str, str]:
    """Source hashes of the project's own modules that ``module`` imports (transitively)."""
    out: dict[str, str] = {}
    file = getattr(module, "__file__", None)
    if not file:
        return out
    try:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return out
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    for name in sorted(names):
        mod = sys.modules.get(name)
        mfile = getattr(mod, "__file__", None)
        if (
            not mfile
            or name in seen
            or "site-packages" in mfile
            or root not in Path(mfile).resolve().parents
        ):
            continue
        seen.add(name)
        out[name] = source_fingerprint(Path(mfile).read_text(encoding="utf-8"))
        out.update(_local_imports(mod, root, seen))
    return out


def class_version(cls: Any, root: Path) -> str:
    """'scikit-learn 1.9.1' for library classes (and functions); a source fingerprint for the project's own."""
    top = cls.__module__.split(".")[0]
    module = sys.modules.get(cls.__module__)
    mfile = getattr(module, "__file__", "") or ""
    is_local = (
        bool(mfile)
        and "site-packages" not in mfile
        and root.resolve() in Path(mfile).resolve().parents
    )
    name = first_distribution(top)
    if name and not is_local:
        return f"{name} {distribution_version(name)}"
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return f"unversioned {cls.__module__}.{cls.__qualname__}"
    deps = _local_imports(module, root, {cls.__module__}) if module is not None else {}
    return fingerprint_value({"class": source_fingerprint(source), "imports": deps}, kind="code")


def code_versions(est: Any, root: Path) -> dict[str, str]:
    """Code version of the step's class, of every estimator nested in it, and of classes given as parameters.

    A class given as a parameter (a skorch net's ``module``, ``optimizer``) is code the step
    runs; a deep-learning step also depends on its framework's version.
    """
    classes: set[Any] = {type(est)}
    if hasattr(est, "get_params"):
        params = est.get_params(deep=True).values()
        classes |= {type(v) for v in params if hasattr(v, "get_params") and not isinstance(v, type)}
        classes |= {v for v in params if isinstance(v, type)}
        # a function given as a parameter (FunctionTransformer's func) is code the step runs
        classes |= {
            v for v in est.get_params(deep=False).values() if isinstance(v, types.FunctionType)
        }
    versions = {
        f"{c.__module__}.{c.__qualname__}": class_version(c, root)
        for c in sorted(classes, key=lambda c: (c.__module__, c.__qualname__))
    }
    versions.update({f"framework {k}": v for k, v in framework_versions(est).items()})
    return versions


def numerics_context(environment: dict[str, Any]) -> dict[str, Any]:
    """What, besides the step itself, decides the bits of its result."""
    pkgs = environment.get("packages", {})
    return {
        "packages": {k: pkgs.get(k) for k in ("numpy", "scipy", "scikit-learn")},
        # distinct libraries only: a second copy of libgomp loaded by some import changes nothing
        "pools": distinct_pools(environment),
        "python": environment.get("python", {}).get("version"),
        # a step that iterates a set of strings gives other bits under another hash seed
        "hash_seed": environment.get("env_vars", {}).get("PYTHONHASHSEED"),
    }


@dataclass
class CacheHit:
    estimator: Any
    output: Any
    fitted: str
    output_fingerprint: str | None


def _dump_output(out: Any) -> bytes | None:
    if isinstance(out, np.ndarray) and not out.dtype.hasobject:
        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        return b"npy" + buf.getvalue()
    if hasattr(out, "tocsr") and hasattr(out, "nnz"):
        import scipy.sparse as sp

        buf = io.BytesIO()
        sp.save_npz(buf, out.tocsr(), compressed=False)
        return b"npz" + buf.getvalue()
    return None  # DataFrames and object arrays are not cached: their round trip is not exact


class _Hashing:
    """A binary stream that feeds every byte read from it to ``hasher``."""

    def __init__(self, stream: Any, hasher: Any) -> None:
        self.stream, self.hasher = stream, hasher

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.stream.read(n)
        self.hasher.update(data)
        return data


def _read_output(objects: Any, address: str) -> Any:
    """A cached step's output, read from the store and checked against its address.

    A dense array is read straight into a fresh array of its own shape (aligned and
    writable, as a later step may transform its input in place), with no intermediate
    copy of the object's bytes: on a step whose output is tens of megabytes, allocating
    and copying it a second time was a third of the hit. The header is checked before
    anything is allocated (no object dtype; its size must be the object's size), and the
    object's bytes are hashed as they are read, so a corrupt or hostile object raises
    (``CorruptObjectError``, ``ValueError``): the caller counts it a miss.
    """
    import blake3

    with objects.open(address) as raw:
        size = raw.seek(0, io.SEEK_END)  # the object's size, without asking the store again
        raw.seek(0)
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if size >= 1 << 20 else 1)
        stream = _Hashing(raw, hasher)
        if stream.read(3) != b"npy":  # a sparse matrix (npz)
            import scipy.sparse as sp

            rest = stream.read()
            _check(hasher, address)
            return sp.load_npz(io.BytesIO(rest))
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(stream)
        if dtype.hasobject:
            raise ValueError(f"a cached output of dtype {dtype} holds Python objects")
        count = math.prod(shape)  # exact: a hostile shape cannot wrap around
        stored = size - int(raw.tell())  # the bytes after the tag and the header
        if min(shape, default=0) < 0 or count * dtype.itemsize != stored:
            raise ValueError(
                f"a cached output's header declares {count} x {dtype.itemsize} bytes, "
                f"the object holds {stored}"
            )
        out = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        flat = out.reshape(-1, order="A")  # contiguous either way: a view, not a copy
        if stored and not np.may_share_memory(flat, out):  # pragma: no cover - NumPy's promise
            raise RuntimeError("a fresh array did not flatten in place")
        view = flat.view(np.uint8).data
        done = 0
        while done < len(view):
            n = raw.readinto(view[done:])
            if not n:
                raise CorruptObjectError(address, "a truncated object")
            done += n
        hasher.update(view)
        hasher.update(raw.read())  # anything past the declared data fails the check below
        _check(hasher, address)
        return out


def _check(hasher: Any, address: str) -> None:
    found = hasher.hexdigest()
    if found != address:
        raise CorruptObjectError(address, found)


class StepCache:
    """Per-step cache over a project's store (metadata rows + content-addressed objects)."""

    def __init__(self, store: RunRecords, root: Path, context: dict[str, Any]) -> None:
        self.store = store
        self.index = CacheIndex(store)
        self.root = root
        self.context = context

    def key(self, path: str, est: Any, input_fingerprint: str, final: bool) -> str:
        return fingerprint_value(
            {
                "v": CACHE_VERSION,
                "step": path,
                "class": f"{type(est).__module__}.{type(est).__qualname__}",
                "params": est.get_params(deep=False),
                "code": code_versions(est, self.root),
                "context": self.context,
                "input": input_fingerprint,
                "final": final,
            },
            kind="cachekey",
        )

    def get(self, key: str) -> CacheHit | None:
        row = self.index.get(key)
        if row is None:
            return None
        facts: dict[str, str] = {}
        try:
            blob = self.store.objects.get(row.fitted_object)
            # our own object, verified by address; from the load memo when this user has one
            est = load_model(blob, trusted_own=True, facts=facts)
            output = (
                _read_output(self.store.objects, row.output_object) if row.output_object else None
            )
        except Exception:
            return None  # a missing or corrupt object is a miss; the step is refitted
        # the memo records the fingerprint it was written with, checked then
        if facts.get("fitted") != row.fitted_fingerprint:
            if fingerprint_estimator(est) != row.fitted_fingerprint:
                return None
            remember(row.fitted_object, est, None, {"fitted": row.fitted_fingerprint})
        self.index.touch(key)
        return CacheHit(est, output, row.fitted_fingerprint, row.output_fingerprint)

    def put(
        self,
        key: str,
        path: str,
        est: Any,
        output: Any | None,
        fitted: str,
        output_fp: str | None,
        final: bool,
    ) -> str:
        """Store a fitted step; returns 'miss' when stored, 'uncacheable' when its output can't be."""
        out_bytes = None if final else _dump_output(output)
        if not final and out_bytes is None:
            return "uncacheable"
        fitted_bytes = dump_model(est)
        fitted_obj = self.store.objects.put(fitted_bytes)
        if is_plain_skops(fitted_bytes):
            remember(fitted_obj, est, None, {"fitted": fitted})
        out_obj = self.store.objects.put(out_bytes) if out_bytes is not None else None
        stamp = now_iso()
        entry = CacheEntry(
            key=key,
            step=path,
            cls=f"{type(est).__module__}.{type(est).__qualname__}",
            fitted_object=fitted_obj,
            output_object=out_obj,
            fitted_fingerprint=fitted,
            output_fingerprint=output_fp,
            output_shape=None
            if output is None or final
            else "x".join(map(str, getattr(output, "shape", ()))),
            size_bytes=len(fitted_bytes) + len(out_bytes or b""),
            created_at=stamp,
            last_used_at=stamp,
            hits=0,
        )
        # False when a concurrent run stored the same key: same content, same objects
        self.index.add(entry)
        return "miss"


# -- maintenance: ls, du, prune ------------------------------------------------------------------
def referenced_objects(store: Store, unreadable: list[dict[str, str]] | None = None) -> set[str]:
    """Objects that stored runs and registered models need: prune never removes them.

    A manifest that cannot be read (corrupt, missing) is skipped and appended to
    ``unreadable``: it must not stop the maintenance of everything else.
    """
    from seedline.records.references import collect

    refs = collect(store, include_cache=False)
    if unreadable is not None:
        unreadable.extend(refs.unreadable)
    return refs.addresses


def prune(
    store: Store,
    *,
    older_than_days: float | None = None,
    max_bytes: int | None = None,
    everything: bool = False,
) -> dict[str, Any]:
    """Remove cache entries (oldest use first) and their objects, keeping anything a run needs."""
    entries = list(reversed(list_entries(store)))  # least recently used first
    doomed: list[str] = []
    if everything:
        doomed = [e["key"] for e in entries]
    else:
        if older_than_days is not None:
            cutoff = (
                (dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days))
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
            doomed += [e["key"] for e in entries if e["last_used_at"] < cutoff]
        if max_bytes is not None:
            total = sum(e["size_bytes"] for e in entries if e["key"] not in doomed)
            for e in entries:
                if total <= max_bytes:
                    break
                if e["key"] not in doomed:
                    doomed.append(e["key"])
                    total -= e["size_bytes"]
    if not doomed:
        return {"entries": 0, "bytes": 0, "objects": 0, "unreadable_manifests": []}
    index = CacheIndex(store)
    unreadable: list[dict[str, str]] = []
    keep = referenced_objects(store, unreadable) | index.objects_except(doomed)
    rows = index.remove(doomed)
    removed = 0
    for r in rows:
        for address in r.objects:
            if address not in keep and store.objects.remove(address):
                removed += 1
    return {
        "entries": len(rows),
        "bytes": sum(r.size_bytes for r in rows),
        "objects": removed,
        "unreadable_manifests": unreadable,
    }
