"""The seed plan: every random consumer's seed derived from (master seed, stable path).

This is the one place in seedline that derives seeds or seeds global generators. A path
is a stable name such as ``pipeline/clf__random_state`` or ``split``; the seed depends on
the master seed and that name only, never on the order in which work happens to run.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import blake3
import numpy as np

_U32 = 2**32


def _spawn_key(path: str) -> tuple[int, ...]:
    digest = blake3.blake3(path.encode("utf-8")).digest(length=16)
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


@dataclass
class SeedPlan:
    """Derives and records seeds from one master seed."""

    master: int
    derived: dict[str, int] = field(default_factory=dict)

    def derive(self, path: str) -> int:
        """The 32-bit seed for ``path``; the same (master, path) always gives the same seed."""
        ss = np.random.SeedSequence(entropy=self.master, spawn_key=_spawn_key(path))
        seed = int(ss.generate_state(1, dtype=np.uint32)[0])
        self.derived[path] = seed
        return seed

    def hash_seed(self) -> int:
        """The PYTHONHASHSEED the CLI pins before the pipeline's interpreter starts."""
        return self.derive("python/hash_seed") % (_U32 - 1)

    def seed_globals(
        self, pipeline: Any = None, *, threads: int | None = None, warn_only: bool = False
    ) -> dict[str, Any]:
        """Seed Python's ``random``, NumPy's legacy global RNG, and deep-learning frameworks already imported.

        With torch, Keras, TensorFlow or JAX loaded, their determinism switches are turned on too
        (``core.deeplearning.apply_controls``: ``threads`` and ``warn_only`` are passed on) and
        recorded under ``deep_learning``, with, given the ``pipeline``, each deep-learning
        step's framework, device and seeds.
        """
        done: dict[str, Any] = {}
        steps: dict[str, Any] | None = None
        if pipeline is not None and any(
            m in sys.modules for m in ("torch", "keras", "seedline.keras")
        ):
            from seedline.core.deeplearning import describe_steps

            # first: it loads the framework a step runs on, so that it is seeded and controlled below
            steps = describe_steps(pipeline, self.derive)
        controls: dict[str, Any] | None = None
        if any(m in sys.modules for m in ("torch", "keras", "tensorflow", "jax")):
            from seedline.core.deeplearning import apply_controls

            # first: TensorFlow's thread pools can be sized only until its first operation
            controls = apply_controls(threads=threads, warn_only=warn_only)
        # keras.utils.set_random_seed also seeds Python, NumPy and torch: it goes first, so
        # that every seed recorded below is the one in force
        if "keras" in sys.modules:
            keras: Any = sys.modules["keras"]
            utils = getattr(keras, "utils", None)
            if utils is not None and hasattr(utils, "set_random_seed"):
                utils.set_random_seed(self.derive("keras/global"))
                done["keras"] = self.derived["keras/global"]
        random.seed(self.derive("python/random"))
        done["python.random"] = self.derived["python/random"]
        np.random.seed(self.derive("numpy/global"))
        done["numpy.random"] = self.derived["numpy/global"]
        if "torch" in sys.modules:
            torch: Any = sys.modules["torch"]
            torch.manual_seed(self.derive("torch/manual_seed"))
            done["torch"] = self.derived["torch/manual_seed"]
        if "tensorflow" in sys.modules:
            tf: Any = sys.modules["tensorflow"]
            tf.random.set_seed(self.derive("tensorflow/global"))
            done["tensorflow"] = self.derived["tensorflow/global"]
        # recorded for pipelines with networks; a scikit-learn pipeline that merely runs in
        # a process where torch happens to be loaded is not affected by these switches
        if controls is not None and (steps is None or steps):
            if steps:
                controls["steps"] = steps
                controls["gpu"] = any(s["gpu"] for s in steps.values())
            done["deep_learning"] = controls
        return done

    def seed_step(self, path: str, est: Any) -> dict[str, int]:
        """Seed what a deep-learning step draws from, right before it fits; nothing for other steps.

        A skorch net's initial weights, dropout masks and DataLoader order come from torch's
        generators: they are seeded from ``torch/<path>`` (``torch/pipeline/net``), so the
        result depends on the step's path only, never on what ran before it.
        """
        if "torch" not in sys.modules:
            return {}
        from seedline.core.deeplearning import seed_torch, step_seeds

        done: dict[str, int] = {}
        for framework, seed_path in step_seeds(path, est).items():
            seed = self.derive(seed_path)
            if framework == "torch":
                seed_torch(seed)
            done[seed_path] = seed
        return done


def hash_seed_state() -> dict[str, Any]:
    """How string hashing is seeded in this interpreter."""
    value = os.environ.get("PYTHONHASHSEED")
    return {
        "PYTHONHASHSEED": value,
        "randomized": bool(sys.flags.hash_randomization),
        "pinned": value is not None and value != "random",
    }


def is_frozen(estimator: Any) -> bool:
    """scikit-learn's FrozenEstimator (a fitted step that is never refitted), known without importing it."""
    cls = type(estimator)
    return cls.__name__ == "FrozenEstimator" and cls.__module__.startswith("sklearn.frozen")


def fill_random_states(
    estimator: Any, plan: SeedPlan, prefix: str = "pipeline"
) -> dict[str, dict[str, Any]]:
    """Fill every ``random_state`` left as None (nested ones included) from the plan.

    Explicit values are kept. Returns ``{param_path: {"seed": value, "source": "plan"|"explicit"}}``
    for every ``random_state`` parameter found.
    """
    record: dict[str, dict[str, Any]] = {}
    params = estimator.get_params(deep=True)
    # a step taken fitted from another model (a FrozenEstimator) keeps its parameters: it is
    # never refitted, and scikit-learn refuses to set them
    frozen = tuple(f"{k}__" for k, v in params.items() if is_frozen(v))
    updates: dict[str, int] = {}
    for key in sorted(params):
        if key != "random_state" and not key.endswith("__random_state"):
            continue
        if key.startswith(frozen):
            continue
        value = params[key]
        if value is None:
            seed = plan.derive(f"{prefix}/{key}")
            updates[key] = seed
            record[key] = {"seed": seed, "source": "plan"}
        elif isinstance(value, int | np.integer):
            record[key] = {"seed": int(value), "source": "explicit"}
        else:
            # a RandomState/Generator instance: its draws depend on how it was made; keep it, say so
            record[key] = {"seed": None, "source": f"explicit {type(value).__name__} instance"}
    # set outer-most first so a nested estimator replaced by a param set later keeps its filled value
    for key in sorted(updates, key=lambda k: k.count("__")):
        estimator.set_params(**{key: updates[key]})
    return record
