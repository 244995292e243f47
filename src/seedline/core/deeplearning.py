"""Deep-learning steps under the seed plan: PyTorch (through skorch) and Keras 3 (torch, TensorFlow or JAX).

Seeding one library is not enough for a network to train bit for bit. This module holds
everything seedline does for such steps, and nothing here imports torch, keras or skorch
at import time: each function looks at ``sys.modules`` and acts on what the pipeline
itself imported.

- **Before anything is imported** (``prepare_frameworks``, called before the spec is
  compiled; ``framework_environment`` for scripts): ``KERAS_BACKEND`` (the spec's
  ``execution.keras_backend``, else the variable, else ``torch``), ``CUBLAS_WORKSPACE_CONFIG``
  (cuBLAS reads it once, when CUDA initialises), TensorFlow's thread pools
  (``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS``: TensorFlow sizes them once) and
  XLA's flags for JAX (read once, when its backend starts).
- **Before fitting** (``apply_controls``, from ``SeedPlan.seed_globals``):
  ``torch.use_deterministic_algorithms(True)``, cuDNN deterministic and not benchmarking,
  torch's intra-op threads pinned; TensorFlow's op determinism and thread pools when
  TensorFlow is loaded; JAX's PRNG implementation and XLA flags recorded.
- **Right before each deep-learning step fits** (``SeedPlan.seed_step``): torch's
  generators seeded from ``(master seed, 'torch/pipeline/<step>')``, so a network's initial
  weights, dropout masks and DataLoader order depend on the step's path only, never on
  what ran before it (an earlier step, a cache hit, a refit in ``seedline check``).
  Steps with a ``random_state`` (``seedline.keras``) get it filled by the plan as usual.
- **After fitting**: per-layer fingerprints (``layer_fingerprints``), the canonical fitted
  state fingerprinted by ``core.fingerprint`` (registered lazily), and the tensors and
  JSON state that ``execution.persist`` writes as safetensors (``export_step``/``restore_step``).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from seedline.core.errors import SeedlineError

# top-level module -> the framework it brings in
_FRAMEWORK_MODULES = {
    "torch": "torch",
    "skorch": "torch",
    "keras": "keras",
    "scikeras": "keras",
    "tensorflow": "tensorflow",
    "jax": "jax",
    "flax": "jax",
}
KERAS_BACKEND = "torch"  # the default backend, when neither the spec nor the shell names one
KERAS_BACKENDS = ("torch", "tensorflow", "jax")
# XLA on a CPU: Eigen's thread pool splits reductions by thread count; one thread fixes the
# split. On a GPU, XLA's deterministic ops (scatter, reductions) replace the atomics.
XLA_DETERMINISM_FLAGS = ("--xla_gpu_deterministic_ops=true",)
XLA_ONE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")
# cuBLAS needs a fixed workspace to pick deterministic kernels (NVIDIA's documented value)
CUBLAS_WORKSPACE_CONFIG = ":4096:8"
_NONDETERMINISTIC_MARK = " does not have a deterministic implementation"


class DeepLearningError(SeedlineError):
    """Raised when a deep-learning step cannot be saved, restored or controlled as asked."""


# -- which frameworks a spec uses --------------------------------------------------------------
def _class_paths(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        cls = node.get("class")
        if isinstance(cls, str):
            yield cls
        for value in node.values():
            yield from _class_paths(value)
    elif isinstance(node, list):
        for item in node:
            yield from _class_paths(item)


def _local_file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a folder this process may not read: a worker without the project
            return None
    return None


def _module_frameworks(module: str, root: Path, seen: set[str]) -> set[str]:
    """Frameworks a module brings in: by its own name, or by what a project-local module imports."""
    if module in seen:
        return set()
    seen.add(module)
    if module == "seedline.keras":
        return {"keras"}
    top = module.split(".")[0]
    if top in _FRAMEWORK_MODULES:
        return {_FRAMEWORK_MODULES[top]}
    path = _local_file(module, root)
    if path is None:
        return set()
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            found |= _module_frameworks(name, root, seen)
    return found


def frameworks_in_source(script: str | Path, root: str | Path | None = None) -> set[str]:
    """Deep-learning frameworks a script imports, directly or through modules beside it (``root``: its folder)."""
    path = Path(script)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set()
    here = Path(root) if root is not None else path.parent
    found: set[str] = set()
    seen: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            found |= _module_frameworks(name, here, seen)
    return found


def frameworks_in_spec(spec: dict[str, Any], root: str | Path) -> set[str]:
    """Deep-learning frameworks a spec's classes use: ``torch``, ``keras``, ``tensorflow``.

    A class path names its framework directly (``skorch.NeuralNetClassifier``), or is a
    class of the project (``cnn.DigitsNet``) whose module imports one, followed through the
    project's own modules. Nothing is imported.
    """
    found: set[str] = set()
    seen: set[str] = set()
    for path in _class_paths(spec.get("pipeline", [])):
        module = path.rpartition(".")[0]
        if module:
            found |= _module_frameworks(module, Path(root), seen)
    if "keras" in found:
        found.add(keras_backend(spec))
    return found


def keras_backend(spec: dict[str, Any] | None = None) -> str:
    """The backend Keras runs on: the one already imported, else the spec's, the variable's, or torch.

    The spec's ``execution.keras_backend`` wins over ``KERAS_BACKEND`` (the spec is what a
    reproduction reads); Keras reads its backend once, at import, so a process that already
    imported Keras keeps its backend (``prepare_frameworks`` refuses a spec that asks another).
    """
    keras: Any = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return str(keras.backend.backend())
    asked = ((spec or {}).get("execution") or {}).get("keras_backend")
    chosen = str(asked or os.environ.get("KERAS_BACKEND") or KERAS_BACKEND)
    if chosen not in KERAS_BACKENDS:
        import difflib

        near = difflib.get_close_matches(chosen, KERAS_BACKENDS, n=1)
        raise DeepLearningError(
            f"Keras backend must be one of {', '.join(KERAS_BACKENDS)}; got {chosen!r}"
            + (f" (did you mean {near[0]!r}?)" if near else ""),
            hint="set execution.keras_backend in the spec, or KERAS_BACKEND in the shell",
        )
    return chosen


def framework_environment(frameworks: set[str], threads: int | None) -> dict[str, str]:
    """Variables a framework reads once, when it is imported or starts: what to set before that.

    ``frameworks``: the libraries the code uses (``torch``, ``keras``, ``tensorflow``,
    ``jax``). With ``threads``, TensorFlow's intra-op pool gets that many threads and its
    inter-op pool one (ops run one at a time), and XLA one Eigen thread when it is 1.
    """
    env: dict[str, str] = {}
    if frameworks & {"torch", "keras", "tensorflow", "jax"}:
        env["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
    if "tensorflow" in frameworks:
        env["TF_DETERMINISTIC_OPS"] = "1"
        env["TF_CUDNN_DETERMINISTIC"] = "1"
        if threads:
            env["TF_NUM_INTRAOP_THREADS"] = str(int(threads))
            env["TF_NUM_INTEROP_THREADS"] = "1"
    if "jax" in frameworks:
        flags = list(XLA_DETERMINISM_FLAGS)
        if threads == 1:
            flags += XLA_ONE_THREAD_FLAGS
        env["XLA_FLAGS"] = " ".join(flags)
    return env


def _set_env(env: dict[str, str], imported: set[str]) -> dict[str, str]:
    """Set each variable that is unset (a value of yours is kept); XLA flags are appended to yours."""
    done: dict[str, str] = {}
    for name, value in env.items():
        current = os.environ.get(name)
        if name == "XLA_FLAGS":
            if "jax" in imported:
                continue  # read when JAX's backend started: too late
            missing = [f for f in value.split() if f.split("=")[0] not in (current or "")]
            if missing:
                os.environ[name] = " ".join([*(current or "").split(), *missing])
        elif name.startswith("TF_NUM_") and "tensorflow" in imported:
            continue
        elif current is None:
            os.environ[name] = value
        done[name] = os.environ.get(name, "")
    return done


def prepare_frameworks(spec: dict[str, Any], root: str | Path) -> dict[str, Any]:
    """Set what must be set before a framework is imported, for the frameworks the spec uses.

    ``KERAS_BACKEND`` is set to the spec's ``execution.keras_backend`` (else the variable's
    value, else ``torch``) when Keras is used and not yet imported; a spec asking for another
    backend than the one a process already imported is refused. Then
    ``framework_environment``'s variables (a value you set is kept). All of them end up in
    the manifest (``environment.env_vars``, so in the environment fingerprint, and
    ``seeds.globals.deep_learning``).
    """
    frameworks = frameworks_in_spec(spec, root)
    done: dict[str, Any] = {"frameworks": sorted(frameworks)}
    if "keras" in frameworks:
        asked = (spec.get("execution") or {}).get("keras_backend")
        backend = keras_backend(spec)
        if asked and backend != asked:
            raise DeepLearningError(
                f"the spec asks for Keras on {asked!r}, but this process already imported Keras on {backend!r}",
                hint="Keras reads its backend once, at import: run the spec in a fresh process (the seedline command does)",
            )
        if "keras" not in sys.modules:
            os.environ["KERAS_BACKEND"] = backend
        done["keras_backend"] = backend
    threads = (spec.get("execution") or {}).get("threads", 1)
    done["env"] = _set_env(framework_environment(frameworks, threads), set(sys.modules))
    return done


def restore_recorded_backend(spec: dict[str, Any], env_vars: dict[str, str]) -> None:
    """Before a reproduction imports Keras: the backend the original run recorded, if its spec names none."""
    recorded = env_vars.get("KERAS_BACKEND")
    asked = (spec.get("execution") or {}).get("keras_backend")
    if recorded and not asked and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = recorded


# -- which steps are deep-learning steps --------------------------------------------------------
def framework_of(est: Any) -> str | None:
    """``torch`` for a skorch net, ``keras`` for a ``seedline.keras`` estimator, else None."""
    skorch = sys.modules.get("skorch")
    if skorch is not None and isinstance(est, skorch.NeuralNet):
        return "torch"
    wrapper = sys.modules.get("seedline.keras")
    if wrapper is not None and isinstance(est, wrapper.KerasEstimator):
        return "keras"
    return None


def deep_learning_steps(model: Any) -> list[tuple[int | None, str, Any]]:
    """The deep-learning steps of a model: ``(index, name, estimator)``, top-level steps only.

    ``index`` is None when ``model`` is itself a deep-learning estimator. A deep-learning
    estimator nested deeper (inside a column group, as a parameter) is refused: seedline
    saves, seeds and fingerprints networks as pipeline steps.
    """
    if "skorch" not in sys.modules and "seedline.keras" not in sys.modules:
        return []
    if framework_of(model):
        return [(None, "model", model)]
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list):
        return []
    found: list[tuple[int | None, str, Any]] = [
        (i, name, est) for i, (name, est) in enumerate(steps) if framework_of(est)
    ]
    top = {id(est) for _, _, est in found}
    for key, value in model.get_params(deep=True).items():
        if framework_of(value) and id(value) not in top:
            raise DeepLearningError(
                f"the network at parameter '{key}' is nested inside another step; seedline handles networks only as top-level pipeline steps",
                hint="make the network a step of its own in the spec's pipeline",
            )
    return found


def framework_versions(est: Any) -> dict[str, str]:
    """Versions of the frameworks a deep-learning step runs on (empty for other steps)."""
    fw = framework_of(est)
    if fw is None:
        return {}
    names = ["torch", "skorch"] if fw == "torch" else ["keras", keras_backend()]
    out: dict[str, str] = {}
    for name in names:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version is not None:
            out[name] = str(version)
    return out


# -- controls -----------------------------------------------------------------------------------
def _cuda_state(torch: Any) -> dict[str, Any]:
    cuda = torch.cuda
    available = bool(cuda.is_available())
    state: dict[str, Any] = {
        "available": available,
        "initialized": bool(cuda.is_initialized()),
        "version": getattr(torch.version, "cuda", None),
        "device_count": int(cuda.device_count()) if available else 0,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    if available:
        state["devices"] = [cuda.get_device_name(i) for i in range(state["device_count"])]
    return state


def apply_controls(*, threads: int | None = None, warn_only: bool = False) -> dict[str, Any]:
    """Turn on every determinism switch of the frameworks loaded; return what was set.

    ``threads``: torch's intra-op thread count (default: what the BLAS/OpenMP limits in force
    give, so ``execution.threads`` under ``seedline run``). ``warn_only``: an operation
    without a deterministic implementation warns instead of raising (``seedline check``
    uses it to list such operations; ``seedline run`` raises).
    """
    record: dict[str, Any] = {}
    torch: Any = sys.modules.get("torch")
    if torch is not None:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
        cudnn = torch.backends.cudnn
        cudnn.deterministic = True
        cudnn.benchmark = False
        n = int(threads) if threads else _limited_threads(torch)
        torch.set_num_threads(n)
        record["torch"] = {
            "version": str(torch.__version__),
            "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
            "cudnn": {
                "deterministic": bool(cudnn.deterministic),
                "benchmark": bool(cudnn.benchmark),
                "allow_tf32": bool(cudnn.allow_tf32),
                "version": cudnn.version() if cudnn.is_available() else None,
            },
            "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "num_threads": int(torch.get_num_threads()),
            "num_interop_threads": int(torch.get_num_interop_threads()),
            "cuda": _cuda_state(torch),
        }
    tf: Any = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        record["tensorflow"] = _tensorflow_controls(tf, threads)
    jax: Any = sys.modules.get("jax")
    if jax is not None and hasattr(jax, "config"):
        record["jax"] = _jax_controls(jax)
    keras: Any = sys.modules.get("keras")
    if keras is not None:
        backend = getattr(keras, "backend", None)
        record["keras"] = {
            "version": str(getattr(keras, "__version__", "")),
            "backend": backend.backend() if backend is not None else None,
            "KERAS_BACKEND": os.environ.get("KERAS_BACKEND"),
        }
    return record


def _limited_threads(torch: Any) -> int:
    """The thread count the BLAS/OpenMP limits in force give (torch may have been imported under them)."""
    from threadpoolctl import threadpool_info

    counts = [int(p["num_threads"]) for p in threadpool_info() if p.get("num_threads")]
    return min([*counts, int(torch.get_num_threads())])


def _tensorflow_controls(tf: Any, threads: int | None) -> dict[str, Any]:
    """Op determinism on, thread pools pinned (if TensorFlow has not started them yet); what is in force."""
    threading = tf.config.threading
    pinned: bool | str = True
    from_env = os.environ.get("TF_NUM_INTRAOP_THREADS")
    threads = threads or int(from_env or 0)
    if threads:
        try:
            threading.set_intra_op_parallelism_threads(int(threads))
            threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            # the pools exist already: the variables set before import sized them, or nothing did
            pinned = (
                "at import, by TF_NUM_INTRAOP_THREADS"
                if from_env == str(threads)
                else f"too late: TensorFlow had started its pools before {threads} thread(s) could be set"
            )
    tf.config.experimental.enable_op_determinism()
    return {
        "version": str(tf.__version__),
        "op_determinism": True,  # enable_op_determinism raises rather than fail silently
        # 0 means "sized by TensorFlow": from the variables, else from the core count
        "intra_op_threads": int(threading.get_intra_op_parallelism_threads()) or int(from_env or 0),
        "inter_op_threads": int(threading.get_inter_op_parallelism_threads())
        or int(os.environ.get("TF_NUM_INTEROP_THREADS") or 0),
        "threads_pinned": pinned,
        "TF_NUM_INTRAOP_THREADS": from_env,
        "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS"),
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def _jax_controls(jax: Any) -> dict[str, Any]:
    """JAX has no global seed (keys are explicit); what decides its numbers is recorded."""
    config = jax.config
    return {
        "version": str(jax.__version__),
        "default_backend": str(jax.default_backend()),
        "prng_impl": str(config.jax_default_prng_impl),
        "threefry_partitionable": bool(config.jax_threefry_partitionable),
        "enable_x64": bool(config.jax_enable_x64),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
    }


def step_seeds(path: str, est: Any) -> dict[str, str]:
    """Seed-plan paths a deep-learning step is seeded from, by framework: ``{'torch': 'torch/<path>'}``.

    A step with a ``random_state`` parameter seeds itself from it (the plan fills it), so
    it needs none; a skorch net has none, and gets torch's generators seeded right before it fits.
    """
    if framework_of(est) != "torch" or "random_state" in est.get_params(deep=False):
        return {}
    return {"torch": f"torch/{path}"}


def seed_torch(seed: int) -> None:
    """Seed torch's CPU and CUDA generators (what DataLoader order, workers' base seed, init and dropout draw from)."""
    torch: Any = sys.modules["torch"]
    torch.manual_seed(seed)


def describe_steps(pipeline: Any, derive: Any) -> dict[str, Any]:
    """Per deep-learning step: framework, device, and the seeds the plan gives it.

    A Keras step imports Keras here (the backend was chosen by ``prepare_frameworks``), so
    that the seed plan and the controls reach it before it fits.
    """
    out: dict[str, Any] = {}
    for _i, name, est in deep_learning_steps(pipeline):
        if framework_of(est) == "keras" and "keras" not in sys.modules:
            os.environ["KERAS_BACKEND"] = keras_backend()
            importlib.import_module("keras")
        path = f"pipeline/{name}"
        params = est.get_params(deep=False)
        info: dict[str, Any] = {"framework": framework_of(est), "class": _qualname(est)}
        seeds = {fw: derive(p) for fw, p in step_seeds(path, est).items()}
        if "random_state" in params:
            seeds["random_state"] = params["random_state"]
        info["seeds"] = seeds
        device = params.get("device")
        info["device"] = str(device) if device is not None else _keras_device()
        info["gpu"] = info["device"] is not None and info["device"].startswith(("cuda", "gpu"))
        if info["framework"] == "keras":
            info["backend"] = keras_backend()
        out[path] = info
    return out


def _keras_device() -> str | None:
    backend = keras_backend() if "keras" in sys.modules else None
    if backend == "tensorflow":
        tf: Any = sys.modules["tensorflow"]
        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "jax":
        jax: Any = sys.modules["jax"]
        return str(jax.default_backend())
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return None
    return "cuda" if torch.cuda.is_available() else "cpu"


def nondeterministic_op(message: str) -> str | None:
    """The operation named by torch's "X does not have a deterministic implementation" message."""
    head, mark, _ = message.partition(_NONDETERMINISTIC_MARK)
    return head.strip().splitlines()[-1].strip() if mark and head.strip() else None


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without changing Python's, NumPy's or torch's global generators."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch: Any = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch is not None and torch_state is not None:
            torch.random.set_rng_state(torch_state)


# -- canonical fitted state ---------------------------------------------------------------------
def _qualname(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _plain(value: Any) -> Any:
    """JSON-native copy: NumPy and torch scalars become Python numbers, tuples become lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "item") and hasattr(value, "numel") and value.numel() == 1:
        return value.item()
    return value


def _drop_durations(value: Any) -> Any:
    # epoch and batch durations are wall-clock time: never state, never reproducible
    if isinstance(value, dict):
        return {k: _drop_durations(v) for k, v in value.items() if k != "dur"}
    if isinstance(value, list):
        return [_drop_durations(v) for v in value]
    return value


def history_records(history: Any) -> list[Any]:
    """A skorch History as JSON-native records, without durations."""
    plain = _plain(list(history))
    result: list[Any] = _drop_durations(plain)
    return result


def _torch_modules(net: Any) -> list[tuple[str, Any]]:
    names = [*getattr(net, "_modules", ["module"]), *getattr(net, "_criteria", ["criterion"])]
    out = []
    for name in names:
        mod = getattr(net, f"{name}_", None)
        if mod is not None and hasattr(mod, "state_dict"):
            out.append((f"{name}_", mod))
    return out


def skorch_state(net: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A skorch net's canonical state: its parameters, and what fitting gave it.

    Fitted: every module's and criterion's state_dict (names and tensors, in order), the
    training history without durations, and the classes seen. Callbacks and the optimizer's
    moment estimates are not part of it (they are not saved either; see docs/deep-learning.md).
    """
    params = dict(net.get_params(deep=False))
    fitted: dict[str, Any] = {}
    if getattr(net, "initialized_", False):
        for attr, mod in _torch_modules(net):
            fitted[attr] = list(mod.state_dict().items())
        history = getattr(net, "history_", None)
        if history is not None:
            fitted["history_"] = history_records(history)
    classes = getattr(net, "classes_inferred_", None)
    if classes is not None:
        fitted["classes_inferred_"] = np.asarray(classes)
    return params, fitted


def keras_layers(model: Any) -> list[tuple[str, list[np.ndarray]]]:
    """Every layer of a Keras model by position and class (``'0:Conv2D'``), with its weights.

    Keras names layers from a per-process counter (``dense_3`` in the fourth model built),
    so names are not part of the canonical form; positions and classes are.
    """
    layers = list(getattr(model, "layers", None) or [model])
    return [
        (f"{i}:{type(layer).__name__}", [np.asarray(w) for w in layer.get_weights()])
        for i, layer in enumerate(layers)
    ]


def _torch_layers(net: Any) -> list[tuple[str, list[tuple[str, Any]]]]:
    modules = [(attr, mod) for attr, mod in _torch_modules(net) if attr != "criterion_"]
    groups: dict[str, list[tuple[str, Any]]] = {}
    for attr, mod in modules:
        prefix = "" if len(modules) == 1 else f"{attr.removesuffix('_')}."
        for key, tensor in mod.state_dict().items():
            owner, _, leaf = key.rpartition(".")
            groups.setdefault(prefix + (owner or "(root)"), []).append((leaf, tensor))
    return list(groups.items())


def layer_fingerprints(est: Any) -> dict[str, str] | None:
    """``{layer: 'layer:<hash>'}`` of a fitted deep-learning step, in the network's order; None for other steps.

    torch: one entry per submodule that holds parameters or buffers (``conv1``, ``head.0``);
    Keras: one per layer with weights (``'0:Conv2D'``).
    """
    from seedline.core.fingerprint import fingerprint_value

    fw = framework_of(est)
    if fw == "torch":
        if not getattr(est, "initialized_", False):
            return None
        items: list[tuple[str, Any]] = list(_torch_layers(est))
    elif fw == "keras":
        model = getattr(est, "model_", None)
        if model is None:
            return None
        items = [(name, ws) for name, ws in keras_layers(model) if ws]
    else:
        return None
    return {name: fingerprint_value(value, kind="layer") for name, value in items}


def comparable_state(est: Any) -> Any:
    """What a tolerance comparison walks: for a network, its weights by layer as NumPy arrays, classes and history.

    Other estimators are returned as they are (``workflow.deviation`` walks their attributes).
    """
    fw = framework_of(est)
    if fw is None:
        return est
    # parameters are the spec's business (compared by diff); here the fitted numbers
    state: dict[str, Any] = {"class": _qualname(est)}
    if fw == "torch":
        if getattr(est, "initialized_", False):
            state["layers"] = {
                name: {leaf: t.detach().cpu().numpy() for leaf, t in items}
                for name, items in _torch_layers(est)
            }
            state["history"] = history_records(est.history_)
        classes = getattr(est, "classes_inferred_", None)
    else:
        model = getattr(est, "model_", None)
        if model is not None:
            state["layers"] = {name: list(ws) for name, ws in keras_layers(model)}
            state["history"] = getattr(est, "history_", None)
        classes = getattr(est, "classes_", None)
    if classes is not None:
        state["classes"] = np.asarray(classes)
    return state


def first_divergent_layer(a: dict[str, str] | None, b: dict[str, str] | None) -> str | None:
    """The first layer (in ``a``'s order) whose fingerprint differs in ``b``, or is missing there."""
    if not a or not b:
        return None
    for name, digest in a.items():
        if b.get(name) != digest:
            return name
    extra = [name for name in b if name not in a]
    return extra[0] if extra else None


# -- saving and restoring (the tensors and the JSON state; execution.persist writes the files) --
def _array_state(arr: Any) -> dict[str, Any]:
    a = np.asarray(arr)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "values": _plain(a.tolist())}


def _array_from_state(state: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(state["dtype"])
    return np.asarray(state["values"], dtype=dtype).reshape(state["shape"])


def export_step(est: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A fitted deep-learning step as ``(framework, tensors, state)``.

    ``tensors`` (torch tensors or NumPy arrays, by name) go to a safetensors file; ``state``
    (JSON) holds the rest of the fitted state. The architecture is not here: it is the
    step's class and parameters, saved beside them (what the spec says).
    """
    fw = framework_of(est)
    if fw == "torch":
        tensors: dict[str, Any] = {}
        if getattr(est, "initialized_", False):
            for attr, mod in _torch_modules(est):
                for key, t in mod.state_dict().items():
                    tensors[f"{attr}.{key}"] = t.detach().cpu().contiguous().clone()
        state: dict[str, Any] = {
            "initialized": bool(getattr(est, "initialized_", False)),
            "history": history_records(est.history_) if hasattr(est, "history_") else None,
        }
        classes = getattr(est, "classes_inferred_", None)
        if classes is not None:
            state["classes_inferred_"] = _array_state(classes)
        return fw, tensors, state
    if fw == "keras":
        model = getattr(est, "model_", None)
        arrays: dict[str, Any] = {}
        layers: list[str] = []
        if model is not None:
            for i, (name, weights) in enumerate(keras_layers(model)):
                layers.append(name)
                for j, w in enumerate(weights):
                    arrays[f"layers.{i}.{j}"] = np.ascontiguousarray(w)
        state = {
            "fitted": model is not None,
            "backend": keras_backend() if model is not None else None,
            "layers": layers,
            "n_features_in_": getattr(est, "n_features_in_", None),
            "history_": getattr(est, "history_", None),
        }
        if hasattr(est, "classes_"):
            state["classes_"] = _array_state(est.classes_)
        return fw, arrays, state
    raise DeepLearningError(f"{_qualname(est)} is not a deep-learning step seedline can save")


def restore_step(
    fw: str, cls: type, params: dict[str, Any], tensors: dict[str, Any], state: dict[str, Any]
) -> Any:
    """Rebuild a step from its class and parameters, then load its tensors and state.

    Building a network draws initial weights: that happens with the global generators
    saved and restored, so loading a model changes no random stream of the caller.
    """
    est = cls(**params)
    if fw == "torch":
        if state.get("initialized"):
            with preserved_rng():
                est.initialize()
            for attr, mod in _torch_modules(est):
                prefix = f"{attr}."
                own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                try:
                    mod.load_state_dict(own, strict=True)
                except RuntimeError as exc:
                    raise DeepLearningError(
                        f"the saved weights of {_qualname(est)}.{attr} do not fit the network its parameters build: {exc}",
                        hint="the network's code changed since the model was saved; load it with the code of the run that made it",
                    ) from exc
            from skorch.history import History

            est.history_ = History(state.get("history") or [])
        if "classes_inferred_" in state:
            est.classes_inferred_ = _array_from_state(state["classes_inferred_"])
        return est
    if fw == "keras":
        recorded = state.get("backend")
        if recorded and "keras" not in sys.modules:
            # the weights load on any backend; the one that trained them predicts bit for bit
            os.environ["KERAS_BACKEND"] = str(recorded)
        if state.get("fitted"):
            classes = _array_from_state(state["classes_"]) if "classes_" in state else None
            weights = [
                [tensors[f"layers.{i}.{j}"] for j in range(_count(tensors, i))]
                for i in range(len(state["layers"]))
            ]
            est._restore_fitted(
                n_features=int(state["n_features_in_"]),
                classes=classes,
                history=state.get("history_") or {},
                layer_names=list(state["layers"]),
                weights=weights,
            )
        return est
    raise DeepLearningError(f"unknown deep-learning framework {fw!r} in a saved model")


def _count(tensors: dict[str, Any], layer: int) -> int:
    prefix = f"layers.{layer}."
    return sum(1 for k in tensors if k.startswith(prefix))


def state_json(state: dict[str, Any]) -> str:
    """The JSON text of a step's state (exact for floats: Python writes the shortest repr)."""
    return json.dumps(_plain(state), sort_keys=True, allow_nan=True)


# -- seeded DataLoaders for code of your own --------------------------------------------------------
def seed_worker(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: seeds Python's and NumPy's generators in a worker from torch's seed."""
    torch: Any = sys.modules["torch"]
    seed = int(torch.initial_seed()) % 2**32
    random.seed(seed)
    np.random.seed(seed)


def loader_seeding(seed: int) -> dict[str, Any]:
    """Keyword arguments for ``torch.utils.data.DataLoader``: a seeded ``generator`` and ``worker_init_fn``.

    skorch's loaders draw their order and their workers' seeds from torch's default
    generator, which seedline seeds per step; use this for DataLoaders your own code makes.
    """
    import torch

    return {"generator": torch.Generator().manual_seed(int(seed)), "worker_init_fn": seed_worker}


# -- weights files a script writes (``seedline exec``): their tensors, without pickle ----------
WEIGHTS_SUFFIXES = (".keras", ".h5", ".hdf5", ".safetensors", ".pt", ".pth")


def _h5_tensors(h5: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def visit(name: str, obj: Any) -> None:
        if hasattr(obj, "shape") and hasattr(obj, "dtype"):
            out[prefix + name] = np.asarray(obj[()])

    h5.visititems(visit)
    return out


def weight_tensors(path: str | Path) -> dict[str, np.ndarray] | None:
    """The tensors of a weights file, by name in the file's order; None for other files.

    ``.keras`` (the zip's ``model.weights.h5``), ``.h5``/``.hdf5`` (every dataset),
    ``.safetensors``, and ``.pt``/``.pth`` state dicts (read with ``torch.load(weights_only=True)``,
    which refuses anything but tensors and plain containers). A ``.keras`` archive also holds
    the time it was saved, so two saves of the same weights differ in bytes, never in tensors.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(p)))
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(p, "r") as h5:
                return _h5_tensors(h5)
        if suffix == ".keras":
            import io
            import zipfile

            import h5py

            with (
                zipfile.ZipFile(p) as zf,
                h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as h5,
            ):
                return _h5_tensors(h5)
        if suffix in (".pt", ".pth"):
            import torch

            state = torch.load(str(p), map_location="cpu", weights_only=True)
            return _torch_tensors(state)
    except Exception as exc:  # each library raises its own family for a corrupt or foreign file
        raise DeepLearningError(
            f"could not read the tensors of {p.name}: {type(exc).__name__}: {exc}",
            hint="seedline reads .keras, .h5, .safetensors and .pt state dicts; declare other files as plain outputs",
        ) from exc
    return None


def _torch_tensors(state: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if isinstance(state, dict):
        for key, value in state.items():
            out.update(_torch_tensors(value, f"{prefix}{key}."))
    elif isinstance(state, list | tuple):
        for i, value in enumerate(state):
            out.update(_torch_tensors(value, f"{prefix}{i}."))
    elif hasattr(state, "detach"):
        out[prefix.rstrip(".")] = state.detach().cpu().numpy()
    return out
