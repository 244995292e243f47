"""``seedline reproduce``: rebuild a run from its manifest alone and prove it, or say why not.

Before running, the inputs are checked: every data fingerprint (a changed file fails fast,
naming the file and its changed columns), the environment and the code. The rerun never
uses a cache. The verdict is *bitwise* (every per-step fingerprint and the predictions
match), *tolerance* (values differ, but every fitted array, the predictions and the
metrics are within ``rtol``/``atol``), or *failed*; anything but bitwise names the first
step whose output diverged and the most likely cause.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seedline.core.deeplearning import comparable_state, restore_recorded_backend
from seedline.core.environment import capture_environment, capture_git
from seedline.core.errors import PipelineError, SeedlineError
from seedline.core.spec import DataSpec, Spec
from seedline.execution.data import FILE_KINDS, LoadedData, load_data, read_source
from seedline.execution.persist import load_model
from seedline.execution.runner import Prepared, run
from seedline.records.manifest import CodeRecord, EnvironmentRecord, Manifest
from seedline.records.recording import RunRecords
from seedline.records.tracking import Store
from seedline.workflow.compare import (
    Difference,
    can_explain,
    compare_steps,
    describe_table_change,
    diff_code,
    diff_environment,
    diff_manifests,
    diff_platform,
)
from seedline.workflow.deviation import DEFAULT_ATOL, DEFAULT_RTOL, deviation

VERDICTS = ("bitwise", "tolerance", "failed")


class ReproductionError(SeedlineError):
    """Raised when a reproduction cannot even be attempted (no such commit, no diff object...)."""


@dataclass
class ReproduceReport:
    """The outcome of ``reproduce``: verdict, first divergent step, likely cause, evidence."""

    original: str
    verdict: str = "failed"
    reproduction: str | None = None
    first_divergent_step: str | None = None
    # for a deep-learning step: the first layer whose weights differ
    first_divergent_layer: str | None = None
    likely_cause: str = ""
    differences: list[Difference] = field(default_factory=list)
    preflight: dict[str, list[Difference]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    at_commit: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": self.original,
            "reproduction": self.reproduction,
            "verdict": self.verdict,
            "first_divergent_step": self.first_divergent_step,
            "first_divergent_layer": self.first_divergent_layer,
            "likely_cause": self.likely_cause,
            "differences": [d.to_dict() for d in self.differences],
            "preflight": {k: [d.to_dict() for d in v] for k, v in self.preflight.items()},
            "steps": self.steps,
            "predictions": self.predictions,
            "metrics": self.metrics,
            "tolerance": self.tolerance,
            "seconds": self.seconds,
            "at_commit": self.at_commit,
            "notes": self.notes,
        }


# -- inputs -----------------------------------------------------------------------------------
def load_manifest(ref: str, store: Store | None) -> Manifest:
    """A manifest from a JSON file (``seedline show RUN --json > run.json``) or a run id in the store."""
    path = Path(ref)
    if path.suffix.lower() == ".json" or path.is_file():
        if not path.is_file():
            raise SeedlineError(f"manifest file {ref!r} does not exist")
        return Manifest.from_json(_without_tags(path.read_bytes()))
    if store is None:
        raise SeedlineError(
            f"{ref!r} is neither a manifest file nor a run in a store",
            hint="cd into the project, or pass a .json manifest",
        )
    return store.manifest(ref)


def _without_tags(text: bytes) -> bytes:
    """A manifest document less the run's tags that ``seedline show --json`` adds beside it.

    Tags label a run in its store; they are not part of the manifest, so a rebuild ignores them.
    """
    try:
        doc = json.loads(text)
    except ValueError:
        return text  # Manifest.from_json says what is wrong with it
    if isinstance(doc, dict) and "tags" in doc:
        doc.pop("tags")
        return json.dumps(doc).encode()
    return text


def verified_spec(manifest: Manifest) -> Spec:
    """The manifest's spec, checked against the spec fingerprint the same manifest records.

    A manifest file can come from anyone; an edited spec whose fingerprint was not updated is
    refused here, before anything is built (and building only ever calls estimator classes).
    """
    try:
        spec = Spec.from_dict(manifest.spec)
    except SeedlineError as exc:
        raise ReproductionError(
            f"run {manifest.run_id}: the manifest's spec is not a valid spec: {exc.message}"
        ) from exc
    actual = spec.fingerprint()
    if actual != manifest.spec_fingerprint:
        raise ReproductionError(
            f"run {manifest.run_id}: the manifest's spec does not match its recorded spec fingerprint "
            f"(recorded {manifest.spec_fingerprint}, the spec it holds hashes to {actual}); "
            "the manifest was edited after the run",
            hint="reproduce from the store (seedline reproduce RUN_ID) or from an unedited manifest file",
        )
    return spec


def _data_spec(original: Manifest) -> DataSpec | None:
    """The run's ``data`` section (a SQL source needs its database, a loader its params)."""
    try:
        return DataSpec.model_validate(original.spec.get("data") or {})
    except ValueError:
        return None


def check_data(original: Manifest, root: Path) -> list[Difference]:
    """Compare every recorded data source with what is on disk now."""
    out: list[Difference] = []
    data_spec = _data_spec(original)
    for source in original.data.sources if original.data else []:
        if source.kind in FILE_KINDS:
            path = root / source.uri
            if not path.is_file():
                out.append(
                    Difference(
                        "data",
                        source.uri,
                        source.fingerprint,
                        None,
                        f"file is missing (looked for {path})",
                    )
                )
                continue
            from seedline.core.fingerprint import fingerprint_file

            if fingerprint_file(path) == source.fingerprint:
                continue
        try:
            _, now = read_source(source.uri, root, data_spec)
        except SeedlineError as exc:
            out.append(Difference("data", source.uri, source.fingerprint, None, str(exc)))
            continue
        if now["fingerprint"] != source.fingerprint:
            out.append(
                Difference(
                    "data",
                    source.uri,
                    source.fingerprint,
                    now["fingerprint"],
                    describe_table_change(source.table, now["table"]),
                )
            )
    return out


@dataclass
class SnapshotReads:
    """Where the sources that a snapshot replaces are read from: folders (files), Parquet tables."""

    roots: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)

    def load(self, data: DataSpec, root: Path) -> LoadedData | None:
        """The run's data with the snapshots in place, or None when no snapshot is used."""
        if not (self.roots or self.tables):
            return None
        return load_data(data, root, self.roots, self.tables)


def use_snapshots(
    original: Manifest, store: RunRecords, differences: list[Difference], notes: list[str]
) -> tuple[list[Difference], SnapshotReads]:
    """Replace missing or changed data by the run's snapshots, where it kept them.

    Returns the differences no snapshot resolves, and where to read each resolved source
    from; what was used is said in ``notes``. The user's own file is never written: the
    snapshot is materialized under ``.seedline/snapshots/``. A query or loader that cannot
    run here, or returns other rows, is replaced by the table the run read.
    """
    from seedline.core.fingerprint import fingerprint_file
    from seedline.execution import snapshots

    kept = {s.uri: s for s in (original.data.sources if original.data else []) if s.snapshot}
    remaining: list[Difference] = []
    reads = SnapshotReads()
    for d in differences:
        source = kept.get(d.name)
        if source is None or source.snapshot is None:
            remaining.append(d)
            continue
        if source.kind not in FILE_KINDS:
            try:
                table = snapshots.materialize_table(store, source.uri, source.snapshot)
            except SeedlineError as exc:
                remaining.append(
                    Difference(d.category, d.name, d.a, d.b, f"{d.detail}; {exc.message}")
                )
                continue
            reads.tables[source.uri] = (table, source.model_dump(mode="json"))
            why = "cannot be read here" if d.b is None else "gives other rows now"
            notes.append(
                f"{source.uri} {why}: used the table the run read, kept as its data snapshot ({table})"
            )
            continue
        try:
            root = snapshots.materialize(store, source.uri, source.snapshot)
        except SeedlineError as exc:
            remaining.append(Difference(d.category, d.name, d.a, d.b, f"{d.detail}; {exc.message}"))
            continue
        path = snapshots.materialized_path(store, source.uri, source.snapshot)
        if fingerprint_file(path) != source.fingerprint:
            # a materialized copy edited by hand: write it again from the verified object
            path.chmod(0o644)
            path.unlink()
            root = snapshots.materialize(store, source.uri, source.snapshot)
        reads.roots[source.uri] = root
        why = "is missing here" if d.b is None else "differs from the one the run read"
        notes.append(
            f"{source.uri} {why}: used the run's data snapshot ({path}); your file was not touched"
        )
    return remaining, reads


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False, timeout=300
    )


@contextlib.contextmanager
def commit_worktree(original: Manifest, root: Path, store: Store) -> Iterator[Path]:
    """A temporary git worktree at the run's commit with its uncommitted diff applied."""
    code = original.code
    commit = code.commit
    if not commit:
        raise ReproductionError(
            f"run {original.run_id} has no recorded commit ({code.reason or 'no commit yet'})",
            hint="--at-commit needs a run made inside a git repository with at least one commit",
        )
    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ReproductionError(
            f"{root} is not inside a git repository",
            hint="run --at-commit from a clone of the project",
        )
    toplevel = Path(top.stdout.decode().strip())
    if _git(toplevel, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise ReproductionError(
            f"commit {commit} is not in this repository",
            hint="git fetch the branch that has it, then try again",
        )
    diff: bytes | None = None
    if code.diff:
        address = original.artifacts.get("diff")
        if not address or not store.objects.exists(address):
            raise ReproductionError(
                f"run {original.run_id} had uncommitted changes, but their diff object is not in this store",
                hint="reproduce from the clone that made the run, or without --at-commit",
            )
        diff = store.objects.get(address)
    tmp = Path(tempfile.mkdtemp(prefix="seedline-at-"))
    tree = tmp / "tree"
    added = _git(toplevel, "worktree", "add", "--detach", str(tree), commit)
    if added.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ReproductionError(
            f"cannot check out {commit}: {added.stderr.decode(errors='replace').strip()}"
        )
    try:
        if diff:
            applied = _git(tree, "apply", "--binary", "--whitespace=nowarn", "-", stdin=diff)
            if applied.returncode != 0:
                raise ReproductionError(
                    f"the recorded uncommitted diff does not apply to {commit}: {applied.stderr.decode(errors='replace').strip()}"
                )
        try:
            rel = Path(original.project_root).relative_to(code.root or "")
        except ValueError:
            rel = root.resolve().relative_to(toplevel)
        yield tree / rel
    finally:
        _git(toplevel, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        _git(toplevel, "worktree", "prune")


def _purge_modules_under(*roots: Path) -> None:
    """Forget user modules imported from these folders, so the rerun imports the right source."""
    prefixes = tuple({str(r) + "/" for r in roots} | {str(r.resolve()) + "/" for r in roots})
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if file and "site-packages" not in file and file.startswith(prefixes):
            del sys.modules[name]


# -- verification -----------------------------------------------------------------------------
class _Verifier:
    """Runs inside the reproduction (``after_fit``): compares it with the original."""

    def __init__(
        self, original: Manifest, store: Store, rtol: float, atol: float, report: ReproduceReport
    ) -> None:
        self.original, self.store, self.rtol, self.atol, self.report = (
            original,
            store,
            rtol,
            atol,
            report,
        )

    def _original_artifacts(self) -> tuple[Any | None, Any | None]:
        model_addr, probe_addr = (
            self.original.artifacts.get("model"),
            self.original.artifacts.get("probe"),
        )
        if (
            not model_addr
            or not probe_addr
            or not self.store.objects.exists(model_addr)
            or not self.store.objects.exists(probe_addr)
        ):
            return None, None

        blob = self.store.objects.get(model_addr)  # verified against its address on read
        # the object is seedline's own output, checked by content address: its types are trusted
        model = load_model(blob, trusted_own=True)
        probe = np.load(io.BytesIO(self.store.objects.get(probe_addr)), allow_pickle=False)
        return model, {k: probe[k] for k in probe.files}

    def __call__(self, manifest: Manifest, model: Any, prepared: Prepared) -> None:
        r = self.report
        rows, first = compare_steps(self.original, manifest)
        r.first_divergent_step = first
        r.first_divergent_layer = next(
            (s.first_divergent_layer for s in rows if s.name == first), None
        )
        preds_equal = manifest.fingerprints.get("predictions") == self.original.fingerprints.get(
            "predictions"
        )
        proba_equal = manifest.probe.proba == self.original.probe.proba
        bitwise = (
            first is None
            and preds_equal
            and proba_equal
            and len(manifest.steps) == len(self.original.steps)
        )
        r.steps = [
            {"name": s.name, "fitted_equal": s.fitted_equal, "output_equal": s.output_equal}
            | (
                {"first_divergent_layer": s.first_divergent_layer}
                if s.first_divergent_layer
                else {}
            )
            for s in rows
        ]
        r.predictions = {"equal": preds_equal, "proba_equal": proba_equal}
        r.metrics = {
            k: {
                "original": v,
                "reproduction": manifest.metrics.get(k),
                "delta": (manifest.metrics.get(k, float("nan")) - v),
            }
            for k, v in self.original.metrics.items()
        }
        if bitwise:
            r.verdict = "bitwise"
        else:
            r.verdict = self._judge_tolerance(manifest, model, prepared)
        r.differences = [d for d in diff_manifests(self.original, manifest).differences]
        r.likely_cause = _likely_cause(r)
        manifest.reproduction = {
            "of": self.original.run_id,
            "verdict": r.verdict,
            "first_divergent_step": r.first_divergent_step,
            "first_divergent_layer": r.first_divergent_layer,
            "likely_cause": r.likely_cause,
            "tolerance": r.tolerance,
            "steps": r.steps,
            "predictions": r.predictions,
            "differences": [d.to_dict() for d in r.differences],
            "at_commit": r.at_commit,
        }

    def _judge_tolerance(self, manifest: Manifest, model: Any, prepared: Prepared) -> str:
        r = self.report
        orig_model, probe = self._original_artifacts()
        if orig_model is None or probe is None:
            r.notes.append(
                "the original model and probe are not in this store: only fingerprints could be compared, so no tolerance verdict is possible"
            )
            return "failed"
        ok = True
        Xo: Any = prepared.X_train
        Xn: Any = prepared.X_train
        n = len(model.steps)
        for i, row in enumerate(r.steps):
            a_est, b_est = orig_model.steps[i][1], model.steps[i][1]
            fitted = deviation(
                comparable_state(a_est), comparable_state(b_est), rtol=self.rtol, atol=self.atol
            )
            row["fitted_deviation"] = fitted.to_dict()
            ok &= fitted.within
            if i < n - 1 and a_est not in (None, "passthrough"):
                Xo, Xn = a_est.transform(Xo), b_est.transform(Xn)
                out = deviation(Xo, Xn, rtol=self.rtol, atol=self.atol)
                row["output_deviation"] = out.to_dict()
                ok &= out.within
        pred = model.predict(prepared.X_test)
        orig_pred = probe["predictions"]
        if np.asarray(pred).dtype.kind in "fc":
            d = deviation(
                np.asarray(orig_pred, dtype=np.float64),
                np.asarray(pred, dtype=np.float64),
                rtol=self.rtol,
                atol=self.atol,
            )
            r.predictions["deviation"] = d.to_dict()
            ok &= d.within
        else:
            now = np.asarray(pred)
            now = (
                now.astype(str) if orig_pred.dtype.kind == "U" else now
            )  # labels are stored as text when they were objects
            mismatched = (
                int(np.sum(now != orig_pred))
                if now.shape == orig_pred.shape
                else int(orig_pred.size)
            )
            r.predictions["labels_changed"] = mismatched
            ok &= mismatched == 0
        if "proba" in probe and hasattr(model, "predict_proba"):
            d = deviation(
                probe["proba"],
                np.asarray(model.predict_proba(prepared.X_test)),
                rtol=self.rtol,
                atol=self.atol,
            )
            r.predictions["proba_deviation"] = d.to_dict()
            ok &= d.within
        for m in r.metrics.values():
            if m["reproduction"] is None:
                ok = False
                continue
            d = deviation(
                float(m["original"]), float(m["reproduction"]), rtol=self.rtol, atol=self.atol
            )
            m["within"] = d.within
            ok &= d.within
        return "tolerance" if ok else "failed"


def _diverged(r: ReproduceReport) -> str:
    if not r.first_divergent_layer:
        return ""
    return f"; step {r.first_divergent_step!r} diverged first, in layer {r.first_divergent_layer!r}"


def _likely_cause(r: ReproduceReport) -> str:
    if r.verdict == "bitwise":
        return ""
    layer = f", first in layer {r.first_divergent_layer!r}" if r.first_divergent_layer else ""
    causes = [d for d in r.differences if can_explain(d)]
    if causes:
        return causes[0].describe() + _diverged(r)
    pre = [d for k in ("data", "code", "environment") for d in r.preflight.get(k, [])]
    if pre:
        return pre[0].describe() + _diverged(r)
    if r.first_divergent_step:
        return (
            f"no recorded input differs: step {r.first_divergent_step!r} is nondeterministic here{layer} "
            "(run 'seedline check' to see whether it is seed, hash-seed or thread sensitive)"
        )
    return "the predictions differ although every step matched"


def reproduce(
    ref: str,
    *,
    store: Store | None = None,
    project_root: str | Path | None = None,
    allow_data_change: bool = False,
    at_commit: bool = False,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> ReproduceReport:
    """Rebuild run ``ref`` (an id, a prefix, or a manifest .json file) and verify it. Never uses a cache."""
    t0 = time.perf_counter()
    if store is None:
        start = Path(project_root or ".")
        try:
            store = Store.find(start)
        except SeedlineError:
            if not Path(ref).is_file():
                raise
            store = Store.open(start)
    original = load_manifest(ref, store)
    spec = verified_spec(original)
    root = Path(project_root).resolve() if project_root else store.project_root
    report = ReproduceReport(original=original.run_id, tolerance={"rtol": rtol, "atol": atol})
    report.seconds["original"] = float(original.timings.get("total", 0.0))
    if original.status != "succeeded":
        raise ReproductionError(
            f"run {original.run_id} did not succeed (status {original.status!r}): there is nothing to reproduce"
        )

    worktree = commit_worktree(original, root, store) if at_commit else contextlib.nullcontext(root)
    with worktree as run_root:
        if at_commit:
            report.at_commit = original.code.commit
            for source in original.data.sources if original.data else []:
                # data the repository does not track (ignored, untracked) comes from the current checkout
                here, there = root / source.uri, run_root / source.uri
                if source.kind in FILE_KINDS and not there.exists() and here.is_file():
                    there.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(here, there)
                    report.notes.append(
                        f"{source.uri} is not in the commit; used the current checkout's copy (its fingerprint is checked)"
                    )
        t = time.perf_counter()
        report.preflight["data"], snapshot_reads = use_snapshots(
            original, store, check_data(original, run_root), report.notes
        )
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=original.settings.threads):
            env_now = EnvironmentRecord.model_validate(capture_environment())
        # thread pools and variables depend on what is imported: they are compared after the rerun
        env_diffs = diff_environment(original.environment, env_now)
        env_diffs = [d for d in env_diffs if d.name.startswith(("package ", "python "))]
        report.preflight["environment"] = env_diffs + diff_platform(original.environment, env_now)
        code_now, _ = capture_git(run_root)
        # local modules are compared after the rerun, once the spec's classes are imported
        report.preflight["code"] = diff_code(
            original.code.model_copy(update={"local_modules": {}}),
            CodeRecord.model_validate({**code_now, "local_modules": {}}),
        )
        checks = time.perf_counter() - t

        if report.preflight["data"] and not allow_data_change:
            report.verdict = "failed"
            report.differences = list(report.preflight["data"])
            report.likely_cause = report.preflight["data"][0].describe()
            report.notes.append(
                "nothing was rerun: the data changed (pass --allow-data-change to rerun on the new data anyway)"
            )
            report.seconds["checks"] = checks
            report.seconds["total"] = time.perf_counter() - t0
            return report

        _purge_modules_under(root, run_root)
        verifier = _Verifier(original, store, rtol, atol, report)
        # Keras' backend, when the shell chose it, is read back from the run's environment
        restore_recorded_backend(original.spec, original.environment.env_vars)
        loaded = snapshot_reads.load(spec.data, run_root)
        manifest: Manifest | None = None
        try:
            result = run(
                spec,
                project_root=run_root,
                store=store,
                parent_run=original.run_id,
                after_fit=verifier,
                use_cache=False,  # a proof never trusts a cache
                loaded=loaded,
                snapshot=False,  # the original kept the data; the proof needs no second copy
                # steps taken 'from' a model come from the run the original used, even if
                # the alias it named has moved since
                frozen_pins={s.name: s.frozen_from.run_id for s in original.steps if s.frozen_from},
            )
            manifest = result.manifest
        except PipelineError as exc:
            manifest = exc.result.manifest if exc.result is not None else None
            report.verdict = "failed"
            report.likely_cause = f"the reproduction failed: {exc.message}"
        finally:
            _purge_modules_under(run_root)
    if manifest is not None:
        report.reproduction = manifest.run_id
        report.seconds["reproduction"] = float(manifest.timings.get("total", 0.0))
    report.seconds["checks"] = checks
    report.seconds["total"] = time.perf_counter() - t0
    return report
