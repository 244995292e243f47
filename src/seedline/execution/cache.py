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
import logging
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
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
from seedline.execution.loadmemo import has_memo, recall, remember, revive
from seedline.execution.model_checks import check_model_structure
from seedline.execution.persist import (
    dump_model,
    has_networks,
    is_plain_skops,
    load_model,
    load_own_step,
)
from seedline.records.cache_index import CacheEntry, CacheIndex, list_entries
from seedline.records.recording import RunRecords
from seedline.storage.embedded import now_iso

if TYPE_CHECKING:  # maintenance takes the full store; a run records through RunRecords
    from seedline.records.tracking import Store

CACHE_VERSION = 1
log = logging.getLogger(__name__)


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


@dataclass
class _Fitted:
    """A step fitted (missed) in this run, its output stored, its fitted state not yet."""

    key: str
    path: str
    estimator: Any
    output_object: str | None
    output_size: int
    fitted: str
    output_fingerprint: str | None
    output_shape: str | None

    @property
    def name(self) -> str:
        """The step's name in the pipeline (and in the model file): its path's last part."""
        return self.path.rpartition("/")[2]


class StepCache:
    """Per-step cache over a project's store (metadata rows + content-addressed objects).

    A step that misses is fitted, its output is stored at once, and its entry waits for
    the run's model: the model file holds every step's fitted state, so the entry names
    that file and the step in it (:meth:`store_with_model`) rather than serialising the
    step a second time. A run that stops before its model is stored writes each such step
    to a file of its own instead (:meth:`store_apart`).
    """

    def __init__(self, store: RunRecords, root: Path, context: dict[str, Any]) -> None:
        self.store = store
        self.index = CacheIndex(store)
        self.root = root
        self.context = context
        self._fitted: list[_Fitted] = []
        # model files loaded for hits in this run, by address: the model, its memo's facts,
        # and whether it is a plain skops file (an archive with networks has no memo)
        self._models: dict[str, tuple[Any, dict[str, str], bool]] = {}

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
        try:
            # our own objects, verified by address; from the load memo when this user has one
            if row.fitted_step is None:
                facts: dict[str, str] = {}
                est = load_model(
                    self.store.objects.get(row.fitted_object), trusted_own=True, facts=facts
                )
                noted = facts.get("fitted")
            else:
                est, noted = self._model_step(row.fitted_object, row.fitted_step)
            output = (
                _read_output(self.store.objects, row.output_object) if row.output_object else None
            )
        except Exception:
            return None  # a missing or corrupt object is a miss; the step is refitted
        # the memo records the fingerprints it was written with, checked then
        if noted != row.fitted_fingerprint:
            if fingerprint_estimator(est) != row.fitted_fingerprint:
                return None
            self._note(row, est)
        self.index.touch(key)
        return CacheHit(est, output, row.fitted_fingerprint, row.output_fingerprint)

    def _model_step(self, address: str, name: str) -> tuple[Any, str | None]:
        """The step ``name`` of the model file at ``address``, and the fitted fingerprint its
        memo noted for it.

        With this user's memo of the whole model, the model is loaded from it (once per run)
        and the step taken; without one, from the step's own memo, or else only the step's
        part of the file is loaded (a teammate's entries: the model's first step is not
        worth its forest). A file whose step cannot be loaded apart is loaded whole.
        """
        loaded = self._models.get(address)
        data = None
        if loaded is None and not has_memo(address):
            part, data = self._model_part(address, name)
            if part is not None:
                return part
        if loaded is None:
            facts: dict[str, str] = {}
            if data is None:
                data = self.store.objects.get(address)
            model = load_model(data, trusted_own=True, facts=facts)
            loaded = self._models[address] = (model, facts, is_plain_skops(data))
        model, facts, _ = loaded
        steps = dict(getattr(model, "steps", None) or [])
        if name not in steps:
            raise KeyError(f"the model file {address} has no step {name!r}")
        return steps[name], facts.get(_fact(name))

    def _model_part(
        self, address: str, name: str
    ) -> tuple[tuple[Any, str | None] | None, bytes | None]:
        """The step ``name`` of the model file at ``address`` on its own (and its memo's
        fingerprint), from its memo or loaded from its part of the file; or None for a file
        to load whole (an archive with networks, a file whose step skops cannot load apart),
        with the file's bytes when they were read. The bytes are not kept: a second step of
        the same file reads them again, rather than a run holding every model file it hit."""
        memo = recall(_part_memo(address, name))
        if memo is not None:
            est = revive(memo)
            if est is not None:
                check_model_structure(est, f"step {name!r} of model file {address}")
                return (est, memo.facts.get("fitted")), None
        data = self.store.objects.get(address)
        if not is_plain_skops(data):
            return None, data
        try:
            est = load_own_step(data, name, f"step {name!r} of model file {address}")
        except Exception as exc:  # the whole file then: its step is checked all the same
            log.debug("step %s of %s not loaded apart: %s", name, address, exc)
            return None, data
        return (est, None), None

    def _note(self, row: CacheEntry, est: Any) -> None:
        """Remember that this stored state checked out, for the next load (a new load memo)."""
        if row.fitted_step is None:
            if not has_networks(est):  # an archive with networks has no memo
                remember(row.fitted_object, est, None, {"fitted": row.fitted_fingerprint})
            return
        loaded = self._models.get(row.fitted_object)
        if loaded is None:  # the step was loaded apart (a whole load keeps its model): its own memo
            remember(
                _part_memo(row.fitted_object, row.fitted_step),
                est,
                None,
                {"fitted": row.fitted_fingerprint},
            )
            return
        # at once, before the run uses the step: the memo holds the state just checked
        model, facts, plain = loaded
        facts[_fact(row.fitted_step)] = row.fitted_fingerprint
        if plain:  # an archive with networks has no memo
            remember(row.fitted_object, model, None, dict(facts))

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
        """Cache a step fitted in this run; 'miss' when it will be stored, 'uncacheable' when
        its output cannot be. Its output is stored now, its fitted state with the model."""
        out_bytes = None if final else _dump_output(output)
        if not final and out_bytes is None:
            return "uncacheable"
        self._fitted.append(
            _Fitted(
                key=key,
                path=path,
                estimator=est,
                output_object=self.store.objects.put(out_bytes) if out_bytes is not None else None,
                output_size=len(out_bytes or b""),
                fitted=fitted,
                output_fingerprint=output_fp,
                output_shape=None if final else "x".join(map(str, getattr(output, "shape", ()))),
            )
        )
        return "miss"

    def remember_model(self, address: str, model: Any, data: bytes | None) -> None:
        """Write the load memo of the run's model file (``data``, at ``address``) when steps
        fitted in this run will be cached in it, with the fitted fingerprint of each of those
        steps (the ones fingerprinted as they are; not a frozen step, whose recorded
        fingerprint is the step it wraps), so a hit on them loads at pickle's speed and
        checks nothing again. Called before anything else uses the model (scoring calls its
        steps), so the memo holds the state those fingerprints were taken of, as the file does."""
        if self._fitted and data is not None and is_plain_skops(data):
            remember(address, model, None, {_fact(f.name): f.fitted for f in self._fitted})

    def store_with_model(self, address: str) -> None:
        """Index the steps fitted in this run as steps of the run's model file at ``address``."""
        fitted_steps, self._fitted = self._fitted, []
        for step in fitted_steps:
            self.index.add(self._entry(step, address, step.name, step.output_size))

    def store_apart(self) -> None:
        """Write each step fitted in this run to a file of its own: the run stopped before its
        model was stored. A step whose state is no longer the one fingerprinted when it was
        fitted (scoring may have called it) or that cannot be written is left out (the run's
        failure is the error to report)."""
        fitted_steps, self._fitted = self._fitted, []
        for step in fitted_steps:
            try:
                if fingerprint_estimator(step.estimator) != step.fitted:
                    continue
                data = dump_model(step.estimator)
                address = self.store.objects.put(data)
                if is_plain_skops(data):
                    remember(address, step.estimator, None, {"fitted": step.fitted})
                self.index.add(self._entry(step, address, None, len(data) + step.output_size))
            except Exception as exc:
                log.debug("step %s not cached: %s", step.path, exc)

    def _entry(self, step: _Fitted, address: str, fitted_step: str | None, size: int) -> CacheEntry:
        stamp = now_iso()
        est = step.estimator
        return CacheEntry(
            key=step.key,
            step=step.path,
            cls=f"{type(est).__module__}.{type(est).__qualname__}",
            fitted_object=address,
            output_object=step.output_object,
            fitted_fingerprint=step.fitted,
            output_fingerprint=step.output_fingerprint,
            output_shape=step.output_shape,
            size_bytes=size,
            created_at=stamp,
            last_used_at=stamp,
            hits=0,
            fitted_step=fitted_step,
        )


def _fact(step: str) -> str:
    """The load memo's fact naming a model step's fitted fingerprint."""
    return f"fitted:{step}"


def _part_memo(address: str, step: str) -> str:
    """The name of the load memo of one step of the model file at ``address``, loaded apart:
    a BLAKE3 key derivation from both, in a context of its own, so it is named like every
    memo and can never be the address of any bytes (whose memo is named by their address)."""
    derive = blake3.blake3(derive_key_context="seedline 2026-12-01 load memo of a model step")
    return derive.update(f"{address}\0{step}".encode()).hexdigest()


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
