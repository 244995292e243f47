"""Keras 3 models as scikit-learn estimators, seeded from ``random_state``.

Subclass ``KerasClassifier`` (or ``KerasRegressor``) in a module of your project and
override ``build_model``; the spec names your class and sets the training parameters:

.. code-block:: python

    class DigitsCNN(KerasClassifier):
        def build_model(self, n_features, n_outputs, filters=8):
            import keras
            return keras.Sequential([keras.Input((n_features,)), ..., keras.layers.Dense(n_outputs, activation="softmax")])

Why a wrapper of our own and not scikeras: see docs/deep-learning.md. In short, it is
small, its ``random_state`` reaches every generator Keras uses on each backend
(``keras.utils.set_random_seed``: Python, NumPy, torch or TensorFlow, and Keras' own seed
generator, which JAX draws its keys from), it leaves the caller's Python, NumPy and torch
generators as it found them, and its fitted state (weights by layer) is what seedline
fingerprints and saves as safetensors.

The backend is chosen before Keras is imported (Keras reads it once): the spec's
``execution.keras_backend``, else ``KERAS_BACKEND``, else ``torch``
(``seedline.core.deeplearning.keras_backend``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


def _keras() -> Any:
    if "keras" not in sys.modules:
        from seedline.core.deeplearning import keras_backend

        # Keras reads the variable once, at import
        os.environ["KERAS_BACKEND"] = keras_backend()
    import keras

    return keras


class KerasEstimator(BaseEstimator):
    """Shared fit/predict of ``KerasClassifier`` and ``KerasRegressor``; override ``build_model``.

    Parameters are stored as given and checked when ``fit`` starts, as scikit-learn does.
    """

    def __init__(
        self,
        model_params: dict[str, Any] | None = None,
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        loss: str | None = None,
        epochs: int = 5,
        batch_size: int = 32,
        shuffle: bool = True,
        random_state: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.model_params = model_params
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose

    # -- to override ----------------------------------------------------------------------------
    def build_model(self, n_features: int, n_outputs: int, **model_params: Any) -> Any:
        """Return an (uncompiled) ``keras.Model`` taking ``n_features`` inputs; ``model_params`` come from the spec."""
        raise NotImplementedError(
            f"{type(self).__name__} must override build_model(n_features, n_outputs, **model_params)"
        )

    # -- internals ----------------------------------------------------------------------------
    _default_loss = "mean_squared_error"

    def _check_params(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"The '{name}' parameter of {type(self).__name__} must be an int in the range [1, inf). Got {value!r} instead."
                )
        if self.random_state is not None and (
            isinstance(self.random_state, bool) or not isinstance(self.random_state, int)
        ):
            raise ValueError(
                f"The 'random_state' parameter of {type(self).__name__} must be an int or None. Got {self.random_state!r} instead."
            )

    @staticmethod
    def _inputs(X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        return arr

    def _compiled(self, n_features: int, n_outputs: int) -> Any:
        keras = _keras()
        model = self.build_model(n_features, n_outputs, **(self.model_params or {}))
        optimizer = keras.optimizers.get(
            {"class_name": self.optimizer, "config": {"learning_rate": self.learning_rate}}
        )
        model.compile(optimizer=optimizer, loss=self.loss or self._default_loss)
        return model

    def _targets(self, y: Any) -> tuple[np.ndarray, int]:
        arr = np.asarray(y, dtype=np.float32)
        return arr, 1 if arr.ndim == 1 else int(arr.shape[1])

    def fit(self, X: Any, y: Any) -> KerasEstimator:
        """Build the model, seed Keras from ``random_state`` and train; global generators are left as found."""
        from seedline.core.deeplearning import preserved_rng

        self._check_params()
        keras = _keras()
        Xa = self._inputs(X)
        ya, n_outputs = self._targets(y)
        with preserved_rng():
            if self.random_state is not None:
                # Python, NumPy, torch and Keras' own seed generator (layer seeds left unset draw from it)
                keras.utils.set_random_seed(int(self.random_state))
            model = self._compiled(Xa.shape[1], n_outputs)
            history = model.fit(
                Xa,
                ya,
                epochs=self.epochs,
                batch_size=self.batch_size,
                shuffle=self.shuffle,
                verbose=self.verbose,
            )
        self.model_ = model
        self.n_features_in_ = int(Xa.shape[1])
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        return self

    def _restore_fitted(
        self,
        *,
        n_features: int,
        classes: np.ndarray | None,
        history: dict[str, list[float]],
        layer_names: list[str],
        weights: list[list[np.ndarray]],
    ) -> None:
        """Rebuild the fitted model from saved weights (used by seedline's model loader)."""
        from seedline.core.deeplearning import DeepLearningError, keras_layers, preserved_rng

        if classes is not None:
            self.classes_ = classes
        n_outputs = len(classes) if classes is not None else self._saved_outputs(weights)
        with preserved_rng():
            model = self._compiled(n_features, n_outputs)
        built = [name for name, _ in keras_layers(model)]
        if built != layer_names:
            raise DeepLearningError(
                f"the saved weights of {type(self).__name__} are for layers {layer_names}, but build_model now makes {built}",
                hint="the model's code changed since it was saved; load it with the code of the run that made it",
            )
        for layer, ws in zip(model.layers, weights, strict=True):
            if ws:
                layer.set_weights(ws)
        self.model_ = model
        self.n_features_in_ = n_features
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.items()}

    @staticmethod
    def _saved_outputs(weights: list[list[np.ndarray]]) -> int:
        last = [ws for ws in weights if ws]
        return int(last[-1][-1].shape[-1]) if last else 1

    def _raw_predict(self, X: Any) -> np.ndarray:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet.")
        out = self.model_.predict(self._inputs(X), batch_size=self.batch_size, verbose=0)
        return np.asarray(out)


class KerasClassifier(ClassifierMixin, KerasEstimator):
    """A Keras classifier: ``build_model`` ends in a softmax over ``n_outputs`` classes."""

    _default_loss = "sparse_categorical_crossentropy"

    def _targets(self, y: Any) -> tuple[np.ndarray, int]:
        labels = np.asarray(y)
        self.classes_ = np.unique(labels)
        return np.searchsorted(self.classes_, labels).astype(np.int64), len(self.classes_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        return self._raw_predict(X).astype(np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        return np.asarray(self.classes_[np.argmax(self._raw_predict(X), axis=1)])


class KerasRegressor(RegressorMixin, KerasEstimator):
    """A Keras regressor: ``build_model`` ends in ``n_outputs`` linear units."""

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values (one column per target when there are several)."""
        out = self._raw_predict(X).astype(np.float64)
        return out.ravel() if out.ndim == 2 and out.shape[1] == 1 else out


__all__ = ["KerasClassifier", "KerasEstimator", "KerasRegressor"]
