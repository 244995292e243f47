"""The classic MNIST CNN, scaled down to scikit-learn's bundled 8x8 digits, in PyTorch.

A 3x3 convolution with ReLU, 2x2 max pooling, dropout, a hidden dense layer with ReLU,
and ten outputs. ``TorchDigitsCNN`` trains the PyTorch module through skorch; the same
network in Keras 3 is ``keras_cnn.KerasDigitsCNN`` (a module of its own, so that a Keras
run on TensorFlow or JAX does not import torch). ``seedline.yaml`` sets the training
parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from skorch import NeuralNetClassifier
from torch import nn


SIDE = 8  # the digits are 8x8 grey levels, given as 64 feature columns


class DigitsCNN(nn.Module):
    """conv 3x3 -> ReLU -> max-pool 2x2 -> dropout -> dense -> ReLU -> dense (logits)."""

    def __init__(
        self, channels: int = 8, hidden: int = 32, dropout: float = 0.25, n_classes: int = 10
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(channels * (SIDE // 2) ** 2, hidden)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).reshape(-1, 1, SIDE, SIDE)
        x = self.pool(torch.relu(self.conv(x)))
        x = self.dropout(x.flatten(1))
        return self.out(torch.relu(self.hidden(x)))


class TorchDigitsCNN(NeuralNetClassifier):
    """skorch's classifier with this module, cross-entropy on logits, Adam and shuffled batches."""

    def __init__(
        self,
        module: Any = DigitsCNN,
        *,
        criterion: Any = nn.CrossEntropyLoss,
        optimizer: Any = torch.optim.Adam,
        lr: float = 0.01,
        max_epochs: int = 6,
        batch_size: int = 64,
        train_split: Any = None,
        iterator_train__shuffle: bool = True,
        verbose: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            iterator_train__shuffle=iterator_train__shuffle,
            verbose=verbose,
            **kwargs,
        )
