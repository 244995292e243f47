"""A per-user memo of loaded models: pickle's speed for skops files seedline has already loaded.

skops rebuilds a model object by object from its schema: half a second for a 200-tree
forest on the project's 2-core machine, where ``pickle`` takes 7 ms. Pickle cannot be read
from anyone else (loading one runs whatever code it names), so seedline stores, shares and
exports skops only. What it keeps besides, for the user at this machine, is a memo: once a
skops file has been loaded (or a cache entry written), the loaded object is pickled into
the user's cache folder, named by the file's BLAKE3 address and signed with a key only
this user can read. The next load of the same bytes checks the signature and unpickles.

What makes that safe, and its limits:

- The memo is signed with a keyed BLAKE3 over everything in it (header and pickle), with
  a 32-byte key made on first use in the memo folder (mode 0600, in a folder of mode 0700
  owned by the user; anything else about the folder or the key and the memo is not used).
  A memo someone else wrote, or one changed by a single byte, fails the check and is
  ignored *before* anything in it is unpickled: the file is loaded with skops, as without
  the memo. Whoever can read the key already runs code as this user.
- The memo only ever holds an object skops loaded under seedline's trust policy, or one
  seedline fitted itself, and it records the file's type list: a later load checks that
  list exactly as it would have checked the file's (``--trust``, the trusted types), so
  the memo never loads what the file would have been refused for.
- It records Python's version and the version of each package whose classes the pickle
  names; a load under any other version goes through skops (and writes a new memo).
- Only plain skops files get a memo; archives with network weights do not. A cache hit
  that loaded one step of a model file apart keeps that step's memo under a name derived
  from the file's address and the step's name (a BLAKE3 key derivation of its own).
- The folder is bounded (``SEEDLINE_LOAD_MEMO_MAX_MB``, 1024 by default): writing a memo
  removes the least recently used ones beyond it, and only files this module wrote.

``SEEDLINE_LOAD_MEMO`` names the folder (default ``$XDG_CACHE_HOME/seedline/load-memo``,
``~/.cache/...`` without it) or turns the memo off with ``off``.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import io
import json
import logging
import os
import pickle
import re
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

log = logging.getLogger(__name__)

ENV_FOLDER = "SEEDLINE_LOAD_MEMO"
ENV_MAX_MB = "SEEDLINE_LOAD_MEMO_MAX_MB"
DEFAULT_MAX_MB = 1024
MAGIC = b"seedline-load-memo 1\n"
SUFFIX = ".memo"
_KEY_NAME = "key"
_KEY_BYTES = 32
_MAC_BYTES = 32
_PYTHON = ".".join(map(str, sys.version_info[:3]))
_ADDRESS = re.compile(r"[0-9a-f]{64}")
_keys: dict[Path, bytes] = {}


@dataclass(frozen=True)
class Memo:
    """A verified memo: the file's type list (None if not yet known), facts, and the pickle."""

    address: str
    types: list[str] | None
    packages: dict[str, str | None]
    facts: dict[str, str]
    payload: bytes


def address_of(data: bytes) -> str:
    """The BLAKE3 address a memo is named by (the object store's address of the same bytes)."""
    return blake3.blake3(data).hexdigest()


def folder() -> Path | None:
    """The memo folder, or None when ``SEEDLINE_LOAD_MEMO=off`` or no absolute folder can be named."""
    value = os.environ.get(ENV_FOLDER, "")
    if value.strip().lower() == "off":
        return None
    if value:
        chosen = Path(value).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        chosen = Path(base) / "seedline" / "load-memo"
    # no home folder to be found ("~" left as it is), or a relative setting: no memo, rather
    # than one in whatever folder the command runs in
    return chosen if chosen.is_absolute() else None


def _private(st: os.stat_result) -> bool:
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def _key(where: Path, create: bool) -> bytes | None:
    """This user's key, made on first use; None where the folder or key is not private to the user."""
    if not hasattr(os, "getuid") or not hasattr(os, "O_NOFOLLOW"):
        return None  # no owner or symlink checks here (Windows): no memo
    known = _keys.get(where)
    if known is not None:
        return known
    try:
        if create:
            where.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(where)  # a symbolic link is not a directory here
        if not (stat.S_ISDIR(st.st_mode) and _private(st)):
            log.debug("load memo folder %s is not private to this user: not used", where)
            return None
        key = _read_key(where / _KEY_NAME)
        if key is None and create:
            _make_key(where)
            key = _read_key(where / _KEY_NAME)
    except OSError as exc:
        log.debug("load memo key unavailable: %s", exc)
        return None
    if key is not None:
        _keys[where] = key
    return key


def _read_key(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        key = fh.read(_KEY_BYTES + 1)
    if not _private(st) or len(key) != _KEY_BYTES:
        log.debug("load memo key %s is not a private %d-byte file: not used", path, _KEY_BYTES)
        return None
    return key


def _make_key(where: Path) -> None:
    """Write a new key whole, then link it in place: a concurrent process keeps whichever came first."""
    tmp = where / f".{_KEY_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(_KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, where / _KEY_NAME)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _mac(key: bytes, body: bytes | memoryview) -> bytes:
    return blake3.blake3(body, key=key).digest()


def has_memo(address: str) -> bool:
    """Whether a memo of the bytes at ``address`` is on disk (not yet checked: see ``recall``)."""
    where = folder()
    return (
        where is not None
        and _ADDRESS.fullmatch(address) is not None
        and (where / f"{address}{SUFFIX}").is_file()
    )


def recall(address: str) -> Memo | None:
    """The memo of the bytes at ``address``, verified; None when there is none or it fails any check."""
    where = folder()
    if where is None or not _ADDRESS.fullmatch(address):
        return None
    key = _key(where, create=False)
    if key is None:
        return None
    path = where / f"{address}{SUFFIX}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read()
    head = len(MAGIC) + _MAC_BYTES
    if not raw.startswith(MAGIC) or len(raw) < head + 4:
        return None
    view = memoryview(raw)
    if not hmac.compare_digest(bytes(view[len(MAGIC) : head]), _mac(key, view[head:])):
        log.debug("load memo %s fails its signature: ignored", path)
        return None
    size = int.from_bytes(view[head : head + 4], "big")
    try:
        header = json.loads(bytes(view[head + 4 : head + 4 + size]))
    except ValueError:
        return None
    if header.get("address") != address or header.get("python") != _PYTHON:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # least recently used goes first when the folder is full
    return Memo(
        address=address,
        types=header.get("types"),
        packages=header.get("packages", {}),
        facts=header.get("facts", {}),
        payload=bytes(view[head + 4 + size :]),
    )


def revive(memo: Memo) -> Any | None:
    """Unpickle a verified memo; None when a package it names has another version here, or it fails."""
    try:
        for name, version in memo.packages.items():
            if (
                version is not None
                and getattr(importlib.import_module(name), "__version__", None) != version
            ):
                log.debug("load memo %s: %s is not at %s here", memo.address, name, version)
                return None
        return pickle.loads(memo.payload)
    except Exception as exc:  # the memo is only a shortcut: the skops file says the rest
        log.debug("load memo %s does not load: %s", memo.address, exc)
        return None


class _NamingPickler(pickle.Pickler):
    """A pickler that notes the top-level package of every class and function it pickles."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.packages: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        # an instance names its class; a class or a function, pickled by reference, itself
        for module in (type(obj).__module__, getattr(obj, "__module__", None)):
            if isinstance(module, str):
                self.packages.add(module.partition(".")[0])
        return NotImplemented


def remember(
    address: str, obj: Any, types: list[str] | None, facts: dict[str, str] | None = None
) -> None:
    """Write the memo of ``obj``, loaded from (or saved as) the bytes at ``address``. Never raises."""
    where = folder()
    if where is None or not _ADDRESS.fullmatch(address):
        return  # an address is a BLAKE3 hex digest, never a path
    try:
        key = _key(where, create=True)
        if key is None:
            return
        buf = io.BytesIO()
        pickler = _NamingPickler(buf)
        pickler.dump(obj)
        packages = {name: _version(name) for name in sorted(pickler.packages) if name != "builtins"}
        header = json.dumps(
            {
                "address": address,
                "types": types,
                "python": _PYTHON,
                "packages": packages,
                "facts": facts or {},
            },
            sort_keys=True,
        ).encode()
        # written in pieces, the MAC fed the same pieces: a forest's pickle is megabytes,
        # and joining them copied it twice (4 ms of a 23 ms memo for 150 trees)
        parts: list[bytes | memoryview] = [len(header).to_bytes(4, "big") + header, buf.getbuffer()]
        mac = blake3.blake3(key=key)
        for part in parts:
            mac.update(part)
        _write(where, f"{address}{SUFFIX}", [MAGIC + mac.digest(), *parts])
        _trim(where)
    except Exception as exc:  # a model pickle cannot hold, a full disk: no memo, no harm
        log.debug("load memo for %s not written: %s", address, exc)


def _version(name: str) -> str | None:
    module = sys.modules.get(name)
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) else None


def _write(where: Path, name: str, parts: list[bytes | memoryview]) -> None:
    tmp = where / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                fh.write(part)
        os.replace(tmp, where / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def limit_bytes() -> int:
    """The memo folder's bound in bytes (``SEEDLINE_LOAD_MEMO_MAX_MB``)."""
    raw = os.environ.get(ENV_MAX_MB, "")
    try:
        megabytes = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        megabytes = DEFAULT_MAX_MB
    return int(max(megabytes, 0) * 1024 * 1024)


def _trim(where: Path) -> None:
    """Remove the least recently used memos beyond the bound: only files that start as memos do."""
    entries = []
    for entry in os.scandir(where):
        if entry.name.endswith(SUFFIX) and entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            entries.append((st.st_mtime, st.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    bound = limit_bytes()
    for _, size, path in sorted(entries):
        if total <= bound:
            break
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                continue  # not a memo this module wrote: left alone
            os.unlink(path)
            total -= size
