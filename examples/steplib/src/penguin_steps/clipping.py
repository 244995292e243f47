"""Outlier clipping learned on the training rows, as a scikit-learn transformer."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class ClipStd(TransformerMixin, BaseEstimator):
    """Clips every column to its training mean plus or minus ``k`` standard deviations."""

    def __init__(self, k: float = 3.0) -> None:
        self.k = k

    def fit(self, X: Any, y: Any = None) -> ClipStd:
        X = validate_data(self, X, dtype=np.float64)
        if self.k <= 0:
            raise ValueError(f"ClipStd needs k > 0, got {self.k}")
        mean, std = X.mean(axis=0), X.std(axis=0)
        self.low_, self.high_ = mean - self.k * std, mean + self.k * std
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.clip(X, self.low_, self.high_)
