"""Content-addressed object store: objects addressed by their BLAKE3 hash, written atomically, verified on read."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import blake3

from seedline.core.errors import CorruptObjectError, StoreError

_HEX = set("0123456789abcdef")
# The rename makes every write atomic (a reader sees the whole object or none), and reads
# verify content against the address. Flushing each object to the disk as well costs a
# lot on some disks (hundreds of ms per model); SEEDLINE_FSYNC=1 turns it on, for stores
# that must survive a power cut, not only a crash of the process.
_FSYNC = os.environ.get("SEEDLINE_FSYNC", "") not in ("", "0")
# streamed objects (data snapshots, transfers) move through memory this many bytes at a time
CHUNK = 8 * 1024 * 1024
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class PartialObject:
    """A temporary file a writer left behind when it was killed mid-write (``.tmp-*.part``)."""

    name: str
    size: int
    modified: float


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
        found = blake3.blake3(data).hexdigest()
        if found != address:
            raise CorruptObjectError(address, found)
        return data

    def put_stream(self, stream: IO[bytes]) -> str:
        """Store what ``stream`` yields, a chunk at a time, hashing as it goes; returns the address.

        Memory stays bounded whatever the size: a 1 GiB data file never sits in memory.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".part")
        try:
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
            with os.fdopen(fd, "wb") as fh:
                while chunk := stream.read(CHUNK):
                    hasher.update(chunk)
                    fh.write(chunk)
                if _FSYNC:
                    fh.flush()
                    os.fsync(fh.fileno())
            address = str(hasher.hexdigest())
            path = self._path(address)
            if path.exists():
                Path(tmp).unlink()
                return address
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return address

    def put_file(self, path: str | Path) -> str:
        """Store a file's bytes, streamed, and return their address."""
        with open(path, "rb") as fh:
            return self.put_stream(fh)

    def open(self, address: str) -> IO[bytes]:
        """A binary stream of the object's stored bytes, *unverified*: use iter_chunks or get_file to verify."""
        try:
            return self._path(address).open("rb")
        except FileNotFoundError:
            raise StoreError(f"object {address} is missing from {self.root}") from None

    def iter_chunks(self, address: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The object's bytes in chunks; raises CorruptObjectError after the last chunk if they do not match."""
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        with self.open(address) as fh:
            while chunk := fh.read(chunk_size):
                h.update(chunk)
                yield chunk
        found = h.hexdigest()
        if found != address:
            raise CorruptObjectError(address, found)

    def get_file(self, address: str, dest: str | Path) -> Path:
        """Write a verified copy of the object to ``dest`` atomically (temporary name, then rename)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_chunks(address):
                    out.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    def verify(self, address: str) -> int:
        """Re-hash a stored object; returns its size, raises CorruptObjectError when it does not match."""
        return sum(len(c) for c in self.iter_chunks(address))

    def quarantine(self, address: str) -> str:
        """Move an object out of the store (kept, never deleted) and return where it went."""
        dest_dir = self.root / QUARANTINE
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / address
        if dest.exists():
            dest = dest_dir / f"{address}.{time.time_ns()}"
        os.replace(self._path(address), dest)
        return str(dest)

    def partials(self) -> Iterator[PartialObject]:
        """Temporary files left by writers that were killed mid-write."""
        if not self.root.exists():
            return
        for d in (self.root, *(p for p in sorted(self.root.iterdir()) if p.is_dir())):
            for f in sorted(d.glob(".tmp-*.part")):
                with contextlib.suppress(FileNotFoundError):
                    st = f.stat()
                    yield PartialObject(str(f.relative_to(self.root)), st.st_size, st.st_mtime)

    def remove_partial(self, name: str) -> bool:
        """Delete one leftover temporary file named by :meth:`partials`."""
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents or not path.name.startswith(".tmp-"):
            raise StoreError(f"{name!r} is not a partial object of {self.root}")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def modified(self, address: str) -> float:
        """When the object was written (seconds since the epoch)."""
        try:
            return self._path(address).stat().st_mtime
        except FileNotFoundError:
            raise StoreError(f"object {address} is missing from {self.root}") from None

    def exists(self, address: str) -> bool:
        return self._path(address).exists()

    def __iter__(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2 and set(sub.name) <= _HEX:
                for f in sorted(sub.iterdir()):
                    if len(f.name) == 62 and set(f.name) <= _HEX:
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
