"""Determinism on a GPU: the classic MNIST CNN trained twice on CUDA, with seedline's controls and without.

Self-contained: it needs torch only (NumPy and scikit-learn are used when present: the
images are scikit-learn's 8x8 digits scaled to 28x28 when it is installed, seeded
synthetic digits otherwise), and the seedline repository it lies in for the controls
(``seedline.core.deeplearning.apply_controls``; an identical inline copy is used if that
cannot be imported).

Both modes use the same seeds (``torch.manual_seed``, a seeded generator for the batch
order), so the only difference is the determinism switches:

- ``deterministic``: ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (set before CUDA starts),
  ``torch.use_deterministic_algorithms(True)``, cuDNN deterministic, cuDNN benchmark off;
- ``default``: deterministic algorithms off, cuDNN benchmark on (what a speed-minded script does).

For each mode the network is trained ``--trials`` times (trials of the two modes
interleaved); the table gives the median time, the ratio to ``default`` (the price of
determinism), and whether every trial of the mode ended with bitwise-identical weights
(else the first layer that differed and the largest deviation).

    python benchmarks/gpu_determinism.py                 # on CUDA; under 3 minutes on one GPU
    python benchmarks/gpu_determinism.py --device cpu --quick   # smoke test without a GPU

Without CUDA (and without ``--device cpu``) it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CUBLAS_WORKSPACE_CONFIG = ":4096:8"
# cuBLAS reads it once, when CUDA initialises: before torch touches the GPU
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)

import torch  # noqa: E402  (the variable above must be set first)
from torch import nn  # noqa: E402

SEED = 11


def _controls(deterministic: bool) -> dict[str, Any]:
    """seedline's switches on, or the speed-minded defaults; returns what is in force."""
    if deterministic:
        try:
            sys.path.insert(0, str(REPO / "src"))
            from seedline.core.deeplearning import apply_controls

            return dict(apply_controls(threads=torch.get_num_threads()).get("torch", {}))
        except ImportError:  # NumPy missing: the same switches, inline
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn": {
            "deterministic": torch.backends.cudnn.deterministic,
            "benchmark": torch.backends.cudnn.benchmark,
        },
    }


class ClassicMnistCNN(nn.Module):
    """Keras' mnist_cnn example: conv32, conv64, max-pool, dropout, dense 128, dropout, dense 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.pool = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)
        self.drop2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        x = self.drop1(x).flatten(1)
        return self.fc2(self.drop2(torch.relu(self.fc1(x))))


def _images(samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` 28x28 images: the 8x8 digits scaled up (or seeded synthetic ones), shifted and noised."""
    g = torch.Generator().manual_seed(SEED)
    try:
        from sklearn.datasets import load_digits

        X8, y8 = load_digits(return_X_y=True)
        base = torch.tensor(X8, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
        labels = torch.tensor(y8, dtype=torch.int64)
    except ImportError:
        labels = torch.arange(10).repeat(180)
        protos = torch.rand(10, 1, 8, 8, generator=g)
        base = protos[labels] + 0.1 * torch.randn(len(labels), 1, 8, 8, generator=g)
    big = nn.functional.interpolate(base, size=(28, 28), mode="bilinear", align_corners=False)
    pick = torch.randint(0, len(big), (samples,), generator=g)
    X = big[pick] + 0.05 * torch.randn(samples, 1, 28, 28, generator=g)
    return X, labels[pick]


def _train(
    X: torch.Tensor, y: torch.Tensor, device: torch.device, epochs: int, batch: int
) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(SEED)  # initial weights and dropout
    order = torch.Generator().manual_seed(SEED + 1)  # the batch order, as a seeded DataLoader
    model = ClassicMnistCNN().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=order).to(device)
        for start in range(0, len(X), batch):
            idx = perm[start : start + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    return seconds, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _compare(states: list[dict[str, torch.Tensor]]) -> tuple[bool, str, float]:
    """(all bitwise equal, first differing tensor, largest absolute deviation from the first trial)."""
    first, worst, where = states[0], 0.0, ""
    for other in states[1:]:
        for name, tensor in first.items():
            if not torch.equal(tensor, other[name]):
                where = where or name
                worst = max(worst, float((tensor.double() - other[name].double()).abs().max()))
    return not where, where, worst


def main(argv: list[str] | None = None) -> int:
    """Train, compare, print the table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke test"
    )
    parser.add_argument(
        "--samples", type=int, default=60000, help="training images (default 60000)"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training (default 3)")
    parser.add_argument("--trials", type=int, default=3, help="trainings per mode (default 3)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="2000 images, 1 epoch, 2 trials")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.epochs, args.trials = 2000, 1, 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "CUDA is not available here (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}): nothing to measure.\n"
            "Run this on a machine with an NVIDIA GPU, or pass --device cpu for a smoke test."
        )
        return 0
    if args.trials < 2:
        parser.error("--trials must be at least 2 to compare trainings")

    X, y = _images(args.samples)
    X, y = X.to(device), y.to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {name} | torch {torch.__version__} | CUDA {torch.version.cuda} | "
        f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}"
    )
    print(
        f"classic MNIST CNN, {args.samples} images 28x28, {args.epochs} epochs, batch {args.batch_size}, "
        f"{args.trials} trials per mode, CUBLAS_WORKSPACE_CONFIG={os.environ.get('CUBLAS_WORKSPACE_CONFIG')}\n"
    )
    modes = {"deterministic": True, "default": False}
    # warm-up: CUDA context, cuDNN handles, autotuning for the benchmark mode
    for on in modes.values():
        _controls(on)
        _train(X[: args.batch_size * 2], y[: args.batch_size * 2], device, 1, args.batch_size)
    times: dict[str, list[float]] = {m: [] for m in modes}
    states: dict[str, list[dict[str, torch.Tensor]]] = {m: [] for m in modes}
    in_force: dict[str, dict[str, Any]] = {}
    order = list(modes)
    for trial in range(args.trials):
        for mode in order[trial % 2 :] + order[: trial % 2]:
            in_force[mode] = _controls(modes[mode])
            seconds, state = _train(X, y, device, args.epochs, args.batch_size)
            times[mode].append(seconds)
            states[mode].append(state)
            print(f"  trial {trial + 1} {mode:<13} {seconds:8.3f} s", flush=True)
    _controls(True)

    base = statistics.median(times["default"])
    header = [
        "mode",
        "median s",
        "range s",
        "ratio",
        "weights bitwise",
        "first differing",
        "max |dev|",
    ]
    rows = []
    for mode in modes:
        same, where, worst = _compare(states[mode])
        med = statistics.median(times[mode])
        rows.append(
            [
                mode,
                f"{med:.3f}",
                f"{min(times[mode]):.3f}-{max(times[mode]):.3f}",
                f"{med / base:.2f}",
                "yes" if same else "no",
                where or "-",
                f"{worst:.3g}",
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    det = in_force.get("deterministic", {})
    print(
        f"\ndeterministic mode in force: algorithms={det.get('deterministic_algorithms')}, "
        f"cudnn={det.get('cudnn')}"
    )
    print("ratio = median time / median time of 'default' (above 1: determinism costs time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
