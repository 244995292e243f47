"""Content-addressed object store: objects addressed by their BLAKE3 hash, written atomically, verified on read."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import blake3

from seedline.core.errors import CorruptObjectError, StoreError

_HEX = set("0123456789abcdef")
# The rename makes every write atomic (a reader sees the whole object or none), and reads
# verify content against the address. Flushing each object to the disk as well costs a
# lot on some disks (hundreds of ms per model); SEEDLINE_FSYNC=1 turns it on, for stores
# that must survive a power cut, not only a crash of the process.
_FSYNC = os.environ.get("SEEDLINE_FSYNC", "") not in ("", "0")


class ObjectStore:
    """A directory of immutable objects, ``objects/ab/cdef...``, each named by the BLAKE3 of its bytes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, address: str) -> Path:
        if len(address) != 64 or not set(address) <= _HEX:
            raise StoreError(f"{address!r} is not an object address (64 lowercase hex characters)")
        return self.root / address[:2] / address[2:]

    def put(self, data: bytes) -> str:
        """Store bytes and return their address; storing the same bytes twice is a no-op."""
        address = blake3.blake3(data).hexdigest()
        path = self._path(address)
        if path.exists():
            return address
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if _FSYNC:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            # rename is atomic: readers see the whole object or none; racing writers write equal bytes
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return address

    def get(self, address: str) -> bytes:
        """Read an object and check that its bytes still hash to its address."""
        path = self._path(address)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(
                f"object {address} is missing from {self.root}",
                hint="the store was copied without its objects/ folder, or the object was deleted by hand",
            ) from None
        # a big object (a cached step's output) is verified on every core
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if len(data) >= 1 << 20 else 1)
        found = hasher.update(data).hexdigest()
        if found != address:
            raise CorruptObjectError(address, found)
        return data

    def exists(self, address: str) -> bool:
        return self._path(address).exists()

    def __iter__(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if not f.name.startswith("."):
                        yield sub.name + f.name

    def remove(self, address: str) -> bool:
        """Delete an object; only maintenance (cache prune) calls this, never a run."""
        path = self._path(address)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def size(self, address: str) -> int:
        return self._path(address).stat().st_size
