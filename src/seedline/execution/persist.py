"""Saving and loading fitted models without pickle.

Every fitted object seedline stores (a run's pipeline, a cached step) goes through
``dump_model``/``load_model``. scikit-learn objects are written with skops. Objects that
seedline itself wrote and verified by content address are loaded trusting the types they
contain (``trusted_own``); anything coming from outside is loaded with an explicit trusted
type list and refused otherwise (serving, ``--trust``).
"""

from __future__ import annotations

from typing import Any


def dump_model(model: Any) -> bytes:
    """Serialise a fitted estimator or pipeline (skops format, never pickle)."""
    import skops.io as sio

    return bytes(sio.dumps(model))


def untrusted_types(data: bytes) -> list[str]:
    """Types in a saved model that skops does not trust by default."""
    import skops.io as sio

    return list(sio.get_untrusted_types(data=data))


def load_model(data: bytes, *, trusted: list[str] | None = None, trusted_own: bool = False) -> Any:
    """Load a model saved by ``dump_model``.

    ``trusted_own=True`` is for objects seedline wrote itself and read back from its
    content-addressed store (their bytes are verified against their address on read).
    """
    import skops.io as sio

    types = untrusted_types(data) if trusted_own else list(trusted or [])
    return sio.loads(data, trusted=types)
