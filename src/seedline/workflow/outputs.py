"""Where exports and batch predictions may write, and how they replace what is already there.

seedline never deletes data it did not write. ``--force`` therefore replaces only:

- for an export folder (mlflow, bundle): a folder seedline exported, recognised by its
  marker file ``.seedline-export`` (or, for exports of earlier versions, ``seedline-bundle.json``
  or the MLflow loader module seedline ships);
- for an export file (onnx): an ONNX model whose metadata names a seedline run;
- for batch predictions: a regular file (never a folder).

A folder is replaced atomically: the new one is built in a sibling temporary folder and
swapped in with ``renameat2(RENAME_EXCHANGE)`` (Linux), so the target path never stops
existing. Where the exchange is not available (another OS, a file system without it), the
old folder is renamed aside, the new one renamed in, and the old one removed; a crash
between those two renames leaves the target missing and the old export at
``.NAME.old-XXXXXXXX`` beside it (never deleted).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seedline.core.errors import SeedlineError

EXPORT_MARKER = ".seedline-export"
_OLD_MARKERS = ("seedline-bundle.json", "code/seedline_mlflow_pyfunc.py")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class OutputPathError(SeedlineError):
    """Raised when an output path is taken by something seedline may not replace, or is not writable as asked."""


def exported_by_seedline(path: Path) -> bool:
    """Whether ``path`` is something seedline exported (a folder with its marker, or an ONNX model it wrote)."""
    if path.is_dir():
        return any((path / m).is_file() for m in (EXPORT_MARKER, *_OLD_MARKERS))
    if path.is_file():
        try:
            import onnx

            model = onnx.load(str(path), load_external_data=False)
        except Exception:  # not an ONNX model, or onnx is not installed: not ours
            return False
        return any(p.key == "seedline_run" for p in model.metadata_props)
    return False


def _resolved(target: Path) -> Path:
    resolved = Path(os.path.abspath(target))
    if resolved == Path(resolved.anchor) or resolved == Path.cwd():
        raise OutputPathError(
            f"cannot write an export to {str(target)!r}: it is "
            + ("the root folder" if resolved == Path(resolved.anchor) else "the current folder"),
            hint="name a new folder, e.g. -o my-model-bundle",
        )
    return resolved


def check_export_target(target: Path, *, force: bool, folder: bool) -> Path:
    """The absolute target path, after checking that an export may write there.

    Raises OutputPathError when the target exists and ``--force`` was not given, or when it
    exists but is not an export of seedline's (which ``--force`` never replaces).
    """
    path = _resolved(target)
    if not (path.exists() or path.is_symlink()):
        return path
    what = "folder" if path.is_dir() else "file"
    if not force:
        raise OutputPathError(
            f"{target} already exists", hint="choose another -o path, or pass --force"
        )
    if path.is_symlink() or not exported_by_seedline(path) or path.is_dir() != folder:
        raise OutputPathError(
            f"{target} exists and is a {what} that seedline did not export there: --force only replaces "
            f"seedline's own exports (a folder with {EXPORT_MARKER}, or an ONNX model it wrote)",
            hint="choose another -o path, or move it away yourself if you mean to replace it",
        )
    return path


def check_prediction_target(target: Path, *, force: bool) -> Path:
    """The absolute path for a batch prediction output: never a folder; an existing file needs ``--force``."""
    path = Path(os.path.abspath(target))
    if path.is_dir():
        raise OutputPathError(
            f"-o {target} is a folder; predictions are written to a file",
            hint=f"name a file, e.g. -o {Path(target) / 'predictions.csv'}",
        )
    if path.exists() and not force:
        raise OutputPathError(
            f"{target} already exists", hint="choose another -o path, or pass --force to replace it"
        )
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{target} exists and is not a regular file")
    return path


def write_marker(folder: Path, info: dict[str, Any]) -> None:
    """The marker that lets a later ``--force`` recognise this folder as seedline's export."""
    (folder / EXPORT_MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _libc_exchange() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where that is not available."""
    fn = _libc_exchange()
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def swap_in(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``, replacing what is there; the target path never goes missing where the OS allows it."""
    if not (target.exists() or target.is_symlink()):
        os.replace(new, target)
        return
    if new.is_file() and target.is_file():
        os.replace(new, target)  # a file over a file is atomic everywhere
        return
    if exchange(new, target):
        shutil.rmtree(new) if new.is_dir() else new.unlink()  # ``new`` now holds the old export
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    os.replace(new, target)  # a crash just before this line leaves the old export at ``old``
    shutil.rmtree(old) if old.is_dir() else old.unlink()


@contextlib.contextmanager
def staged_folder(target: Path, *, force: bool, marker: dict[str, Any]) -> Iterator[Path]:
    """A temporary folder beside ``target``, marked as seedline's, swapped in when the block succeeds."""
    path = check_export_target(target, force=force, folder=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part"))
    try:
        yield tmp
        write_marker(tmp, marker)
        swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_file_atomic(target: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to a temporary file beside ``target``, then rename it over the target."""
    path = check_export_target(target, force=force, folder=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "EXPORT_MARKER",
    "OutputPathError",
    "check_export_target",
    "check_prediction_target",
    "exported_by_seedline",
    "staged_folder",
    "swap_in",
    "write_file_atomic",
]
