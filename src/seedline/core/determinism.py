"""``seedline.determinism(seed)``: the seed plan and every determinism switch, for a script of yours.

A training script outside a pipeline gets what ``seedline run`` does for a network step:
Python's, NumPy's and each imported framework's generators seeded from one master seed
(through the same ``SeedPlan``, so the same paths give the same seeds), the frameworks'
deterministic switches on, and every thread pool pinned. It returns a typed record of
what it did, and works as a function or as a context manager::

    import keras, seedline
    record = seedline.determinism(42)          # applied until the process ends
    with seedline.determinism(42) as record:   # generators, torch's switches, the
        ...                                    # variables and thread limits restored on exit

Frameworks read some settings once, when they are imported or start (Keras' backend,
TensorFlow's thread pools, XLA's flags, cuBLAS' workspace): those are set as environment
variables for the frameworks installed but not imported yet, and listed in ``too_late``
for those imported before the call. ``seedline exec`` sets them before the script starts,
so nothing is too late there; ``python -m seedline.core.determinism`` is how it starts one.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import random
import runpy
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from seedline.core.deeplearning import framework_environment
from seedline.core.errors import SeedlineError
from seedline.core.seeding import SeedPlan, hash_seed_state

FRAMEWORKS = ("torch", "tensorflow", "jax", "keras")
# the variable through which `seedline exec` asks the script's interpreter for the record
RECORD_VARIABLE = "SEEDLINE_DETERMINISM_RECORD"
# the file in which `seedline.data_file` lists, one per line, the data files a script reads
DATA_LOG_VARIABLE = "SEEDLINE_DATA_LOG"


def data_file(path: str | os.PathLike[str]) -> Path:
    """Declare a data file the script reads and return its path: ``pd.read_csv(seedline.data_file("x.csv"))``.

    Under ``seedline exec`` the file is recorded with the run (its fingerprint, as for
    ``--data``), and ``seedline reproduce`` refuses to run when it changed or is missing.
    Outside ``seedline exec`` it only checks that the file exists.
    """
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise SeedlineError(
            f"the data file {str(path)!r} does not exist (looked for {resolved})",
            hint="seedline.data_file names a file the script reads; check the path and the working folder",
        )
    log = os.environ.get(DATA_LOG_VARIABLE)
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(str(resolved)) + "\n")
    return resolved


@dataclass
class DeterminismRecord:
    """What ``determinism`` did: seeds by generator, switches by framework, threads, variables.

    ``seeds``: generator -> seed (``python.random``, ``numpy.random``, ``torch``,
    ``tensorflow``, ``keras``, ``jax``: the seed of ``jax_key()``). ``controls``: each
    framework's switches as read back after setting them. ``env``: variables set for
    frameworks imported later. ``too_late``: settings a framework read before the call.
    ``not_imported``: frameworks installed but not imported, so neither seeded nor switched
    (import them before the call, or name them in ``frameworks=``).
    """

    seed: int
    threads: int | None
    frameworks: list[str]
    seeds: dict[str, int]
    controls: dict[str, Any]
    env: dict[str, str]
    hash_seed: dict[str, Any]
    too_late: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)
    derived: dict[str, int] = field(default_factory=dict)
    _saved: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: everything but the saved generator states."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_saved"}

    def jax_key(self) -> Any:
        """A JAX PRNG key from the plan (JAX has no global generator: pass keys explicitly)."""
        import jax

        return jax.random.key(self.seeds["jax"])

    # -- the context-manager form: undo what can be undone -----------------------------------
    def __enter__(self) -> DeterminismRecord:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        saved = self._saved
        for name, previous in saved.get("env", {}).items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        random.setstate(saved["python"])
        np.random.set_state(saved["numpy"])
        limits = saved.get("limits")
        if limits is not None:
            limits.restore_original_limits()
        torch: Any = sys.modules.get("torch")
        if torch is not None and "torch" in saved:
            state = saved["torch"]
            torch.random.set_rng_state(state["rng"])
            torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["warn_only"])
            torch.backends.cudnn.deterministic = state["cudnn_deterministic"]
            torch.backends.cudnn.benchmark = state["cudnn_benchmark"]
            torch.set_num_threads(state["threads"])


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _save_state() -> dict[str, Any]:
    saved: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    torch: Any = sys.modules.get("torch")
    if torch is not None:
        saved["torch"] = {
            "rng": torch.random.get_rng_state(),
            "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
            "warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "threads": int(torch.get_num_threads()),
        }
    return saved


def _check(seed: Any, threads: Any, frameworks: Any) -> list[str]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise SeedlineError(
            f"The 'seed' of seedline.determinism must be an int in the range [0, 2**63). Got {seed!r} instead."
        )
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise SeedlineError(
            f"The 'threads' of seedline.determinism must be an int in the range [1, inf) or None. Got {threads!r} instead."
        )
    names = list(frameworks or ())
    for name in names:
        if name not in FRAMEWORKS:
            import difflib

            near = difflib.get_close_matches(str(name), FRAMEWORKS, n=1)
            raise SeedlineError(
                f"seedline.determinism knows the frameworks {', '.join(FRAMEWORKS)}; got {name!r}"
                + (f" (did you mean {near[0]!r}?)" if near else "")
            )
    return names


def determinism(
    seed: int,
    *,
    threads: int | None = 1,
    frameworks: tuple[str, ...] | list[str] | None = None,
    warn_only: bool = False,
) -> DeterminismRecord:
    """Seed every generator from ``seed``, turn on every determinism switch, pin threads; return what was done.

    ``threads``: BLAS/OpenMP pools, torch's intra-op threads, TensorFlow's intra-op pool and
    XLA's CPU threads (None leaves them as they are; results then depend on the core count).
    ``frameworks``: frameworks to import first (``torch``, ``tensorflow``, ``jax``,
    ``keras``) so that they are seeded and switched too; those already imported always are.
    ``warn_only``: torch's operations without a deterministic implementation warn instead
    of raising.
    """
    names = _check(seed, threads, frameworks)
    seed = int(seed)
    present = {f for f in FRAMEWORKS if f in sys.modules}
    installed = {f for f in FRAMEWORKS if f in present or _installed(f)}
    wanted = set(names)

    too_late: list[str] = []
    set_env: dict[str, str] = {}
    previous_env: dict[str, str | None] = {}
    for name, value in framework_environment(installed, threads).items():
        reader = _reader(name)
        if reader in present:
            current = os.environ.get(name)
            if not _satisfied(name, value, current):
                too_late.append(
                    f"{name}={value} ({reader} was imported before; it has {current!r})"
                )
            continue
        if name == "XLA_FLAGS":
            current = os.environ.get(name, "")
            extra = [f for f in value.split() if f.split("=")[0] not in current]
            value = " ".join([*current.split(), *extra])
        elif os.environ.get(name) is not None:
            continue  # a value of yours is kept
        previous_env[name] = os.environ.get(name)
        os.environ[name] = value
        set_env[name] = value
    for name in FRAMEWORKS:  # Keras last: it imports its backend, configured above
        if name in wanted and name not in present:
            importlib.import_module(name)
    loaded = {f for f in FRAMEWORKS if f in sys.modules}

    saved = _save_state()
    saved["env"] = previous_env
    if threads is not None:
        from threadpoolctl import threadpool_limits

        saved["limits"] = threadpool_limits(limits=threads)
    plan = SeedPlan(seed)
    done = plan.seed_globals(threads=threads, warn_only=warn_only)
    controls: dict[str, Any] = done.pop("deep_learning", {})
    seeds = {k: int(v) for k, v in done.items() if isinstance(v, int)}
    seeds["jax"] = plan.derive("jax/key")
    pinned = controls.get("tensorflow", {}).get("threads_pinned", True)
    if isinstance(pinned, str) and pinned.startswith("too late"):
        too_late.append(f"TensorFlow's thread pools: {pinned}")
    hash_state = hash_seed_state()
    return DeterminismRecord(
        seed=seed,
        threads=threads,
        frameworks=sorted(loaded),
        seeds=seeds,
        controls=controls,
        env=set_env,
        hash_seed=hash_state,
        too_late=too_late,
        not_imported=sorted(installed - loaded),
        derived=dict(plan.derived),
        _saved=saved,
    )


def _reader(variable: str) -> str:
    """The framework that reads a variable once."""
    if variable.startswith("TF_"):
        return "tensorflow"
    if variable == "XLA_FLAGS":
        return "jax"
    if variable == "KERAS_BACKEND":
        return "keras"
    return "torch"


def _satisfied(name: str, wanted: str, current: str | None) -> bool:
    if current is None:
        return False
    if name == "XLA_FLAGS":
        return all(f in current.split() for f in wanted.split())
    return True  # a value of yours, in force since the import


# -- the interpreter `seedline exec` starts: determinism first, then the script ---------------
def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seedline.core.determinism",
        description="Apply seedline.determinism(SEED), then run SCRIPT as __main__ with ARGS.",
    )
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--import", dest="frameworks", default="", help="comma-separated")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    frameworks = [f for f in ns.frameworks.split(",") if f]
    record = determinism(ns.seed, threads=ns.threads, frameworks=frameworks)
    out = os.environ.get(RECORD_VARIABLE)
    if out:
        Path(out).write_text(json.dumps(record.to_dict(), sort_keys=True, default=str))
    script = Path(ns.script)
    sys.argv = [str(script), *ns.args]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    _main()
