"""Content-addressed object store: objects addressed by their BLAKE3 hash, written atomically, verified on read."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import blake3

from seedline.core.errors import CorruptObjectError, StoreError

_HEX = set("0123456789abcdef")
# The rename makes every write atomic (a reader sees the whole object or none), and reads
# verify content against the address. Flushing each object to the disk as well costs a
# lot on some disks (hundreds of ms per model); SEEDLINE_FSYNC=1 turns it on, for stores
# that must survive a power cut, not only a crash of the process.
_FSYNC = os.environ.get("SEEDLINE_FSYNC", "") not in ("", "0")
# streamed objects (data snapshots, transfers) move through memory this many bytes at a time
CHUNK = 8 << 20
QUARANTINE_DIRNAME = "quarantine"

# called with the number of bytes just copied
BytesDone = Callable[[int], None]


def _no_progress(_n: int) -> None:
    return None


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

    def put_stream(
        self, source: BinaryIO, *, expected: str | None = None, progress: BytesDone | None = None
    ) -> str:
        """Store what ``source`` yields, a chunk at a time, hashing as it goes; returns the address.

        Memory stays bounded whatever the size. With ``expected``, bytes that hash to
        anything else are refused (a transfer that read a corrupt or truncated object).
        """
        done = progress or _no_progress
        if expected is not None and self.exists(expected):
            return expected
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".part")
        try:
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
            with os.fdopen(fd, "wb") as fh:
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                    fh.write(chunk)
                    done(len(chunk))
                if _FSYNC:
                    fh.flush()
                    os.fsync(fh.fileno())
            address = hasher.hexdigest()
            if expected is not None and address != expected:
                raise CorruptObjectError(expected, address)
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

    def put_file(self, path: str | Path, *, progress: BytesDone | None = None) -> str:
        """Store a file's bytes, streamed (a 1 GiB file never sits in memory)."""
        with open(path, "rb") as fh:
            return self.put_stream(fh, progress=progress)

    def open(self, address: str) -> BinaryIO:
        """The object's bytes as a file, unverified: callers that stream must check the hash."""
        path = self._path(address)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise StoreError(f"object {address} is missing from {self.root}") from None

    def copy_to_file(
        self, address: str, target: str | Path, *, progress: BytesDone | None = None
    ) -> None:
        """Write the object to ``target`` atomically, verified against its address on the way."""
        done = progress or _no_progress
        dest = Path(target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
            with self.open(address) as src, os.fdopen(fd, "wb") as fh:
                while chunk := src.read(CHUNK):
                    hasher.update(chunk)
                    fh.write(chunk)
                    done(len(chunk))
            found = hasher.hexdigest()
            if found != address:
                raise CorruptObjectError(address, found)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def verify(self, address: str) -> str:
        """Re-hash the object from disk, streamed; returns the hash its bytes have now."""
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        with self.open(address) as fh:
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
        return str(hasher.hexdigest())

    def quarantine(self, address: str) -> Path:
        """Move an object aside (``quarantine/`` next to ``objects/``), keeping its bytes."""
        path = self._path(address)
        target = self.root.parent / QUARANTINE_DIRNAME / address
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{address}.{os.getpid()}")
        shutil.move(str(path), str(target))
        return target

    def partial_writes(self) -> Iterator[Path]:
        """Temporary files of writes that never finished (the writer was killed)."""
        if not self.root.exists():
            return
        yield from sorted(self.root.glob(".tmp-*.part"))
        yield from sorted(self.root.glob("??/.tmp-*.part"))

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
