"""seedline's exception family: one class per domain, each carrying structured fields as well as text."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean X?' for the closest candidates, or '' when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not matches:
        return ""
    if len(matches) == 1:
        return f" Did you mean {matches[0]!r}?"
    return " Did you mean one of " + ", ".join(repr(m) for m in matches) + "?"


class SeedlineError(Exception):
    """Base of every error seedline raises on purpose; the CLI prints these without a traceback."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class SpecError(SeedlineError):
    """Raised when a spec is malformed: bad YAML, an unknown key, class or parameter, a bad override."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(where + message, hint=hint)
        self.file = file
        self.line = line
        self.path = path


class DataError(SeedlineError):
    """Raised when input data cannot be found or read, or lacks a column the spec names."""


class UnhashableError(SeedlineError):
    """Raised when a value has no canonical fingerprint (seedline refuses to guess one)."""


class StoreError(SeedlineError):
    """Raised when the .seedline store cannot be opened, read or written."""


class CorruptObjectError(StoreError):
    """Raised when an object's bytes no longer match the address they are stored under."""

    def __init__(self, address: str, found: str) -> None:
        super().__init__(
            f"object {address} is corrupt: its content hashes to {found}",
            hint="restore the file from a backup or re-run the run that produced it; seedline never serves a corrupt object",
        )
        self.address = address
        self.found = found


class RunNotFoundError(StoreError):
    """Raised when a run id or prefix matches no run, or more than one."""

    def __init__(
        self, message: str, *, candidates: list[str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.candidates = candidates or []


class PipelineError(SeedlineError):
    """Raised when fitting or scoring the pipeline fails; the run is recorded as failed (see ``result``)."""

    result: Any = None
