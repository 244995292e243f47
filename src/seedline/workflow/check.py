"""``seedline check``: find nondeterminism before it bites, on a subsample so it is quick.

The pipeline is fitted on a seeded subsample of the training split under pairs of
conditions, and each step's fitted-state and output fingerprints (as ``fit_steps`` records
them) are compared:

- ``repeat``: fitted twice in this process, global generators seeded once before the first
  fit only (as a run seeds them once): a difference is *nondeterministic*;
- ``hash_seed``: once in each of two fresh interpreters with ``PYTHONHASHSEED`` 1 and 2:
  a difference there but not within one process is *hash-seed sensitive*;
- ``threads``: BLAS/OpenMP pools limited to 1 thread and to the machine's CPU count;
- ``n_jobs``: every ``*n_jobs`` parameter at 1 and at 2, joblib on threads (they split the
  work as worker processes would, start at once, and share this process's hash seed);
  fitted states are compared with the ``n_jobs`` parameters themselves blanked. A
  difference in either of the last two is *thread-count sensitive*.

Deep-learning steps (skorch, ``seedline.keras``) are reseeded from their path before every
fit, as a run reseeds them, so ``repeat`` measures the network itself; torch's intra-op
threads follow the ``threads`` condition. Their fits run with torch's deterministic
algorithms in warn-only mode: an operation without a deterministic implementation makes
the step *nondeterministic*, named in the reasons and as a hygiene finding.

Within one comparison only the first step whose output differs (or a step whose fitted
state differs on the same input) is blamed; later steps are "downstream" of it. Hygiene
findings list what the seed plan cannot reach and what a rebuild would lack: global-RNG
draws, unseeded ``seed`` parameters, generator instances, a dirty tree, no lock file, and
data outside the project or not tracked by git.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from seedline.core.environment import capture_git
from seedline.core.errors import PipelineError, SeedlineError
from seedline.core.spec import SPEC_FILENAME, Spec, load_spec
from seedline.execution.data import FILE_KINDS
from seedline.execution.runner import Prepared, Progress, prepare
from seedline.workflow.probe import StepResult, fit_once, n_jobs_params, sample_training_rows

DETERMINISTIC = "deterministic"
THREAD_SENSITIVE = "thread-count sensitive"
HASH_SENSITIVE = "hash-seed sensitive"
NONDETERMINISTIC = "nondeterministic"
# most severe first: a step's verdict is the first of these it earned
VERDICTS = (NONDETERMINISTIC, HASH_SENSITIVE, THREAD_SENSITIVE, DETERMINISTIC)

ADVICE = {
    NONDETERMINISTIC: "give it a random_state or draw from a Generator seeded from its random_state "
    "(np.random.default_rng(self.random_state)); seedline fills random_state from the seed plan",
    HASH_SENSITIVE: "iterate sorted(...) instead of a set/dict of strings; seedline run pins "
    "PYTHONHASHSEED so runs reproduce, but the result depends on the hash seed",
    THREAD_SENSITIVE: "pin execution.threads in the spec (seedline records and pins it); "
    "results differ across thread counts",
    DETERMINISTIC: "nothing to do",
}

OP_ADVICE = (
    "replace the operation with one that has a deterministic implementation (PyTorch's "
    "torch.use_deterministic_algorithms documentation lists them), or run that part on the CPU"
)

HASH_SEEDS = (1, 2)
N_JOBS = (1, 2)
_PROBE_TIMEOUT_S = 1800
_GLOBAL_NAMES = {
    "numpy.random": "NumPy's global RNG",
    "python.random": "Python's global random module",
}
_LOCK_FILES = ("poetry.lock", "uv.lock", "Pipfile.lock", "pdm.lock", "conda-lock.yml")
_MAX_NAMED = 5


@dataclass
class StepDiff:
    """How one step compared in one comparison."""

    fitted: bool
    output: bool
    downstream_of: str | None = None

    @property
    def differs(self) -> bool:
        return self.fitted or self.output

    def what(self) -> str:
        parts = [p for p, d in (("fitted state", self.fitted), ("output", self.output)) if d]
        return " and ".join(parts)

    def what_differs(self) -> str:
        return self.what() + (" differ" if self.fitted and self.output else " differs")

    def to_dict(self) -> dict[str, Any]:
        return {
            "fitted": "differs" if self.fitted else "same",
            "output": "differs" if self.output else "same",
            "downstream_of": self.downstream_of,
        }


@dataclass
class Comparison:
    """Two fits of the pipeline under conditions ``a`` and ``b``, compared step by step."""

    name: str
    description: str
    a: str
    b: str
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    steps: dict[str, StepDiff] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "a": self.a,
            "b": self.b,
            "settings": dict(self.settings),
            "skipped": self.skipped,
            "steps": {name: d.to_dict() for name, d in self.steps.items()},
        }


@dataclass
class StepVerdict:
    """One step's verdict, the reasons for it, and what to do."""

    name: str
    cls: str
    verdict: str
    reasons: list[str]
    advice: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.cls,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "advice": self.advice,
        }


@dataclass
class HygieneFinding:
    """Something that is not (yet) a difference but weakens reproducibility."""

    kind: str
    message: str
    advice: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "advice": self.advice}


@dataclass
class CheckReport:
    """What ``check`` found; ``to_dict()`` is the scripting contract of ``seedline check --json``."""

    spec: str
    sample_rows: int
    train_rows: int
    steps: list[StepVerdict]
    hygiene: list[HygieneFinding]
    comparisons: dict[str, Comparison]
    seconds: float

    @property
    def nondeterministic(self) -> bool:
        """True when any step is nondeterministic (``seedline check`` then exits 1)."""
        return any(s.verdict == NONDETERMINISTIC for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "sample_rows": self.sample_rows,
            "steps": [s.to_dict() for s in self.steps],
            "hygiene": [h.to_dict() for h in self.hygiene],
            "comparisons": {name: c.to_dict() for name, c in self.comparisons.items()},
            "seconds": round(self.seconds, 3),
        }


def _noop(_msg: str, _i: int, _n: int) -> None:
    return None


# -- comparing fits ------------------------------------------------------------------------
def compare_fits(
    a: list[StepResult], b: list[StepResult], *, sans_n_jobs: bool = False
) -> dict[str, StepDiff]:
    """Step-by-step differences; after the first step whose output differs, later steps are downstream of it.

    ``sans_n_jobs`` compares the fitted states with ``*n_jobs`` parameters blanked.
    """
    if [s.name for s in a] != [s.name for s in b]:
        raise PipelineError(
            f"the two fits have different steps: {[s.name for s in a]} and {[s.name for s in b]}",
            hint="the pipeline compiled differently in the two conditions; 'seedline run' twice and 'seedline diff' shows how",
        )
    out: dict[str, StepDiff] = {}
    upstream: str | None = None
    for sa, sb in zip(a, b, strict=True):
        fa, fb = (
            (sa.fitted_sans_n_jobs, sb.fitted_sans_n_jobs)
            if sans_n_jobs
            else (sa.fitted, sb.fitted)
        )
        d = StepDiff(fitted=fa != fb, output=sa.output != sb.output)
        if d.differs and upstream is not None:
            d.downstream_of = upstream
        if upstream is None and d.output:
            upstream = sa.name
        out[sa.name] = d
    return out


def _thread_advice(sources: set[str], threads: int) -> str:
    """Advice for a thread-count sensitive step that fits what the spec already pins."""
    parts = []
    if "threads" in sources:
        # seedline pins the pools to execution.threads on every run: advising to pin them
        # again would be noise; what matters is that the value stays the same everywhere
        parts.append(
            f"seedline already pins BLAS/OpenMP to execution.threads={threads} on every run, "
            "so runs reproduce; keep that value wherever the model is rebuilt "
            "(another thread count changes the result)"
        )
    if "n_jobs" in sources:
        parts.append(
            "set the step's n_jobs parameter explicitly in the spec and keep it: "
            "the result changes with the number of jobs"
        )
    return " | ".join(parts) or ADVICE[THREAD_SENSITIVE]


def _verdict(
    step: StepResult, comparisons: dict[str, Comparison], touched: list[str], threads: int = 1
) -> StepVerdict:
    name = step.name
    reasons: list[str] = []
    thread_sources: set[str] = set()
    earned: set[str] = set()

    repeat = comparisons["repeat"].steps[name]
    draws = " and ".join(_GLOBAL_NAMES[g] for g in touched)
    if repeat.differs:
        if repeat.downstream_of is None:
            earned.add(NONDETERMINISTIC)
            reasons.append(f"refitting in the same process gave a different {repeat.what()}")
        elif touched:
            earned.add(NONDETERMINISTIC)
            reasons.append(
                f"refitting gave a different {repeat.what()}; its input already differed "
                f"(downstream of '{repeat.downstream_of}'), but it also draws from {draws}"
            )
        else:
            reasons.append(
                f"refit differs only downstream of '{repeat.downstream_of}' (its input already differed)"
            )
    if touched:
        effect = "" if repeat.differs else " (its result did not change on refit this time)"
        reasons.append(f"draws from {draws}, which the seed plan cannot reach{effect}")
    if step.nondeterministic_ops:
        earned.add(NONDETERMINISTIC)
        reasons.insert(
            0,
            f"runs torch operations without a deterministic implementation: {', '.join(step.nondeterministic_ops)}; "
            "'seedline run' turns on torch.use_deterministic_algorithms(True), so it stops with a RuntimeError naming them",
        )

    for key, verdict, where in (
        ("hash_seed", HASH_SENSITIVE, "between processes with PYTHONHASHSEED={a} and {b}"),
        ("threads", THREAD_SENSITIVE, "between {a} and {b} BLAS/OpenMP threads"),
        ("n_jobs", THREAD_SENSITIVE, "between n_jobs={a} and n_jobs={b} ({params})"),
    ):
        cmp = comparisons.get(key)
        if cmp is None or cmp.skipped is not None:
            continue
        d = cmp.steps[name]
        if not d.differs:
            continue
        settings = cmp.settings
        between = where.format(
            a=settings["values"][0],
            b=settings["values"][1],
            params=", ".join(settings.get("params", [])),
        )
        if d.downstream_of is not None:
            reasons.append(f"differs {between} only downstream of '{d.downstream_of}'")
        elif NONDETERMINISTIC in earned:
            reasons.append(f"also differs {between}, as a nondeterministic result would")
        else:
            earned.add(verdict)
            if verdict == THREAD_SENSITIVE:
                thread_sources.add(key)
            extra = ", but not when refit within one" if key == "hash_seed" else ""
            reasons.append(f"{d.what_differs()} {between}{extra}")

    verdict = next(v for v in VERDICTS if v in earned or v == DETERMINISTIC)
    if not reasons:
        ran = [c.name for c in comparisons.values() if c.skipped is None]
        reasons.append(f"identical in every comparison ({', '.join(ran)})")
    advice = (
        " | ".join(
            _thread_advice(thread_sources, threads) if v == THREAD_SENSITIVE else ADVICE[v]
            for v in VERDICTS
            if v in earned
        )
        or ADVICE[DETERMINISTIC]
    )
    if step.nondeterministic_ops:
        advice = f"{OP_ADVICE} | {advice}"
    return StepVerdict(name=name, cls=step.cls, verdict=verdict, reasons=reasons, advice=advice)


# -- the hash-seed probes: fresh interpreters ------------------------------------------------
@dataclass
class _Child:
    hash_seed: int
    proc: subprocess.Popen[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]


def _start_probe(spec: Spec, root: Path, sample: int, hash_seed: int) -> _Child:
    request = {
        "spec": spec.to_dict(),
        "root": str(root),
        "sample": sample,
        "threads": spec.execution.threads,
    }
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
    package_parent = Path(__file__).resolve().parent.parent.parent
    if "site-packages" not in package_parent.parts:
        # a source checkout not installed: let the child import this same seedline
        env["PYTHONPATH"] = os.pathsep.join(
            x for x in (str(package_parent), env.get("PYTHONPATH")) if x
        )
    # files, not pipes: a chatty pipeline must not block on a full pipe while we fit;
    # they outlive this function and _close() closes them
    stdout = tempfile.TemporaryFile()  # noqa: SIM115
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "seedline.workflow.probe", json.dumps(request)],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )
    return _Child(hash_seed=hash_seed, proc=proc, stdout=stdout, stderr=stderr)


def _finish_probe(child: _Child) -> list[StepResult]:
    label = f"PYTHONHASHSEED={child.hash_seed}"
    try:
        code = child.proc.wait(timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.proc.kill()
        child.proc.wait()
        raise PipelineError(
            f"the {label} probe did not finish within {_PROBE_TIMEOUT_S} s",
            hint="lower --sample to make the check quicker",
        ) from None
    child.stdout.seek(0)
    child.stderr.seek(0)
    out = child.stdout.read().decode(errors="replace").strip()
    err = child.stderr.read().decode(errors="replace").strip()
    try:
        answer = json.loads(out.splitlines()[-1]) if out else {}
    except json.JSONDecodeError:
        answer = {}
    if code == 0 and "steps" in answer:
        return [StepResult.from_dict(s) for s in answer["steps"]]
    problem = answer.get("error") or {}
    message = problem.get("message") or (err.splitlines()[-1] if err else f"exit status {code}")
    raise PipelineError(
        f"the {label} probe (a fresh interpreter fitting the subsample) failed: {message}",
        hint=problem.get("hint") or (f"its last output:\n{err[-2000:]}" if err else None),
    )


def _close(child: _Child) -> None:
    if child.proc.poll() is None:
        child.proc.kill()
        child.proc.wait()
    child.stdout.close()
    child.stderr.close()


# -- hygiene -----------------------------------------------------------------------------
def _named(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    return shown + (f" and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")


def _unreachable_consumers(
    p: Prepared, touched: dict[str, list[str]], classes: dict[str, str]
) -> list[HygieneFinding]:
    found: list[HygieneFinding] = []
    for name, gens in touched.items():
        for g in gens:
            found.append(
                HygieneFinding(
                    kind="global_rng",
                    message=f"step '{name}' ({classes[name]}) draws from {_GLOBAL_NAMES[g]}, which the seed plan cannot reach",
                    advice="give the step a random_state parameter and draw from "
                    "np.random.default_rng(self.random_state) (or check_random_state); "
                    "seedline fills random_state from the seed plan",
                )
            )
    params = p.pipeline.get_params(deep=True)
    for key in sorted(params):
        last = key.rsplit("__", 1)[-1]
        if (last == "seed" or last.endswith("_seed")) and params[key] is None:
            found.append(
                HygieneFinding(
                    kind="unseeded_param",
                    message=f"parameter '{key}' is None: the seed plan fills random_state parameters only",
                    advice=f"set {key} in the spec, or rename the parameter random_state so the seed plan fills it",
                )
            )
    from seedline.core.library_controls import controls_missing

    for key, est in [("pipeline", p.pipeline), *sorted(params.items())]:
        if hasattr(est, "get_params") and not isinstance(est, type):
            for problem in controls_missing(est):
                found.append(
                    HygieneFinding(
                        kind="library_determinism",
                        message=f"step parameter '{key}': {problem}",
                        advice="leave LightGBM's deterministic and force_row_wise/force_col_wise unset "
                        "(seedline switches them on) or set them yourself",
                    )
                )
    for key, rec in sorted(p.random_states.items()):
        source = str(rec.get("source", ""))
        if source.endswith("instance"):
            found.append(
                HygieneFinding(
                    kind="random_state_instance",
                    message=f"parameter '{key}' holds a {source.removeprefix('explicit ').removesuffix(' instance')} "
                    "instance: its draws depend on how and when it was made, not on the seed plan",
                    advice=f"leave {key} unset (the seed plan fills it) or give it an int",
                )
            )
    return found


def _requirements_pinned(path: Path) -> tuple[int, list[str]]:
    """(number of requirement lines, those not pinned with == or a direct URL)."""
    total = 0
    loose: list[str] = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith("-"):
            continue
        total += 1
        if "==" not in line and " @ " not in line:
            loose.append(line)
    return total, loose


def _lock_file_findings(roots: list[Path]) -> list[HygieneFinding]:
    partial: list[str] = []
    for root in roots:
        if any((root / name).is_file() for name in _LOCK_FILES):
            return []
        for req in sorted(root.glob("requirements*.txt")):
            total, loose = _requirements_pinned(req)
            if total and not loose:
                return []
            if total:
                partial.append(
                    f"{req.name} leaves {len(loose)} of {total} requirements unpinned ({_named(loose)})"
                )
    where = " or ".join(str(r) for r in roots)
    message = f"no dependency lock file in {where}"
    if partial:
        message += "; " + "; ".join(partial)
    return [
        HygieneFinding(
            kind="no_lock_file",
            message=message,
            advice="pin the environment: 'pip freeze > requirements.txt', 'uv lock', 'poetry lock' or "
            "'conda-lock'; the manifest records the versions, a lock file lets a colleague install them",
        )
    ]


def _data_findings(p: Prepared, git_root: Path | None) -> list[HygieneFinding]:
    found: list[HygieneFinding] = []
    for source in p.loaded.sources:
        if source.get("kind") in ("fsspec", "sql"):
            where = "a URL" if source.get("kind") == "fsspec" else "a SQL database"
            found.append(
                HygieneFinding(
                    kind="data_outside_project",
                    message=f"data source '{source['uri']}' is read from {where}, outside the project",
                    advice="its content is fingerprinted, so reproduce notices a change, but a colleague needs "
                    "access to it (and it must still hold the same rows) to reproduce; export a copy into the project to keep one",
                )
            )
        if source.get("kind") not in FILE_KINDS:
            continue
        uri = str(source["uri"])
        path = (p.root / uri).resolve()
        if p.root.resolve() not in path.parents:
            found.append(
                HygieneFinding(
                    kind="data_outside_project",
                    message=f"data file '{uri}' lies outside the project ({path})",
                    advice="move or copy it into the project and track it with git (or git-lfs/DVC for large files)",
                )
            )
        if git_root is None:
            continue
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "--", str(path)],
            cwd=p.root,
            capture_output=True,
            check=False,
            timeout=60,
        )
        if tracked.returncode != 0:
            found.append(
                HygieneFinding(
                    kind="data_untracked",
                    message=f"data file '{uri}' is not tracked by git",
                    advice=f"'git add {uri}' and commit it (git-lfs or DVC for large files), so the commit names the data",
                )
            )
    return found


def _op_findings(fit: list[StepResult]) -> list[HygieneFinding]:
    return [
        HygieneFinding(
            kind="nondeterministic_op",
            message=f"step '{s.name}' ({s.cls}) runs torch operations without a deterministic implementation: "
            f"{', '.join(s.nondeterministic_ops)}",
            advice=OP_ADVICE,
        )
        for s in fit
        if s.nondeterministic_ops
    ]


def _hygiene(
    p: Prepared, touched: dict[str, list[str]], classes: dict[str, str]
) -> list[HygieneFinding]:
    found = _unreachable_consumers(p, touched, classes)
    git_info, _diff = capture_git(p.root)
    git_root: Path | None = None
    if not git_info.get("repository"):
        found.append(
            HygieneFinding(
                kind="no_git",
                message=f"the project is not in a git repository ({git_info.get('reason')}): a run cannot name the code that made it",
                advice="'git init' and commit the project",
            )
        )
    else:
        git_root = Path(str(git_info["root"])).resolve()
        if git_info.get("dirty"):
            counts = git_info.get("counts", {})
            files = list(git_info.get("changed_files", [])) + list(
                git_info.get("untracked_files", [])
            )
            found.append(
                HygieneFinding(
                    kind="dirty_tree",
                    message=f"the git working tree is dirty: {counts.get('changed', 0)} changed and "
                    f"{counts.get('untracked', 0)} untracked files ({_named(files)})",
                    advice="commit (or stash) before a run you mean to reproduce: seedline stores the diff, "
                    "but a commit is what a colleague can check out",
                )
            )
    roots = [p.root.resolve()]
    if git_root is not None and git_root != roots[0]:
        roots.append(git_root)
    found += _lock_file_findings(roots)
    found += _data_findings(p, git_root)
    return found


# -- the check ---------------------------------------------------------------------------
def _resolve(spec: Spec | str | Path, project_root: str | Path | None) -> tuple[Spec, Path]:
    """The spec and project root, as ``prepare`` resolves them (a folder means its seedline.yaml)."""
    if isinstance(spec, Spec):
        return spec, Path(project_root or ".").resolve()
    path = Path(spec)
    if path.is_dir():
        path = path / SPEC_FILENAME
    loaded = load_spec(path)
    return loaded, Path(project_root).resolve() if project_root else path.resolve().parent


def check(
    spec: Spec | str | Path,
    *,
    sample: int = 1000,
    project_root: str | Path | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    """Audit a spec's pipeline for nondeterminism on ``sample`` training rows (see the module doc).

    Raises SpecError/DataError for a bad spec or data, PipelineError when a fit fails.
    NumPy's and Python's global generators are seeded while checking and restored after.
    """
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise SeedlineError(
            f"sample must be an int in the range [1, inf), got {sample!r}",
            hint="--sample is the number of training rows the check fits on (default 1000)",
        )
    t0 = time.perf_counter()
    say = progress or _noop
    stages = 6
    spec_obj, root = _resolve(spec, project_root)
    cpus = os.cpu_count() or 1
    threads = spec_obj.execution.threads

    np_state = np.random.get_state()
    py_state = random.getstate()
    children: list[_Child] = []
    try:
        # the fresh interpreters import, load and fit while this process does the same
        say("starting the PYTHONHASHSEED probes", 0, stages)
        children = [_start_probe(spec_obj, root, sample, hs) for hs in HASH_SEEDS]
        say("loading data", 0, stages)
        p = prepare(spec_obj, project_root=root)
        X, y = sample_training_rows(p, sample)
        jobs_params = n_jobs_params(p.pipeline)
        params = p.pipeline.get_params(deep=True)
        # when every n_jobs is already 1 or None, the first fit is the n_jobs=1 fit
        jobs_are_one = all(params[k] in (None, 1) for k in jobs_params)

        fits: dict[tuple[int, int | None], list[StepResult]] = {}

        def seeded(n_threads: int, n_jobs: int | None = None) -> list[StepResult]:
            """A fit right after seeding the global generators, as a run makes it (cached)."""
            if n_jobs == 1 and jobs_are_one:
                return seeded(n_threads)
            key = (n_threads, n_jobs)
            if key not in fits:
                label = f"{n_threads} thread{'s' if n_threads != 1 else ''}" + (
                    f", n_jobs={n_jobs}" if n_jobs else ""
                )
                fits[key] = fit_once(
                    p.pipeline,
                    X,
                    y,
                    resolved=p.resolved,
                    threads=n_threads,
                    n_jobs=n_jobs,
                    sans_n_jobs=bool(jobs_params),
                    seed_plan=p.plan,
                    label=label,
                )
            return fits[key]

        comparisons: dict[str, Comparison] = {}
        say("fitting twice in one process", 1, stages)
        first = seeded(threads)
        # deep-learning steps are reseeded from their path, as in every run: a difference is real
        second = fit_once(
            p.pipeline, X, y, resolved=p.resolved, threads=threads, step_plan=p.plan, label="refit"
        )
        comparisons["repeat"] = Comparison(
            name="repeat",
            description="fitted twice in one process; global generators seeded once, before the first fit",
            a="first fit",
            b="second fit",
            settings={"threads": threads},
            steps=compare_fits(first, second),
        )

        say("fitting with n_jobs 1 and 2", 2, stages)
        cmp = Comparison(
            name="n_jobs",
            description="every *n_jobs parameter set to 1 and to 2 (joblib on threads)",
            a=f"n_jobs={N_JOBS[0]}",
            b=f"n_jobs={N_JOBS[1]}",
            settings={"values": list(N_JOBS), "params": jobs_params, "threads": threads},
        )
        if not jobs_params:
            cmp.skipped = "no step has an n_jobs parameter"
        else:
            cmp.steps = compare_fits(
                seeded(threads, N_JOBS[0]), seeded(threads, N_JOBS[1]), sans_n_jobs=True
            )
        comparisons["n_jobs"] = cmp

        say("waiting for the PYTHONHASHSEED probes", 3, stages)
        in_children = [_finish_probe(c) for c in children]
        comparisons["hash_seed"] = Comparison(
            name="hash_seed",
            description="fitted once in each of two fresh interpreters with different PYTHONHASHSEED",
            a=f"PYTHONHASHSEED={HASH_SEEDS[0]}",
            b=f"PYTHONHASHSEED={HASH_SEEDS[1]}",
            settings={"values": list(HASH_SEEDS), "threads": threads},
            steps=compare_fits(in_children[0], in_children[1]),
        )

        # last: a pool of busy-waiting BLAS threads crawls while the probes hold the CPUs
        say("fitting with 1 and with all threads", 4, stages)
        cmp = Comparison(
            name="threads",
            description="BLAS/OpenMP thread pools limited to 1 and to the machine's CPU count",
            a="1 thread",
            b=f"{cpus} threads",
            settings={"values": [1, cpus]},
        )
        if cpus < 2:
            cmp.skipped = "this machine has 1 CPU, so there is no second thread count to compare"
        else:
            cmp.steps = compare_fits(seeded(1), seeded(cpus))
        comparisons["threads"] = cmp
    finally:
        for c in children:
            _close(c)
        np.random.set_state(np_state)
        random.setstate(py_state)

    say("hygiene", 5, stages)
    touched: dict[str, list[str]] = {}
    for a, b in zip(first, second, strict=True):
        gens = sorted(set(a.globals_touched) | set(b.globals_touched))
        if gens:
            touched[a.name] = gens
    comparisons = {k: comparisons[k] for k in ("repeat", "hash_seed", "threads", "n_jobs")}
    steps = [_verdict(s, comparisons, touched.get(s.name, []), threads) for s in first]
    hygiene = _op_findings(first) + _hygiene(p, touched, {s.name: s.cls for s in first})
    say("done", stages, stages)
    return CheckReport(
        spec=p.spec.name,
        sample_rows=len(X),
        train_rows=len(p.X_train),
        steps=steps,
        hygiene=hygiene,
        comparisons=comparisons,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["CheckReport", "Comparison", "HygieneFinding", "StepVerdict", "check", "compare_fits"]
