"""Plot data stored with each run: curves, matrices and importances as JSON, so no page refits.

Computed once at run time on the test split (k-fold: on the out-of-fold predictions), after
every fingerprint and metric is final, with generators of their own: drawing them changes
nothing that a run records as its result. Classifiers get a confusion matrix, ROC and
precision-recall curves and a calibration curve; regressors predicted-vs-actual and
residuals; every model permutation importances of the input columns, seeded from the plan
path ``plots/permutation``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PLOTS_SCHEMA = 1
PERMUTATION_PATH = "plots/permutation"
# curves are drawn, not recomputed: a few hundred points per curve are plenty
_MAX_POINTS = 200
# enough rows and repeats for a stable ranking at a few percent of a run's time: the shuffled
# copies of all columns together hold at most _PERMUTATION_BUDGET rows (wide tables get fewer
# rows per copy, never under _PERMUTATION_MIN_ROWS)
_PERMUTATION_REPEATS = 3
_PERMUTATION_ROWS = 300
_PERMUTATION_BUDGET = 6_000
_PERMUTATION_MIN_ROWS = 30


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    n = len(arrays[0])
    keep = (
        np.unique(np.linspace(0, n - 1, _MAX_POINTS).round().astype(int))
        if n > _MAX_POINTS
        else np.arange(n)
    )
    return [[float(v) for v in np.asarray(a)[keep]] for a in arrays]


def _labels(values: Any) -> list[str]:
    return [str(v) for v in values]


def _confusion_counts(y: np.ndarray, pred: Any, labels: list[Any]) -> np.ndarray:
    """``confusion_matrix(y, pred, labels=labels)``, counted on the labels' positions: with
    text labels scikit-learn sorts every value as a Python string, seconds on a big test set.
    Values outside ``labels`` are left out, as scikit-learn leaves them out."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    index = pd.Index(labels, dtype=object)
    if not index.is_unique:
        return np.asarray(confusion_matrix(y, pred, labels=labels))
    # position of each value in labels, -1 where it is none of them (a hash lookup, no sort)
    true = index.get_indexer(pd.Index(y, dtype=object))
    found = index.get_indexer(pd.Index(np.asarray(pred), dtype=object))
    return np.asarray(confusion_matrix(true, found, labels=np.arange(len(labels))))


def _binary_curves(
    hit: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``roc_curve(hit, score)``'s fpr and tpr and ``precision_recall_curve(hit, score)``'s
    precision and recall, from one sort, for finite scores and both classes present.

    The same arithmetic as scikit-learn's (a test compares the arrays exactly): positives
    counted down the distinct scores, ROC's collinear points dropped, PR's ends added. Its
    functions validate their input on every call: 20 calls for ten classes cost more than
    the curves (about 10 ms of a digits run's plots).
    """
    order = np.argsort(score, kind="stable")[::-1]
    ranked = score[order]
    cut = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    tps = np.cumsum(hit[order].astype(np.float64))[cut]
    fps = 1 + cut.astype(np.float64) - tps
    rf, rt = fps, tps
    if fps.shape[0] > 2:
        corner = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        rf, rt = fps[corner], tps[corner]
    rf, rt = np.r_[0.0, rf], np.r_[0.0, rt]
    precision = tps / (tps + fps)  # never 0 / 0: every cut holds a row
    recall = tps / tps[-1]
    return rf / rf[-1], rt / rt[-1], np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]


def classifier_plots(y_true: Any, pred: Any, proba: Any | None, classes: Any) -> dict[str, Any]:
    """Confusion matrix, one-vs-rest ROC and PR curves, and a calibration curve."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    y = np.asarray(y_true)
    labels = list(classes) if classes is not None else sorted(set(y.tolist()) | set(pred))
    out: dict[str, Any] = {
        "confusion_matrix": {
            "labels": _labels(labels),
            "counts": _confusion_counts(y, pred, labels).tolist(),
        }
    }
    if proba is None:
        return out
    proba = np.asarray(proba, dtype=float)
    roc, pr = [], []
    # binary: the positive class only; multiclass: one curve per class against the rest
    targets = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    finite = bool(np.isfinite(proba).all())
    for k in targets:
        hit = (y == labels[k]).astype(int)
        if hit.min() == hit.max():
            continue  # a class absent from the test rows has no curve
        if finite:
            fpr, tpr, prec, rec = _binary_curves(hit, proba[:, k])
        else:  # scikit-learn says what is wrong with the scores
            fpr, tpr, _ = roc_curve(hit, proba[:, k])
            prec, rec, _ = precision_recall_curve(hit, proba[:, k])
        x, t = _thin(fpr, tpr)
        roc.append({"label": str(labels[k]), "fpr": x, "tpr": t, "auc": float(auc(fpr, tpr))})
        r, p = _thin(rec[::-1], prec[::-1])
        pr.append({"label": str(labels[k]), "recall": r, "precision": p})
    out["roc"] = roc
    out["pr"] = pr
    # calibration of the predicted class's confidence: the reliability diagram of any classifier
    top = proba.argmax(axis=1)
    correct = (np.asarray(labels, dtype=object)[top] == y.astype(object)).astype(int)
    if correct.min() != correct.max():
        frac, mean = calibration_curve(correct, proba.max(axis=1), n_bins=10, strategy="uniform")
        out["calibration"] = {
            "of": "positive class" if proba.shape[1] == 2 else "predicted class",
            "mean_predicted": [float(v) for v in mean],
            "fraction_positive": [float(v) for v in frac],
        }
    return out


def regressor_plots(y_true: Any, pred: Any) -> dict[str, Any]:
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(pred, dtype=float).ravel()
    a, b = _thin(y, p) if len(y) <= 2000 else _thin(y[:2000], p[:2000])
    return {
        "predicted_vs_actual": {"actual": a, "predicted": b},
        "residuals": {"predicted": b, "residual": [x - yy for x, yy in zip(a, b, strict=True)]},
    }


def _score(is_classifier: bool, y: np.ndarray, pred: np.ndarray) -> float:
    if is_classifier:
        return float(np.mean(pred == y))
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / total if total > 0 else 0.0


def permutation_importance(
    model: Any, X: Any, y: Any, *, seed: int, is_classifier: bool, pred: Any | None = None
) -> dict[str, Any]:
    """Drop in accuracy (classifiers) or R² (regressors) when one input column is shuffled.

    Every shuffled copy is stacked into one frame and predicted in one call: a model with
    many trees pays its per-call cost once, not once per column and repeat (which is what
    ``sklearn.inspection.permutation_importance`` does, at many times the cost here).
    ``pred``, the model's predictions on ``X`` when already made, saves predicting them again.
    """
    import pandas as pd

    rng = np.random.RandomState(seed)
    per_copy = _PERMUTATION_BUDGET // (_PERMUTATION_REPEATS * max(1, X.shape[1]))
    limit = min(_PERMUTATION_ROWS, max(_PERMUTATION_MIN_ROWS, per_copy))
    rows = np.arange(len(X))
    if len(X) > limit:
        rows = np.sort(rng.choice(len(X), limit, replace=False))
        X, y = X.iloc[rows], y.iloc[rows]
    n = len(X)
    columns = list(X.columns)
    y_arr = np.asarray(y)
    if not is_classifier:
        y_arr = y_arr.astype(float)
    given = np.asarray(model.predict(X) if pred is None else np.asarray(pred)[rows])
    baseline = _score(is_classifier, y_arr, given if is_classifier else given.astype(float).ravel())
    blocks = _PERMUTATION_REPEATS * len(columns)
    stacked: dict[Any, np.ndarray] = {}
    for j, col in enumerate(columns):
        values = X[col].to_numpy()
        tiled = np.tile(values, blocks)
        for r in range(_PERMUTATION_REPEATS):
            b = r * len(columns) + j
            tiled[b * n : (b + 1) * n] = values[rng.permutation(n)]
        stacked[col] = tiled
    frame = pd.DataFrame(stacked, columns=X.columns).astype(X.dtypes.to_dict())
    pred = np.asarray(model.predict(frame))
    if not is_classifier:
        pred = pred.astype(float).ravel()
    drops = np.array(
        [baseline - _score(is_classifier, y_arr, pred[b * n : (b + 1) * n]) for b in range(blocks)]
    ).reshape(_PERMUTATION_REPEATS, len(columns))
    order = np.argsort(-drops.mean(axis=0), kind="stable")
    return {
        "metric": "accuracy" if is_classifier else "r2",
        "baseline": baseline,
        "repeats": _PERMUTATION_REPEATS,
        "rows": n,
        "seed": seed,
        "features": [str(columns[i]) for i in order],
        "mean": [float(drops[:, i].mean()) for i in order],
        "std": [float(drops[:, i].std()) for i in order],
    }


def merge_importances(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold importances averaged into one ranking (k-fold runs)."""
    means: dict[str, list[float]] = {}
    for p in parts:
        for f, m in zip(p["features"], p["mean"], strict=True):
            means.setdefault(f, []).append(m)
    order = sorted(means, key=lambda f: -float(np.mean(means[f])))
    return {
        **{k: parts[0][k] for k in ("metric", "repeats", "seed")},
        "rows": sum(p["rows"] for p in parts),
        "baseline": float(np.mean([p["baseline"] for p in parts])),
        "folds": len(parts),
        "features": order,
        "mean": [float(np.mean(means[f])) for f in order],
        "std": [float(np.std(means[f])) for f in order],
    }


def compute_plots(
    model: Any,
    y_true: Any,
    pred: Any,
    proba: Any | None,
    *,
    importance: dict[str, Any] | None,
    split: str,
) -> dict[str, Any]:
    """The plot document of one run (``split``: 'test split' or 'out-of-fold')."""
    from sklearn.base import is_classifier

    final = model.steps[-1][1] if hasattr(model, "steps") else model
    classifier = bool(is_classifier(final))
    doc: dict[str, Any] = {
        "schema": PLOTS_SCHEMA,
        "kind": "classifier" if classifier else "regressor",
        "split": split,
        "rows": len(y_true),
    }
    if classifier:
        doc.update(classifier_plots(y_true, pred, proba, getattr(final, "classes_", None)))
    else:
        doc.update(regressor_plots(y_true, pred))
    if importance is not None:
        doc["permutation_importance"] = importance
    return doc


__all__ = [
    "PERMUTATION_PATH",
    "compute_plots",
    "merge_importances",
    "permutation_importance",
]
