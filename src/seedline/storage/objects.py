"""Content-addressed object stores: objects named by the BLAKE3 of their bytes, written atomically, verified on read.

:class:`ObjectStore` is the interface every backend implements; :func:`open_object_store`
picks the backend from a URL. Two ship:

- :class:`LocalObjectStore` (a plain path or ``file://``): ``objects/ab/cdef...`` on a
  local disk, written to a temporary name and renamed, so a reader sees the whole object
  or none;
- :class:`FsspecObjectStore` (any other fsspec URL, e.g. ``s3://bucket/prefix`` through
  s3fs): ``prefix/ab/cdef...``; it relies on the object store's whole-object writes (an S3
  PUT or completed multipart upload is visible whole or not at all).

Both read in bounded memory when asked to stream (``put_file``, ``iter_chunks``,
``get_file``, ``verify``), so gigabyte data snapshots never sit in memory.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import tempfile
import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import blake3

from seedline.core.errors import CorruptObjectError, StoreError
from seedline.storage.urls import redact_text, redact_url

_HEX = set("0123456789abcdef")


def _address_of(rel: str) -> str | None:
    """The address whose object lives at ``rel`` (``ab/cdef...``, relative to the store), or None."""
    head, sep, tail = rel.partition("/")
    address = head + tail
    if sep and len(head) == 2 and "/" not in tail and len(address) == 64 and set(address) <= _HEX:
        return address
    return None


CHUNK = 8 * 1024 * 1024
# A large object moves to and from S3 in parts of PART bytes, CONCURRENCY of them at once
# (a multipart upload, ranged GETs): one request at a time leaves the network and the
# server idle while this process reads and hashes. Memory stays bounded by
# (CONCURRENCY + 1) x PART per object being copied. ``max_concurrency`` in the store's
# options (s3fs's own setting) changes the number of parts at once.
PART = 16 * 1024 * 1024
CONCURRENCY = 4
# S3 allows at most 10,000 parts in an upload; parts grow beyond this many so that any
# object (up to S3's 5 TiB) fits
_PARTS_BEFORE_GROWTH = 1000
QUARANTINE = "quarantine"
# The rename makes every local write atomic (a reader sees the whole object or none), and
# reads verify content against the address. Flushing each object to the disk as well costs
# a lot on some disks (hundreds of ms per model); SEEDLINE_FSYNC=1 turns it on, for stores
# that must survive a power cut, not only a crash of the process.
_FSYNC = os.environ.get("SEEDLINE_FSYNC", "") not in ("", "0")


def check_address(address: str) -> str:
    """The address itself, or a StoreError when it is not 64 lowercase hex characters."""
    if len(address) != 64 or not set(address) <= _HEX:
        raise StoreError(f"{address!r} is not an object address (64 lowercase hex characters)")
    return address


def hash_file(path: str | Path, chunk_size: int = CHUNK) -> tuple[str, int]:
    """BLAKE3 address and size of a file, read in chunks."""
    h = blake3.blake3()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def fsspec_options(protocol: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Filesystem options as fsspec takes them: an S3 ``endpoint_url`` goes to botocore's client.

    Used by the object store and by data sources read by URL, so ``endpoint_url`` means
    the same in ``[store.objects_options]`` and ``[data.s3]``.
    """
    opts = dict(options)
    if protocol in ("s3", "s3a"):
        endpoint = opts.pop("endpoint_url", None)
        if endpoint:
            client = dict(opts.get("client_kwargs") or {})
            client["endpoint_url"] = endpoint
            opts["client_kwargs"] = client
    return opts


def _crc32(data: bytes) -> str:
    """The CRC32 of ``data`` as S3's ``x-amz-checksum-crc32`` header carries it (base64, big-endian).

    The server checks each part against it, as botocore's own checksum would have it do; given
    whole, it spares botocore's default of re-framing the body as ``aws-chunked`` with a
    trailing checksum computed as it streams, which cost a fifth of a 256 MiB upload's time.
    """
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")


def _spool(fd: int, chunks: Iterable[bytes]) -> str:
    """Write ``chunks`` to the open temporary file ``fd`` (synced when asked), hashing them; the hex digest."""
    h = blake3.blake3()
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            h.update(chunk)
            out.write(chunk)
        if _FSYNC:
            out.flush()
            os.fsync(out.fileno())
    return str(h.hexdigest())


@dataclass(frozen=True)
class PartialObject:
    """A temporary file a writer left behind when it was killed mid-write (``.tmp-*.part``)."""

    name: str
    size: int
    modified: float


class ObjectStore(ABC):
    """The interface of a content-addressed object store; every backend passes tests/test_store_conformance.py."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the objects live, with any password redacted (safe to show)."""

    # -- writing ---------------------------------------------------------------------------
    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store bytes and return their address; storing the same bytes twice is a no-op."""

    @abstractmethod
    def put_file(self, path: str | Path) -> str:
        """Store a file's bytes, streaming (memory stays bounded), and return their address."""

    def put_stream(self, stream: IO[bytes]) -> str:
        """Store everything read from a binary stream; spooled to a local temporary file first."""
        with tempfile.NamedTemporaryFile(prefix=".seedline-spool-", suffix=".part") as tmp:
            shutil.copyfileobj(stream, tmp, CHUNK)
            tmp.flush()
            return self.put_file(tmp.name)

    # -- reading ---------------------------------------------------------------------------
    @abstractmethod
    def open(self, address: str) -> IO[bytes]:
        """A binary stream of the object's stored bytes, *unverified*: use iter_chunks or get_file to verify."""

    def get(self, address: str) -> bytes:
        """Read an object and check that its bytes still hash to its address."""
        with self.open(address) as fh:
            data = fh.read()
        found = blake3.blake3(data).hexdigest()
        if found != address:
            raise CorruptObjectError(address, found)
        return data

    def iter_stored(self, address: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The object's stored bytes in chunks, *unverified*: for a consumer that hashes them itself.

        ``put_verified`` does: a copy between stores reads with this and is hashed once, by
        the writer, which publishes nothing unless the bytes hash to the address.
        """
        with self.open(address) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def iter_chunks(self, address: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The object's bytes in chunks; raises CorruptObjectError after the last chunk if they do not match.

        A consumer must discard what it received when the error comes (``get_file`` does).
        """
        h = blake3.blake3()
        for chunk in self.iter_stored(address, chunk_size):
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

    def put_verified(self, chunks: Iterable[bytes], address: str) -> None:
        """Store bytes that must hash to ``address`` (a copy from another store).

        ``chunks`` may raise (``iter_chunks`` of a corrupt source does, after its last chunk);
        then, as on a mismatch, nothing is published under any name.
        """
        if self.exists(address):
            return
        got = self.put_stream(_ChunkReader(iter(chunks)))  # type: ignore[arg-type]
        if got != address:
            # never remove ``got``: equal bytes may already be stored there for someone else
            raise CorruptObjectError(address, got)

    def modified(self, address: str) -> float:
        """When the object was written, in seconds since the epoch (``gc`` keeps young objects)."""
        raise NotImplementedError(f"{type(self).__name__} does not report modification times")

    @abstractmethod
    def exists(self, address: str) -> bool: ...

    @abstractmethod
    def size(self, address: str) -> int: ...

    @abstractmethod
    def __iter__(self) -> Iterator[str]:
        """Every stored address (quarantined objects and partial writes excluded)."""

    def addresses(self) -> Iterator[str]:
        return iter(self)

    # -- maintenance (fsck, gc, cache prune; never a run) -----------------------------------
    @abstractmethod
    def remove(self, address: str) -> bool:
        """Delete an object; returns False when it was not there."""

    @abstractmethod
    def quarantine(self, address: str) -> str:
        """Move an object out of the store (kept, never deleted) and return where it went."""

    @abstractmethod
    def quarantined(self) -> Iterator[str]:
        """Names of the quarantined objects."""

    def partials(self) -> Iterator[PartialObject]:
        """Temporary files left by writers that were killed mid-write."""
        return iter(())

    def remove_partial(self, name: str) -> bool:
        """Delete one leftover temporary file named by :meth:`partials`."""
        return False

    def _missing(self, address: str) -> StoreError:
        return StoreError(
            f"object {address} is missing from {self.url}",
            hint="the store was copied without its objects/ folder, or the object was deleted by hand",
        )


class _ChunkReader:
    """An iterator of byte chunks as a readable binary stream."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buffer = chunks, b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buffer) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        if n < 0:
            out, self.buffer = self.buffer, b""
        else:
            out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


class LocalObjectStore(ObjectStore):
    """A directory of immutable objects, ``objects/ab/cdef...``, each named by the BLAKE3 of its bytes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def url(self) -> str:
        return str(self.root)

    def _path(self, address: str) -> Path:
        check_address(address)
        return self.root / address[:2] / address[2:]

    def _write(self, path: Path, fill: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fill(fh)
                if _FSYNC:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            # rename is atomic: readers see the whole object or none; racing writers write equal bytes
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, data: bytes) -> str:
        address = blake3.blake3(data).hexdigest()
        path = self._path(address)
        if not path.exists():
            self._write(path, lambda fh: fh.write(data))
        return address

    def put_file(self, path: str | Path) -> str:
        return self.put_stream_hashed(lambda: open(path, "rb"))

    def put_stream(self, stream: IO[bytes]) -> str:
        return self.put_stream_hashed(lambda: contextlib.nullcontext(stream))

    def put_stream_hashed(self, source: Any) -> str:
        """Copy into a temporary file in the store while hashing, then rename to the address."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".part")
        try:
            with source() as src:
                address = _spool(fd, iter(lambda: src.read(CHUNK), b""))
            final = self._path(address)
            if final.exists():
                Path(tmp).unlink()
                return address
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return address

    def put_verified(self, chunks: Iterable[bytes], address: str) -> None:
        # the chunks straight into a temporary file, hashed on the way (no stream adapter
        # re-slicing them), renamed only when they hash to the address
        final = self._path(address)
        if final.exists():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-", suffix=".part")
        try:
            found = _spool(fd, chunks)
            if found != address:
                raise CorruptObjectError(address, found)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, address: str) -> IO[bytes]:
        try:
            return open(self._path(address), "rb")
        except FileNotFoundError:
            raise self._missing(address) from None

    def get(self, address: str) -> bytes:
        try:
            data = self._path(address).read_bytes()
        except FileNotFoundError:
            raise self._missing(address) from None
        # a big object (a cached step's output) is verified on every core
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if len(data) >= 1 << 20 else 1)
        found = hasher.update(data).hexdigest()
        if found != address:
            raise CorruptObjectError(address, found)
        return data

    def exists(self, address: str) -> bool:
        return self._path(address).exists()

    def modified(self, address: str) -> float:
        try:
            return self._path(address).stat().st_mtime
        except FileNotFoundError:
            raise self._missing(address) from None

    def size(self, address: str) -> int:
        try:
            return self._path(address).stat().st_size
        except FileNotFoundError:
            raise self._missing(address) from None

    def __iter__(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if not f.name.startswith("."):
                        yield sub.name + f.name

    def remove(self, address: str) -> bool:
        path = self._path(address)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def quarantine(self, address: str) -> str:
        src = self._path(address)
        dest_dir = self.root / QUARANTINE
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / address
        if dest.exists():
            dest = dest_dir / f"{address}.{time.time_ns()}"
        try:
            os.replace(src, dest)
        except FileNotFoundError:
            raise self._missing(address) from None
        return str(dest)

    def quarantined(self) -> Iterator[str]:
        q = self.root / QUARANTINE
        if q.is_dir():
            yield from sorted(p.name for p in q.iterdir())

    def partials(self) -> Iterator[PartialObject]:
        if not self.root.exists():
            return
        for d in (self.root, *(p for p in sorted(self.root.iterdir()) if p.is_dir())):
            for f in sorted(d.glob(".tmp-*.part")):
                with contextlib.suppress(FileNotFoundError):
                    st = f.stat()
                    yield PartialObject(str(f.relative_to(self.root)), st.st_size, st.st_mtime)

    def remove_partial(self, name: str) -> bool:
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents or not path.name.startswith(".tmp-"):
            raise StoreError(f"{name!r} is not a partial object of {self.url}")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True


class FsspecObjectStore(ObjectStore):
    """Objects under any fsspec URL (``s3://bucket/prefix``...), laid out as ``prefix/ab/cdef...``.

    Credentials come from where the filesystem's library looks for them (for S3: the
    ``AWS_*`` environment variables, ``~/.aws/config``, an instance role); ``options`` are
    passed to the filesystem (e.g. ``endpoint_url`` for an S3-compatible server).
    """

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        import fsspec

        self._raw_url = url.rstrip("/")
        opts = dict(options or {})
        protocol = url.split("://", 1)[0]
        if protocol in ("s3", "s3a"):
            # several processes write one store: never answer from a stale listing
            opts.setdefault("use_listings_cache", False)
            opts.setdefault("skip_instance_cache", True)
            opts = fsspec_options(protocol, opts)
        try:
            self.fs, self.prefix = fsspec.core.url_to_fs(self._raw_url, **opts)
        except (ImportError, ValueError) as exc:
            raise StoreError(
                f"cannot open the object store {self.url}: {redact_text(str(exc), url)}",
                hint="an s3:// URL needs the s3fs package (pip install s3fs); other schemes need their fsspec driver",
            ) from None
        self.prefix = self.prefix.rstrip("/")
        # S3 (s3fs) moves large objects in parts, several at once; other filesystems stream
        self.multipart = callable(getattr(self.fs, "call_s3", None))
        self.part_size = PART
        self.concurrency = max(1, int(opts.get("max_concurrency") or CONCURRENCY))

    @property
    def url(self) -> str:
        return redact_url(self._raw_url)

    def _key(self, address: str) -> str:
        check_address(address)
        return f"{self.prefix}/{address[:2]}/{address[2:]}"

    def _wrap(self, exc: Exception, what: str) -> StoreError:
        return StoreError(
            f"cannot {what} in the object store {self.url}: {type(exc).__name__}: {redact_text(str(exc), self._raw_url)}",
            hint="check that the object store is reachable and that your credentials allow it",
        )

    def put(self, data: bytes) -> str:
        address = blake3.blake3(data).hexdigest()
        if self.exists(address):
            return address
        try:
            # one PUT: the object becomes visible whole, or not at all
            self.fs.pipe_file(self._key(address), data)
        except OSError as exc:
            raise self._wrap(exc, f"write object {address}") from exc
        return address

    def put_file(self, path: str | Path) -> str:
        address, _size = hash_file(path)
        if self.exists(address):
            return address
        if self.multipart:
            try:
                found = self._upload(
                    _file_chunks(path, self.part_size), self._key(address), address
                )
            except OSError as exc:
                raise self._wrap(exc, f"write object {address}") from exc
            if found != address:
                # the file changed while it was read: nothing was published under any name
                raise StoreError(
                    f"{path} changed while it was being stored",
                    hint="store a file that no process is writing",
                )
            return address
        h = blake3.blake3()
        key = self._key(address)
        try:
            out = self.fs.open(key, "wb")
            try:
                with open(path, "rb") as src:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != address:
                    # the file changed while it was read: never publish bytes under a wrong name
                    discard = getattr(out, "discard", None)
                    if discard is not None:
                        discard()
                    else:
                        out.close()
                        self.fs.rm_file(key)
                    raise StoreError(
                        f"{path} changed while it was being stored",
                        hint="store a file that no process is writing",
                    )
                out.close()
            except BaseException:
                discard = getattr(out, "discard", None)
                if discard is not None and not out.closed:
                    with contextlib.suppress(Exception):
                        discard()
                raise
        except OSError as exc:
            raise self._wrap(exc, f"write object {address}") from exc
        return address

    # -- S3: parts, several at once ----------------------------------------------------------
    def _upload(self, chunks: Iterable[bytes], key: str, expected: str) -> str:
        """Upload ``chunks`` to ``key`` if they hash to ``expected``; returns the hash of what was read.

        One PUT for an object of one part; else a multipart upload whose parts go up
        ``concurrency`` at a time while the next part is read and hashed. The upload is
        completed (the object becomes visible, whole) only when the hash matches; a
        mismatch or an error aborts it, so nothing is published under any name. A process
        killed mid-upload leaves an incomplete upload: invisible, listed by ``partials``.
        """
        h = blake3.blake3()

        def hashed() -> Iterator[bytes]:
            for chunk in chunks:
                h.update(chunk)
                yield chunk

        bucket, object_key, _ = self.fs.split_path(key)
        parts = _regroup(hashed(), self.part_size)
        first = next(parts, b"")
        upload_id: str | None = None
        done: list[dict[str, Any]] = []
        inflight: deque[Future[dict[str, Any]]] = deque()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="seedline-upload")
        try:
            for number, data in enumerate(parts, 2):
                if upload_id is None:  # a second part: this object goes up in parts
                    upload_id = self.fs.call_s3(
                        "create_multipart_upload", Bucket=bucket, Key=object_key
                    )["UploadId"]
                    inflight.append(
                        pool.submit(self._upload_part, bucket, object_key, upload_id, 1, first)
                    )
                    first = b""  # the pool holds it now
                if len(inflight) >= self.concurrency:
                    done.append(inflight.popleft().result())
                inflight.append(
                    pool.submit(self._upload_part, bucket, object_key, upload_id, number, data)
                )
                del data  # only the pool holds a part being sent: memory stays bounded
            while inflight:
                done.append(inflight.popleft().result())
            found = h.hexdigest()
            if upload_id is None:
                if found == expected:
                    self.fs.call_s3(
                        "put_object",
                        Bucket=bucket,
                        Key=object_key,
                        Body=first,
                        ChecksumCRC32=_crc32(first),
                    )
                return found
            if found != expected:
                self.fs.call_s3(
                    "abort_multipart_upload", Bucket=bucket, Key=object_key, UploadId=upload_id
                )
                return found
            self.fs.call_s3(
                "complete_multipart_upload",
                Bucket=bucket,
                Key=object_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
            )
            return found
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    self.fs.call_s3(
                        "abort_multipart_upload",
                        Bucket=bucket,
                        Key=object_key,
                        UploadId=upload_id,
                    )
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.fs.invalidate_cache(key)

    def _upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes
    ) -> dict[str, Any]:
        out = self.fs.call_s3(
            "upload_part",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumCRC32=_crc32(data),
        )
        return {"PartNumber": number, "ETag": out["ETag"]}

    def _ranges(self, key: str, size: int, piece: int) -> Iterator[bytes]:
        """The bytes of ``key`` in order, ``piece`` bytes a ranged GET, ``concurrency`` GETs ahead."""
        starts = iter(range(0, size, piece))
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="seedline-download")

        def fetch(start: int) -> bytes:
            return bytes(self.fs.cat_file(key, start=start, end=min(start + piece, size)))

        inflight: deque[Future[bytes]] = deque()
        try:
            for start in starts:
                inflight.append(pool.submit(fetch, start))
                if len(inflight) >= self.concurrency:
                    break
            while inflight:
                data = inflight.popleft().result()
                start = next(starts, -1)
                if start >= 0:
                    inflight.append(pool.submit(fetch, start))
                yield data
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def verify(self, address: str) -> int:
        # one ranged GET at a time: fsck verifies several objects at once already, and its
        # memory stays a few chunks per object
        h, size = blake3.blake3(), 0
        with self.open(address) as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        found = h.hexdigest()
        if found != address:
            raise CorruptObjectError(address, found)
        return size

    def iter_stored(self, address: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        if not self.multipart or self.concurrency == 1:
            yield from super().iter_stored(address, chunk_size)
            return
        key = self._key(address)
        size = self.size(address)
        try:
            yield from self._ranges(key, size, chunk_size)
        except FileNotFoundError:
            raise self._missing(address) from None
        except OSError as exc:
            raise self._wrap(exc, f"read object {address}") from exc

    def open(self, address: str) -> IO[bytes]:
        key = self._key(address)
        try:
            # no read-ahead cache: each read is one ranged GET of what was asked, so a reader
            # of CHUNK-sized pieces holds one chunk (s3fs would otherwise buffer 50 MiB blocks)
            return cast(IO[bytes], self.fs.open(key, "rb", block_size=CHUNK, cache_type="none"))
        except FileNotFoundError:
            raise self._missing(address) from None
        except OSError as exc:
            raise self._wrap(exc, f"read object {address}") from exc

    def get(self, address: str) -> bytes:
        try:
            data = self.fs.cat_file(self._key(address))
        except FileNotFoundError:
            raise self._missing(address) from None
        except OSError as exc:
            raise self._wrap(exc, f"read object {address}") from exc
        found = blake3.blake3(data).hexdigest()
        if found != address:
            raise CorruptObjectError(address, found)
        return bytes(data)

    def exists(self, address: str) -> bool:
        key = self._key(address)
        try:
            self.fs.invalidate_cache(key)
            return bool(self.fs.exists(key))
        except OSError as exc:
            raise self._wrap(exc, f"look up object {address}") from exc

    def modified(self, address: str) -> float:
        try:
            info = self.fs.info(self._key(address))
        except FileNotFoundError:
            raise self._missing(address) from None
        except OSError as exc:
            raise self._wrap(exc, f"look up object {address}") from exc
        stamp = info.get("LastModified") or info.get("mtime") or info.get("created")
        if hasattr(stamp, "timestamp"):
            return float(stamp.timestamp())
        return float(stamp) if stamp is not None else time.time()

    def put_verified(self, chunks: Iterable[bytes], address: str) -> None:
        # straight to the object's key, hashed on the way: no local spool file. An upload
        # is visible only once closed, so a mismatch (or a killed process) publishes nothing.
        if self.exists(address):
            return
        if self.multipart:
            try:
                found = self._upload(chunks, self._key(address), address)
            except OSError as exc:
                raise self._wrap(exc, f"write object {address}") from exc
            if found != address:
                raise CorruptObjectError(address, found)
            return
        h = blake3.blake3()
        try:
            out = self.fs.open(self._key(address), "wb")
        except OSError as exc:
            raise self._wrap(exc, f"write object {address}") from exc
        try:
            for chunk in chunks:
                h.update(chunk)
                out.write(chunk)
            found = h.hexdigest()
            if found != address:
                raise CorruptObjectError(address, found)
        except BaseException:
            discard = getattr(out, "discard", None)
            with contextlib.suppress(Exception):
                if discard is not None:
                    discard()
                else:  # a filesystem without discard: close, then take the object away again
                    out.close()
                    self.fs.rm_file(self._key(address))
            raise
        try:
            out.close()
        except OSError as exc:
            raise self._wrap(exc, f"write object {address}") from exc

    def size(self, address: str) -> int:
        try:
            return int(self.fs.size(self._key(address)))
        except FileNotFoundError:
            raise self._missing(address) from None

    def __iter__(self) -> Iterator[str]:
        try:
            self.fs.invalidate_cache(self.prefix)
            keys = sorted(self.fs.find(self.prefix))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._wrap(exc, "list objects") from exc
        base = len(self.prefix) + 1 if self.prefix else 0
        for key in keys:
            address = _address_of(key[base:])
            if address is not None:
                yield address

    def remove(self, address: str) -> bool:
        if not self.exists(address):
            return False
        try:
            self.fs.rm_file(self._key(address))
        except FileNotFoundError:
            return False
        return True

    def quarantine(self, address: str) -> str:
        if not self.exists(address):
            raise self._missing(address)
        dest = f"{self.prefix}/{QUARANTINE}/{address}"
        if self.fs.exists(dest):
            dest = f"{dest}.{time.time_ns()}"
        key = self._key(address)
        try:
            # an object store has no rename: a server-side copy, checked, then the original goes
            self.fs.copy(key, dest)
            if self.fs.size(dest) != self.fs.size(key):
                raise StoreError(
                    f"the quarantine copy of object {address} at {dest} is incomplete; the object was left in place",
                    hint="run 'seedline fsck --repair' again",
                )
            self.fs.rm_file(key)
        except OSError as exc:
            raise self._wrap(exc, f"quarantine object {address}") from exc
        return f"{self.fs.protocol[0] if isinstance(self.fs.protocol, tuple) else self.fs.protocol}://{dest}"

    def quarantined(self) -> Iterator[str]:
        q = f"{self.prefix}/{QUARANTINE}"
        try:
            self.fs.invalidate_cache(q)
            names = sorted(k.rsplit("/", 1)[-1] for k in self.fs.find(q))
        except FileNotFoundError:
            return
        yield from names

    # -- incomplete multipart uploads (S3) ------------------------------------------------------
    # An object written in parts (those above PART bytes) is invisible until its upload
    # completes; a writer killed before that leaves the parts on the server, billed and
    # unlisted. They are seedline's partial objects on S3. Only uploads to an object's own key
    # under this store's prefix count: nothing that seedline did not start is ever touched.
    def _bucket_and_key_prefix(self) -> tuple[str, str]:
        bucket, _, key_prefix = self.prefix.partition("/")
        return bucket, f"{key_prefix}/" if key_prefix else ""

    def _upload_address(self, key: str, key_prefix: str) -> str | None:
        """The address an upload's key is the object of, or None when it is not an object key of this store."""
        if not key.startswith(key_prefix):
            return None
        return _address_of(key[len(key_prefix) :])

    def _uploads(self) -> Iterator[dict[str, Any]]:
        call = getattr(self.fs, "call_s3", None)
        if call is None:  # not S3: no multipart uploads to look for
            return
        bucket, key_prefix = self._bucket_and_key_prefix()
        args: dict[str, Any] = {"Bucket": bucket, "Prefix": key_prefix}
        while True:
            try:
                page = call("list_multipart_uploads", **args)
            except OSError as exc:
                raise self._wrap(exc, "list incomplete uploads") from exc
            for upload in page.get("Uploads") or []:
                if self._upload_address(upload.get("Key", ""), key_prefix) is not None:
                    yield upload
            if not page.get("IsTruncated"):
                return
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def _parts_size(self, bucket: str, key: str, upload_id: str) -> int:
        size, args = 0, {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        while True:
            try:
                page = self.fs.call_s3("list_parts", **args)
            except (OSError, FileNotFoundError):
                return size  # finished or aborted since it was listed
            size += sum(int(part.get("Size", 0)) for part in page.get("Parts") or [])
            if not page.get("IsTruncated"):
                return size
            args["PartNumberMarker"] = page.get("NextPartNumberMarker", 0)

    def partials(self) -> Iterator[PartialObject]:
        bucket, key_prefix = self._bucket_and_key_prefix()
        for upload in self._uploads():
            key, upload_id = upload["Key"], upload["UploadId"]
            started: Any = upload.get("Initiated")
            # no start time: count it as new, so that gc's minimum age keeps it
            modified = float(started.timestamp()) if started is not None else time.time()
            yield PartialObject(
                name=f"{key[len(key_prefix) :]}?uploadId={upload_id}",
                size=self._parts_size(bucket, key, upload_id),
                modified=modified,
            )

    def remove_partial(self, name: str) -> bool:
        """Abort one incomplete multipart upload named by :meth:`partials` (its parts are freed)."""
        bucket, key_prefix = self._bucket_and_key_prefix()
        rel, sep, upload_id = name.partition("?uploadId=")
        key = key_prefix + rel
        if not sep or not upload_id or self._upload_address(key, key_prefix) is None:
            raise StoreError(f"{name!r} is not an incomplete upload of {self.url}")
        try:
            self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        except FileNotFoundError:
            return False  # completed or aborted since it was listed
        except OSError as exc:
            raise self._wrap(exc, f"abort the upload of {rel}") from exc
        return True


def _file_chunks(path: str | Path, size: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _regroup(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The chunks joined into pieces of at least ``size`` bytes (the last may be smaller).

    The pieces grow (x2) every ``_PARTS_BEFORE_GROWTH`` pieces, so that an object of any
    size fits in S3's 10,000 parts.
    """
    pending: list[bytes] = []
    held = count = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= size << min(count // _PARTS_BEFORE_GROWTH, 8):
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, held = [], 0
            count += 1
    if pending or not count:
        yield b"".join(pending)


def open_object_store(url: str | Path, options: Mapping[str, Any] | None = None) -> ObjectStore:
    """The object store at ``url``: a local path or ``file://`` URL, or any other fsspec URL."""
    text = str(url)
    if "://" not in text:
        return LocalObjectStore(Path(text).expanduser())
    if text.startswith("file://"):
        return LocalObjectStore(Path(text[len("file://") :]).expanduser())
    return FsspecObjectStore(text, options)


__all__ = [
    "CHUNK",
    "FsspecObjectStore",
    "LocalObjectStore",
    "ObjectStore",
    "PartialObject",
    "check_address",
    "fsspec_options",
    "hash_file",
    "open_object_store",
]
