"""Run tags: ``KEY=VALUE`` labels a person puts on runs (``team=vision``, ``ticket=ML-42``).

Tags are metadata *about* a run, kept in the ``run_tags`` table only: they are not in the
manifest, so setting, changing or deleting one changes no fingerprint and no manifest
object, and ``reproduce`` never sees them. They can be set when a run is made (``seedline
run --tag``) or afterwards (``seedline tag``), filter ``seedline runs`` and the UI, and travel
with ``push`` / ``pull``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from seedline.core.errors import SeedlineError, did_you_mean
from seedline.records.reading import read_tags
from seedline.records.recording import add_tags

if TYPE_CHECKING:  # checking a tag's text needs no store: ``seedline run --tag`` checks first
    from seedline.records.tracking import Store

MAX_KEY_LENGTH = 100
MAX_VALUE_LENGTH = 1000
# a key is a word a person types in a shell and a URL without quoting: letters, digits, _ . - /
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*")
_KEY_CHAR = re.compile(r"[A-Za-z0-9_.\-/]")
_NOT_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-/]+")


class TagError(SeedlineError):
    """Raised when a tag's key or value is malformed, or a tag to delete is not there."""


def check_key(key: str) -> str:
    """``key`` if it is a valid tag key, else a TagError saying what a key may hold."""
    if not key:
        raise TagError(
            "a tag key must not be empty; got ''", hint="write KEY=VALUE, e.g. team=vision"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise TagError(
            f"a tag key must be at most {MAX_KEY_LENGTH} characters; got {len(key)} ({key[:20]!r}...)",
            hint="use a shorter key and put the detail in the value",
        )
    if not _KEY.fullmatch(key):
        bad = sorted({c for c in key if not _KEY_CHAR.fullmatch(c)})
        fixed = _NOT_KEY_CHARS.sub("_", key).strip("_.-/") or "team"
        raise TagError(
            f"a tag key must start with a letter or digit and hold only letters, digits, "
            f"'_', '.', '-' and '/'; got {key!r}"
            + (f" (with {', '.join(repr(c) for c in bad)})" if bad else ""),
            hint=f"e.g. {fixed}",
        )
    return key


def check_value(key: str, value: str) -> str:
    """``value`` if it may be the value of tag ``key``: printable, one line, not too long."""
    if len(value) > MAX_VALUE_LENGTH:
        raise TagError(
            f"the value of tag {key!r} must be at most {MAX_VALUE_LENGTH} characters; got {len(value)}",
            hint="keep long text in a file in the project and tag the run with its path",
        )
    if not value.isprintable():
        raise TagError(
            f"the value of tag {key!r} must be printable text on one line; got {value!r}",
            hint="remove newlines, tabs and control characters from the value",
        )
    return value


def parse_tag(text: str) -> tuple[str, str]:
    """``'team=vision'`` -> ``('team', 'vision')``, validated (the value may be empty)."""
    key, found, value = text.partition("=")
    if not found:
        raise TagError(
            f"a tag must read KEY=VALUE; got {text!r}",
            hint=f"e.g. {text.strip() or 'team'}=VALUE",
        )
    key = check_key(key.strip())
    return key, check_value(key, value)


def parse_tags(items: Iterable[str]) -> dict[str, str]:
    """Tags from ``KEY=VALUE`` items (a later item with the same key wins)."""
    return dict(parse_tag(t) for t in items)


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A mapping of tags, every key and value validated."""
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str):
            raise TagError(
                f"a tag key must be text; got {type(key).__name__} {key!r}",
                hint=f"pass it as a string: {{{str(key)!r}: ...}}",
            )
        if not isinstance(value, str):
            raise TagError(
                f"the value of tag {key!r} must be text; got {type(value).__name__} {value!r}",
                hint=f"pass it as a string: {{{key!r}: {str(value)!r}}}",
            )
        out[check_key(key)] = check_value(key, value)
    return out


def parse_tag_filter(text: str) -> tuple[str, str | None]:
    """A tag filter: ``KEY=VALUE`` (that value) or ``KEY`` (any value)."""
    if "=" in text:
        return parse_tag(text)
    return check_key(text.strip()), None


def set_tags(store: Store, ref: str, tags: Mapping[str, str]) -> dict[str, str]:
    """Set (add or replace) tags of a run; returns all of its tags afterwards."""
    checked = check_tags(tags)
    run_id = store.resolve(ref)
    with store._writer() as execute:
        add_tags(execute, run_id, checked)
    return tags_of(store, [run_id])[run_id]


def delete_tags(store: Store, ref: str, keys: Iterable[str]) -> dict[str, str]:
    """Delete tags of a run by key; a key the run does not have is an error (nothing is deleted)."""
    run_id = store.resolve(ref)
    keys = list(keys)
    have = tags_of(store, [run_id])[run_id]
    missing = [k for k in keys if k not in have]
    if missing:
        raise TagError(
            f"run {run_id} has no tag {missing[0]!r}."
            + did_you_mean(missing[0], have)
            + (f" Its tags: {', '.join(sorted(have))}." if have else " It has no tags."),
            hint=f"'seedline show {run_id}' lists its tags; nothing was deleted",
        )
    with store._writer() as execute:
        execute(
            "DELETE FROM run_tags WHERE run_id = :run_id AND key = :key",
            [{"run_id": run_id, "key": k} for k in keys],
        )
    return {k: v for k, v in have.items() if k not in keys}


def tags_of(store: Store, run_ids: list[str]) -> dict[str, dict[str, str]]:
    """Run id -> its tags (sorted by key), for the given runs."""
    with store._reader() as rows:
        return read_tags(rows, run_ids)


def tag_keys(store: Store) -> list[str]:
    """Every tag key in the store, sorted."""
    with store._reader() as rows:
        return sorted(str(key) for (key,) in rows("SELECT DISTINCT key FROM run_tags", {}))


__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "TagError",
    "add_tags",
    "check_key",
    "check_tags",
    "check_value",
    "delete_tags",
    "parse_tag",
    "parse_tag_filter",
    "parse_tags",
    "read_tags",
    "set_tags",
    "tag_keys",
    "tags_of",
]
