"""Feature steps shared by the penguin models: use them by import path in any spec."""

from penguin_steps.clipping import ClipStd

__all__ = ["ClipStd"]
