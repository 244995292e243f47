"""Store URLs: the one place that hides credentials before a URL is shown, and that normalises database URLs.

Every URL that seedline prints, logs, writes into a manifest or puts into an error message
goes through :func:`redact_url` first, so a password given in a URL never leaves the
process. Credentials are better kept out of URLs altogether (``PGPASSWORD``, ``~/.pgpass``,
the AWS environment and config files), but a URL with a password must still be safe to show.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
# user:password@ inside any URL-looking text, for messages that embed a URL we did not build
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]*)@"
)
_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>password|passwd|pwd|secret|secret_access_key|token|aws_secret_access_key|sslpassword)=(?P<val>[^&\s]+)"
)


def redact_url(url: str) -> str:
    """The URL with its password (and secret query values) replaced by ``***``; other parts kept.

    >>> redact_url("postgresql+psycopg://ana:s3cret@db:5432/seedline")
    'postgresql+psycopg://ana:***@db:5432/seedline'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{REDACTED}@{hostport}"
    query = _SECRET_QUERY.sub(lambda m: f"{m.group('key')}={REDACTED}", parts.query)
    if netloc == parts.netloc and query == parts.query:
        # nothing to hide: urlunsplit would drop the empty host of sqlite:////abs/path.db
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, *urls: str) -> str:
    """``text`` with every password of ``urls`` and every ``user:password@`` in it replaced by ``***``.

    Third-party messages (a driver's connection error) may quote the URL or the password;
    this is applied to them before they become a seedline error.
    """
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            text = text.replace(password, REDACTED)
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('key')}={REDACTED}", text)


def normalise_database_url(url: str) -> str:
    """Map ``postgres://`` and ``postgresql://`` to the psycopg 3 driver that seedline ships with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


__all__ = ["REDACTED", "normalise_database_url", "redact_text", "redact_url"]
