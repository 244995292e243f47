"""Structural checks of a loaded model before its first use: the node arrays of every tree.

skops loads ``sklearn.tree._tree.Tree`` (and the histogram gradient boosting
``TreePredictor``) from plain arrays. scikit-learn's compiled prediction code trusts those
arrays: a child index past the end, a feature index past the input's width or a cycle
makes ``predict`` read out of bounds and crash the process. A model file's hashes only
say that it is the file that was written, not that whoever wrote it meant well, so every
tree in a loaded model is checked here: each node is a leaf or has two children that come
after it (which also rules out cycles) and lie within the tree, a feature below the
number of features, and a finite threshold.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from seedline.core.errors import SeedlineError

_LEAF = -1
_MAX_DEPTH_WALK = 64


class MalformedModelError(SeedlineError):
    """Raised when a loaded model holds a tree whose node arrays would make prediction read out of bounds."""


def _problem(where: str, what: str) -> MalformedModelError:
    return MalformedModelError(
        f"the model is malformed: {where} {what}; predicting with it could crash the process, so it is refused",
        hint="the model file was edited or damaged: export it again from the registry, or check it with --expect-fingerprint",
    )


def check_tree(tree: Any, where: str, n_features: int | None = None) -> None:
    """Check one ``sklearn.tree._tree.Tree``: children in range and after their parent, features in range, finite thresholds."""
    count = int(tree.node_count)
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    feature = np.asarray(tree.feature, dtype=np.int64)
    threshold = np.asarray(tree.threshold, dtype=np.float64)
    width = int(tree.n_features) if n_features is None else min(int(tree.n_features), n_features)
    if count < 1 or not (len(left) == len(right) == len(feature) == len(threshold) == count):
        raise _problem(where, f"has {count} nodes but node arrays of other lengths")
    if np.asarray(tree.value).shape[0] != count:
        raise _problem(where, f"has {count} nodes but {np.asarray(tree.value).shape[0]} values")
    index = np.arange(count)
    leaf = (left == _LEAF) & (right == _LEAF)
    inner = ~leaf
    bad_child = inner & ~((left > index) & (left < count) & (right > index) & (right < count))
    if bad_child.any():
        i = int(np.argmax(bad_child))
        raise _problem(
            where,
            f"node {i} has children {int(left[i])} and {int(right[i])}; expected -1 for a leaf, "
            f"or nodes after it and below {count}",
        )
    bad_feature = inner & ~((feature >= 0) & (feature < width))
    if bad_feature.any():
        i = int(np.argmax(bad_feature))
        raise _problem(
            where, f"node {i} splits on feature {int(feature[i])}; the model has {width}"
        )
    bad_threshold = inner & ~np.isfinite(threshold)
    if bad_threshold.any():
        i = int(np.argmax(bad_threshold))
        raise _problem(
            where, f"node {i} has the threshold {threshold[i]}; expected a finite number"
        )


def check_tree_predictor(predictor: Any, where: str, n_features: int | None) -> None:
    """Check a histogram gradient boosting ``TreePredictor``: children in range and after their parent, features in range."""
    nodes = predictor.nodes
    count = len(nodes)
    if count < 1:
        raise _problem(where, "has no nodes")
    index = np.arange(count)
    leaf = nodes["is_leaf"].astype(bool)
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    inner = ~leaf
    bad_child = inner & ~((left > index) & (left < count) & (right > index) & (right < count))
    if bad_child.any():
        i = int(np.argmax(bad_child))
        raise _problem(where, f"node {i} has children {int(left[i])} and {int(right[i])}")
    feature = nodes["feature_idx"].astype(np.int64)
    width = n_features if n_features is not None else int(feature.max(initial=0)) + 1
    bad_feature = inner & ~((feature >= 0) & (feature < width))
    if bad_feature.any():
        i = int(np.argmax(bad_feature))
        raise _problem(
            where, f"node {i} splits on feature {int(feature[i])}; the model has {width}"
        )
    bitsets = getattr(predictor, "raw_left_cat_bitsets", None)
    categorical = inner & nodes["is_categorical"].astype(bool)
    if categorical.any():
        n_bitsets = 0 if bitsets is None else len(bitsets)
        bad = categorical & ~(nodes["bitset_idx"].astype(np.int64) < n_bitsets)
        if bad.any():
            i = int(np.argmax(bad))
            raise _problem(where, f"node {i} points at a category bitset that does not exist")


def _is_foreign_handle(obj: Any) -> bool:
    """Objects that wrap native handles (ctypes libraries, pointers) hold no trees and must not be probed."""
    return type(obj).__module__.split(".", 1)[0] == "ctypes"


def check_model_structure(model: Any, where: str = "model") -> None:
    """Walk a loaded model and check every tree in it (forests, gradient boosting, single trees, pipelines)."""
    from sklearn.tree._tree import Tree

    try:
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    except ImportError:  # pragma: no cover - an older scikit-learn
        TreePredictor = ()

    seen: set[int] = set()

    def walk(obj: Any, path: str, n_features: int | None, depth: int) -> None:
        if depth > _MAX_DEPTH_WALK or id(obj) in seen:
            return
        if isinstance(obj, Tree):
            seen.add(id(obj))
            check_tree(obj, path, n_features)
            return
        if isinstance(obj, TreePredictor):
            seen.add(id(obj))
            check_tree_predictor(obj, path, n_features)
            return
        if isinstance(obj, dict):
            seen.add(id(obj))
            for k, v in obj.items():
                walk(v, f"{path}[{k!r}]", n_features, depth + 1)
        elif isinstance(obj, list | tuple):
            seen.add(id(obj))
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]", n_features, depth + 1)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                seen.add(id(obj))
                for i, v in enumerate(obj.reshape(-1)):
                    walk(v, f"{path}[{i}]", n_features, depth + 1)
        elif (
            hasattr(obj, "__dict__")
            and not isinstance(obj, type | ModuleType)
            and not _is_foreign_handle(obj)
        ):
            seen.add(id(obj))
            # read the instance's own attributes only: getattr may run code (ctypes library loaders
            # open a shared object named after the attribute, properties compute things)
            width = vars(obj).get("n_features_in_")
            here = int(width) if isinstance(width, int | np.integer) else n_features
            for k, v in vars(obj).items():
                walk(v, f"{path}.{k}", here, depth + 1)

    walk(model, where, None, 0)


__all__ = ["MalformedModelError", "check_model_structure", "check_tree"]
