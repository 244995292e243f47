"""The classic MNIST CNN of ``cnn.py`` in Keras 3, for ``seedline.keras``: on torch, TensorFlow or JAX.

Nothing here imports a backend: Keras is imported inside ``build_model``, after seedline
has chosen the backend (``execution.keras_backend`` in the spec, else ``KERAS_BACKEND``,
else torch). ``seedline-keras.yaml`` sets the training parameters.
"""

from __future__ import annotations

from typing import Any

from seedline.keras import KerasClassifier

SIDE = 8  # the digits are 8x8 grey levels, given as 64 feature columns


class KerasDigitsCNN(KerasClassifier):
    """conv 3x3 -> ReLU -> max-pool 2x2 -> flatten -> dropout -> dense -> ReLU -> softmax."""

    def build_model(
        self,
        n_features: int,
        n_outputs: int,
        channels: int = 8,
        hidden: int = 32,
        dropout: float = 0.25,
    ) -> Any:
        import keras

        return keras.Sequential(
            [
                keras.Input((n_features,)),
                keras.layers.Reshape((SIDE, SIDE, 1)),
                keras.layers.Conv2D(channels, 3, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(2),
                keras.layers.Flatten(),
                keras.layers.Dropout(dropout),
                keras.layers.Dense(hidden, activation="relu"),
                keras.layers.Dense(n_outputs, activation="softmax"),
            ]
        )
