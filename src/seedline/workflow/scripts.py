"""Training scripts outside a pipeline: ``seedline exec`` records one, ``seedline reproduce`` re-runs it.

``exec_script`` runs ``python SCRIPT ARGS`` in a fresh interpreter under the seed plan
(``python -m seedline.core.determinism``: ``seedline.determinism(seed)`` applied first,
with the frameworks the script imports), with ``PYTHONHASHSEED`` pinned and the variables
frameworks read at import set beforehand. It records a run in the project's store: the
script and its arguments, the code (script fingerprint, git commit and diff), the
environment, the data files it declares, and the fingerprints of the output files it
declares (for weights files, one fingerprint per tensor). The output files are kept in the
object store, so a reproduction can measure how far it is from them.

``reproduce_script`` re-runs the recorded script in a copy of the project (the outputs of
the original stay where they are) and compares each declared output: **bitwise**,
**tolerance** (weights within ``rtol``/``atol``, with the largest deviation), or **failed**
with the first differing file and, for weights files, the first differing tensor.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seedline.core.deeplearning import (
    WEIGHTS_SUFFIXES,
    framework_environment,
    frameworks_in_source,
    weight_tensors,
)
from seedline.core.determinism import DATA_LOG_VARIABLE, RECORD_VARIABLE
from seedline.core.environment import (
    capture_environment,
    capture_git,
    environment_fingerprint,
    relevant_env_vars,
)
from seedline.core.errors import SeedlineError
from seedline.core.fingerprint import fingerprint_bytes, fingerprint_file, fingerprint_value
from seedline.core.seeding import SeedPlan
from seedline.core.version import __version__
from seedline.records.manifest import Manifest, SeedRecord, StepRecord
from seedline.records.recording import new_run_id
from seedline.records.tracking import Store
from seedline.workflow.deviation import deviation
from seedline.workflow.parity import DEFAULT_ATOL, DEFAULT_RTOL
from seedline.workflow.reproduce import ReproductionError

SCRIPT_KIND = "script"
# Keras' own default backend, pinned so that a reproduction does not depend on ~/.keras
KERAS_DEFAULT_BACKEND = "tensorflow"
# output files larger than this are fingerprinted but not kept (no tolerance comparison)
MAX_KEPT_BYTES = 512 * 2**20
# never copied into a reproduction's folder: seedline's store, version control, environments
_NOT_COPIED = (".seedline", ".git", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ScriptRun:
    """A finished ``seedline exec``: the run id, the script's exit code and the output fingerprints."""

    run_id: str
    status: str
    returncode: int
    outputs: dict[str, str]
    seconds: float
    manifest: Manifest

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "returncode": self.returncode,
            "outputs": self.outputs,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ScriptReproduction:
    """The outcome of reproducing a script run: verdict, first differing file and tensor, evidence."""

    original: str
    verdict: str = "failed"
    reproduction: str | None = None
    first_differing_file: str | None = None
    first_differing_tensor: str | None = None
    likely_cause: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)
    preflight: dict[str, list[str]] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- recording ---------------------------------------------------------------------------------
def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _output_record(path: Path, name: str) -> tuple[StepRecord, dict[str, Any] | None]:
    """A declared output as a step record: its file fingerprint, and per tensor for weights files."""
    tensors = weight_tensors(path) if path.suffix.lower() in WEIGHTS_SUFFIXES else None
    layers = None
    fitted = fingerprint_file(path)
    if tensors is not None:
        layers = {k: fingerprint_value(v, kind="tensor") for k, v in tensors.items()}
        # the tensors, not the bytes: a .keras archive holds the time it was saved
        fitted = fingerprint_value(sorted(layers.items()), kind="weights")
    record = StepRecord.model_validate(
        {
            "name": name,
            "path": f"outputs/{name}",
            "class": f"file:{path.suffix.lower().lstrip('.') or 'bytes'}",
            "fitted": fitted,
            "output": fingerprint_file(path),
            "output_shape": [path.stat().st_size],
            "fit_seconds": 0.0,
            "layers": layers,
        }
    )
    return record, tensors


def _child_env(
    seed: int, threads: int, frameworks: set[str], base: dict[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONHASHSEED"] = str(SeedPlan(seed).hash_seed())
    if "keras" in frameworks:
        env["KERAS_BACKEND"] = env.get("KERAS_BACKEND") or KERAS_DEFAULT_BACKEND
        frameworks = frameworks | {env["KERAS_BACKEND"]}
    for name, value in framework_environment(frameworks, threads).items():
        if name == "XLA_FLAGS" and env.get(name):
            extra = [f for f in value.split() if f.split("=")[0] not in env[name]]
            env[name] = " ".join([*env[name].split(), *extra])
        else:
            env.setdefault(name, value)
    # BLAS/OpenMP pools sized before NumPy starts them
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, str(threads))
    return env


def _launch(
    script: Path,
    args: list[str],
    *,
    cwd: Path,
    seed: int,
    threads: int,
    frameworks: set[str],
    env: dict[str, str],
    record_path: Path,
    quiet: bool,
) -> int:
    env = {
        **env,
        RECORD_VARIABLE: str(record_path),
        DATA_LOG_VARIABLE: str(record_path.with_name("data.log")),
    }
    # seedline must be importable in the script's interpreter as it is in this one
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    to_import = sorted(frameworks & {"torch", "tensorflow", "jax", "keras"})
    cmd = [
        sys.executable,
        "-m",
        "seedline.core.determinism",
        "--seed",
        str(seed),
        "--threads",
        str(threads),
        "--import",
        ",".join(to_import),
        str(script),
        *args,
    ]
    # quiet: the script's output goes to stderr, so that stdout carries one JSON document
    out = 2 if quiet else None
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, stdout=out, check=False).returncode
    except OSError as exc:
        raise SeedlineError(f"could not start {sys.executable}: {exc}") from exc


def _data_read(log: Path) -> list[Path]:
    """The files the script named with ``seedline.data_file``, in the order it first read them."""
    if not log.is_file():
        return []
    seen: dict[str, None] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.strip():
            seen.setdefault(json.loads(line), None)
    return [Path(p) for p in seen]


def _check_inputs(script: Path, outputs: list[str], data: list[str]) -> None:
    if not script.is_file():
        raise SeedlineError(
            f"the script {str(script)!r} does not exist",
            hint="give the path of a Python file: seedline exec train.py [ARGS] --outputs FILE",
        )
    if script.suffix != ".py":
        raise SeedlineError(
            f"seedline exec runs Python scripts; {script.name!r} does not end in .py",
            hint="give the path of a Python file: seedline exec train.py [ARGS] --outputs FILE",
        )
    if not outputs:
        raise SeedlineError(
            "seedline exec needs at least one output file to fingerprint; none was declared",
            hint="name the files the script writes: --outputs model.keras [more files ...]",
        )
    for d in data:
        if not Path(d).is_file():
            raise SeedlineError(
                f"the declared data file {d!r} does not exist",
                hint="--data names files the script reads; check the path",
            )


def exec_script(
    script: str | Path,
    args: list[str] | None = None,
    *,
    outputs: list[str],
    data: list[str] | None = None,
    seed: int = 0,
    threads: int = 1,
    store: Store | None = None,
    cwd: str | Path | None = None,
    parent_run: str | None = None,
    quiet: bool = False,
    recorded_paths: tuple[str, str] | None = None,
) -> ScriptRun:
    """Run ``script`` with ``args`` under the seed plan in a fresh interpreter and record the run.

    ``outputs``: the files the script writes (fingerprinted and kept; weights files tensor
    by tensor). ``data``: files it reads (fingerprinted; a reproduction refuses to run when
    one changed). ``seed``: the master seed. ``threads``: every thread pool's size.
    ``recorded_paths``: the (script, folder) to record, for a run in a copy of the project.
    """
    t0 = time.perf_counter()
    args = list(args or [])
    data = list(data or [])
    work = Path(cwd or ".").resolve()
    script_path = (work / script).resolve()
    _check_inputs(script_path, outputs, [str(work / d) for d in data])
    store = store or _store_for(work)
    root = store.project_root.resolve()
    # a reproduction runs in a copy of the project: it records the original's paths
    script_rel, cwd_rel = recorded_paths or (_relative(script_path, root), _relative(work, root))
    frameworks = frameworks_in_source(script_path)
    env = _child_env(seed, threads, frameworks)
    code, diff = capture_git(root)
    code["script"] = {
        "path": script_rel,
        "fingerprint": fingerprint_file(script_path),
    }
    if diff:
        code["diff_object"] = store.objects.put(diff)
    environment = capture_environment()
    environment["env_vars"] = relevant_env_vars(env)
    environment["fingerprint"] = environment_fingerprint(environment)
    spec = {
        "kind": SCRIPT_KIND,
        "name": f"exec {script_rel}",
        "script": script_rel,
        "args": args,
        "cwd": cwd_rel,
        "outputs": list(outputs),
        "data": [_relative(work / d, root) for d in data],
        "seed": int(seed),
        "threads": int(threads),
    }
    run_id = new_run_id()
    plan = SeedPlan(seed)
    manifest = Manifest(
        seedline_version=__version__,
        run_id=run_id,
        parent_run=parent_run,
        status="running",
        created_at=_now(),
        spec=spec,
        spec_fingerprint=fingerprint_bytes(
            json.dumps(spec, sort_keys=True, separators=(",", ":")).encode(), kind="spec"
        ),
        project_root=str(root),
        seeds=SeedRecord(
            master=int(seed),
            hash_seed={"PYTHONHASHSEED": env["PYTHONHASHSEED"], "pinned": True},
            derived={"python/hash_seed": plan.derive("python/hash_seed")},
            random_states={},
            globals={},
        ),
        settings={"threads": int(threads), "executor": "script", "frameworks": sorted(frameworks)},
        environment=environment,
        code=code,
        fingerprints={
            "environment": environment["fingerprint"],
            "code": code["script"]["fingerprint"],
        },
    )
    for d in data:
        manifest.fingerprints[f"data:{_relative(work / d, root)}"] = fingerprint_file(work / d)
    store.begin_run(manifest)
    with tempfile.TemporaryDirectory(prefix="seedline-exec-") as tmp:
        record_path = Path(tmp) / "determinism.json"
        t = time.perf_counter()
        rc = _launch(
            script_path,
            args,
            cwd=work,
            seed=seed,
            threads=threads,
            frameworks=frameworks,
            env=env,
            record_path=record_path,
            quiet=quiet,
        )
        manifest.timings["script"] = time.perf_counter() - t
        determinism = json.loads(record_path.read_text()) if record_path.is_file() else None
        read = _data_read(record_path.with_name("data.log"))
    # data files the script declared through seedline.data_file, as if given with --data;
    # named relative to the project (in a reproduction: to the copy it runs in)
    base = root if recorded_paths is None else script_path.parents[len(Path(script_rel).parts) - 1]
    for path in read:
        key = f"data:{_relative(path, base)}"
        if key not in manifest.fingerprints and path.is_file():
            manifest.fingerprints[key] = fingerprint_file(path)
    if determinism is not None and manifest.seeds is not None:
        manifest.seeds.derived.update(determinism.get("derived", {}))
        manifest.seeds.globals = {
            **determinism.get("seeds", {}),
            "deep_learning": determinism.get("controls", {}),
            "too_late": determinism.get("too_late", []),
        }
    found: dict[str, str] = {}
    error: str | None = None
    if rc != 0:
        error = f"the script exited with code {rc}"
    for name in outputs:
        path = work / name
        if not path.is_file():
            error = error or f"the declared output {name!r} was not written by the script"
            continue
        record, _ = _output_record(path, name)
        manifest.steps.append(record)
        found[name] = record.fitted
        manifest.fingerprints[f"output:{name}"] = record.fitted
        if path.stat().st_size <= MAX_KEPT_BYTES:
            manifest.artifacts[f"output:{name}"] = store.objects.put(path.read_bytes())
    manifest.fingerprints["outputs"] = fingerprint_value(sorted(found.items()), kind="outputs")
    manifest.status = "failed" if error else "succeeded"
    if error:
        manifest.error = {"message": error, "phase": "script"}
    manifest.finished_at = _now()
    manifest.timings["total"] = time.perf_counter() - t0
    store.finish_run(manifest, duration_s=manifest.timings["total"])
    return ScriptRun(
        run_id=run_id,
        status=manifest.status,
        returncode=rc,
        outputs=found,
        seconds=manifest.timings["total"],
        manifest=manifest,
    )


def _store_for(work: Path) -> Store:
    try:
        return Store.find(work)
    except SeedlineError:
        return Store.open(work)


# -- reproducing -------------------------------------------------------------------------------
def is_script_run(manifest: Manifest) -> bool:
    """Whether a manifest was made by ``seedline exec``."""
    return manifest.spec.get("kind") == SCRIPT_KIND


def _copy_project(root: Path, dest: Path, outputs: list[str]) -> None:
    skip = {Path(o).as_posix() for o in outputs}

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).resolve().relative_to(root.resolve())
        return {n for n in names if n in _NOT_COPIED or (rel / n).as_posix() in skip}

    shutil.copytree(root, dest, ignore=ignore, symlinks=True)


def _compare_file(
    name: str,
    original: StepRecord,
    path: Path,
    kept: bytes | None,
    rtol: float,
    atol: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {"file": name, "original": original.fitted}
    if not path.is_file():
        return {**out, "verdict": "failed", "why": "the reproduction did not write it"}
    record, tensors = _output_record(path, name)
    out["reproduction"] = record.fitted
    if record.fitted == original.fitted:
        return {**out, "verdict": "bitwise"}
    if original.layers is None or tensors is None:
        return {**out, "verdict": "failed", "why": "the bytes differ"}
    names = list(original.layers)
    differing = [t for t in names if (record.layers or {}).get(t) != original.layers[t]]
    extra = [t for t in (record.layers or {}) if t not in original.layers]
    first: str | None = next(iter(differing or extra), None)
    out["first_differing_tensor"] = first
    out["differing_tensors"] = len(differing) + len(extra)
    if kept is None or extra or any(t not in tensors for t in names):
        why = "tensors differ" if not extra else f"tensor {extra[0]!r} is new"
        return {**out, "verdict": "failed", "why": why}
    with tempfile.TemporaryDirectory(prefix="seedline-kept-") as tmp:
        saved = Path(tmp) / Path(name).name
        saved.write_bytes(kept)
        before = weight_tensors(saved) or {}
    dev = deviation(
        {t: before[t] for t in differing}, {t: tensors[t] for t in differing}, rtol=rtol, atol=atol
    )
    out["deviation"] = dev.to_dict()
    return {**out, "verdict": "tolerance" if dev.within else "failed", "why": "tensors differ"}


def reproduce_script(
    ref: str,
    *,
    store: Store | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    allow_data_change: bool = False,
    quiet: bool = False,
) -> ScriptReproduction:
    """Re-run a ``seedline exec`` run in a copy of its project and compare its declared outputs."""
    t0 = time.perf_counter()
    store = store or Store.find()
    original = store.manifest(ref)
    if not is_script_run(original):
        raise ReproductionError(f"run {original.run_id} is a pipeline run, not a script run")
    report = ScriptReproduction(original=original.run_id, tolerance={"rtol": rtol, "atol": atol})
    if original.status != "succeeded":
        raise ReproductionError(
            f"run {original.run_id} did not succeed (status {original.status!r}): there is nothing to reproduce"
        )
    spec = original.spec
    root = store.project_root.resolve()
    script = root / spec["script"]
    if not script.is_file():
        raise ReproductionError(
            f"the script {spec['script']} of run {original.run_id} is not in {root}",
            hint="check out the commit the run recorded (seedline show RUN)",
        )
    changed = []
    recorded = original.code.script.fingerprint if original.code.script else None
    if fingerprint_file(script) != recorded:
        changed.append(f"the script {spec['script']} changed since the run")
    report.preflight["code"] = changed
    data_changes = [
        f"data file {key.removeprefix('data:')} changed"
        if (root / key.removeprefix("data:")).is_file()
        else f"data file {key.removeprefix('data:')} is missing"
        for key, fp in original.fingerprints.items()
        if key.startswith("data:")
        and (
            not (root / key.removeprefix("data:")).is_file()
            or fingerprint_file(root / key.removeprefix("data:")) != fp
        )
    ]
    report.preflight["data"] = data_changes
    if data_changes and not allow_data_change:
        report.likely_cause = data_changes[0]
        report.notes.append(
            "nothing was rerun: the data changed (pass --allow-data-change to rerun anyway)"
        )
        report.seconds["total"] = time.perf_counter() - t0
        return report
    with tempfile.TemporaryDirectory(prefix="seedline-reproduce-") as tmp:
        copy = Path(tmp) / "project"
        _copy_project(root, copy, [str(Path(spec["cwd"]) / o) for o in spec["outputs"]])
        run = exec_script(
            copy / spec["script"],
            spec["args"],
            outputs=spec["outputs"],
            data=[],
            seed=int(spec["seed"]),
            threads=int(spec["threads"]),
            store=store,
            cwd=copy / spec["cwd"],
            parent_run=original.run_id,
            quiet=quiet,
            recorded_paths=(spec["script"], spec["cwd"]),
        )
        report.reproduction = run.run_id
        by_name = {s.name: s for s in original.steps}
        for name in spec["outputs"]:
            address = original.artifacts.get(f"output:{name}")
            kept = store.objects.get(address) if address else None
            report.files.append(
                _compare_file(name, by_name[name], copy / spec["cwd"] / name, kept, rtol, atol)
            )
    verdicts = [f["verdict"] for f in report.files]
    if run.returncode != 0:
        report.verdict = "failed"
        report.likely_cause = f"the script exited with code {run.returncode}"
    elif all(v == "bitwise" for v in verdicts):
        report.verdict = "bitwise"
    elif "failed" in verdicts:
        report.verdict = "failed"
    else:
        report.verdict = "tolerance"
    first = next((f for f in report.files if f["verdict"] != "bitwise"), None)
    if first is not None:
        report.first_differing_file = first["file"]
        report.first_differing_tensor = first.get("first_differing_tensor")
        if not report.likely_cause:
            where = (
                f", first at tensor {first['first_differing_tensor']!r}"
                if first.get("first_differing_tensor")
                else ""
            )
            cause = changed[0] if changed else "the script is not deterministic under the seed plan"
            report.likely_cause = f"{first['file']} differs ({first.get('why')}{where}): {cause}"
    report.seconds["total"] = time.perf_counter() - t0
    return report
