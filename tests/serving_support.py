"""Helpers for the registry, serving, batch and export tests: projects with runs, real server processes."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .conftest import clean_env, make_project

CUSTOM_STEP = '''
"""A user-defined transformer: not on seedline's trusted list, no ONNX converter."""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Identity(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)
'''


def project_with_run(
    root: Path, *, overrides: list[str] | None = None, example: str = "penguins"
) -> tuple[Path, str]:
    """A committed copy of an example with one succeeded run made through the library API."""
    import seedline

    project = make_project(root, example)
    result = seedline.run(project / "seedline.yaml", overrides=overrides or [])
    return project, result.run_id


def add_custom_step(project: Path) -> None:
    """Put a user-defined transformer between the preprocessing and the classifier of the penguins spec."""
    (project / "passthru.py").write_text(CUSTOM_STEP)
    spec = project / "seedline.yaml"
    text = spec.read_text().replace(
        "  - name: clf\n", "  - name: passthru\n    class: passthru.Identity\n  - name: clf\n"
    )
    spec.write_text(text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A ``seedline serve`` process on loopback."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    *,
    timeout: float = 240.0,
    ready: bool = True,
) -> None:
    """Poll until the server answers (ready or merely live); bounded in time."""
    import httpx

    path = "/v2/health/ready" if ready else "/v2/health/live"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the server exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
            )
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(url + path, timeout=2.0)
            if r.status_code == 200 or (not ready and r.status_code in (200, 503)):
                return
            if ready and r.status_code == 503 and r.json().get("status") == "not ready":
                return
        time.sleep(0.2)
    raise AssertionError(
        f"the server did not come up in {timeout}s:\n{log.read_text(errors='replace')}"
    )


@contextlib.contextmanager
def serving(
    project: Path, ref: str, *args: str, env: dict[str, str] | None = None, ready: bool = True
) -> Iterator[Server]:
    """Start ``seedline serve REF`` on a free loopback port, wait for it, stop it afterwards."""
    port = free_port()
    log = project / f".serve-{port}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seedline", "serve", ref, "--port", str(port), *args],
            cwd=project,
            env=env or clean_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(url, proc, log, ready=ready)
        yield Server(proc, url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def load_model(store_root: Path, ref: str) -> tuple[Any, Any]:
    """(ModelSource, fitted model) for ``ref`` in the project at ``store_root``."""
    from seedline.workflow.registration import load_estimator, resolve_source

    source = resolve_source(ref, start=store_root)
    return source, load_estimator(source.model_bytes)


def records(frame: Any) -> list[dict[str, Any]]:
    """Rows of a DataFrame as JSON-ready dicts (NaN -> None)."""
    out: list[dict[str, Any]] = []
    for row in frame.to_dict(orient="records"):
        out.append(
            {
                k: (
                    None
                    if isinstance(v, float) and v != v
                    else v.item()
                    if isinstance(v, np.generic)
                    else v
                )
                for k, v in row.items()
            }
        )
    return out


def npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def object_path(project: Path, address: str) -> Path:
    return project / ".seedline" / "objects" / address[:2] / address[2:]


def tamper(path: Path) -> None:
    """Flip one byte in the middle of a (read-only) stored file."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
