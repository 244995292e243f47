"""The classic Keras ``mnist_cnn.py``, on scikit-learn's bundled 8x8 digits (no download).

As in the original, NumPy is seeded "for reproducibility" and nothing else is: run it twice
with ``python mnist_cnn.py`` and the saved weights differ. Under
``seedline exec mnist_cnn.py --outputs mnist_cnn.keras predictions.npy`` they do not, and
``seedline reproduce RUN`` proves it. Keras runs on ``KERAS_BACKEND`` (TensorFlow when unset).

    python mnist_cnn.py [--epochs N] [--batch-size N] [--out mnist_cnn.keras]
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

np.random.seed(1337)  # the original's only attempt at reproducibility

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--out", default="mnist_cnn.keras")
args = parser.parse_args()

digits = load_digits()
x = (digits.images / 16.0).astype("float32")[..., None]  # 8x8x1, grey levels in [0, 1]
y = keras.utils.to_categorical(digits.target, 10)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)

model = keras.Sequential(
    [
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(
    loss="categorical_crossentropy",
    optimizer=keras.optimizers.Adam(learning_rate=0.005),
    metrics=["accuracy"],
)
model.fit(
    x_train,
    y_train,
    batch_size=args.batch_size,
    epochs=args.epochs,
    verbose=0,
    validation_data=(x_test, y_test),
)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"backend {keras.backend.backend()}: test loss {loss:.4f}, test accuracy {accuracy:.4f}")
model.save(args.out)
np.save("predictions.npy", model.predict(x_test, verbose=0))
