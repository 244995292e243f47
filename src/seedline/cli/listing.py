"""The listing commands, answered without typer, SQLAlchemy or pydantic where nothing needs them.

``seedline runs``, ``show RUN``, ``models``, ``sweeps`` and ``cache ls`` read a few rows and
print them. Through typer (which builds pydantic adapters for its options) and the
SQLAlchemy store, most of their time is imports. :func:`answer` handles the plain forms
(``--json``; ``runs`` also ``-n/--limit N``) on an embedded store whose schema is current,
reading it with :mod:`sqlite3` in read-only mode (``storage.embedded``).

Anything else returns False before printing a byte, and the full command line answers with
its own errors and hints: another option or argument, a team store or ``seedline.toml``,
a database to create or migrate, a run whose process is gone (its record must be marked
interrupted, a write), a run prefix that matches no run or several, a run without a
manifest, any error at all. Both paths run the records layer's shared queries
(``records.reading``) and print through the same renderers (``cli.render``), so their
output is the same; tests compare them byte for byte.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from seedline.records import reading
from seedline.storage.embedded import EmbeddedStore, open_embedded


def parse(args: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """The command and options of a plain listing command line (``argv[1:]``), or None."""
    if not args:
        return None
    command, rest = args[0], list(args[1:])
    if command == "cache":
        if not rest or rest[0] != "ls":
            return None
        command, rest = "cache ls", rest[1:]
    if command not in ("runs", "show", "models", "sweeps", "cache ls"):
        return None
    options: dict[str, Any] = {"as_json": False}
    positional: list[str] = []
    items = iter(rest)
    for arg in items:
        if arg == "--json":
            options["as_json"] = True
        elif (command == "runs" and arg in ("-n", "--limit")) or arg.startswith("--limit="):
            value = arg.partition("=")[2] if "=" in arg else next(items, "")
            if not value.isdigit():
                return None
            options["limit"] = int(value)
        elif arg.startswith("-"):
            return None  # --help, another option: the full command line says
        else:
            positional.append(arg)
    if command == "show":
        if len(positional) != 1:
            return None
        options["ref"] = positional[0]
    elif positional:
        return None
    return command, options


def answer(argv: Sequence[str]) -> bool:
    """Print what a plain listing command prints and return True, or return False having printed nothing."""
    parsed = parse(argv[1:])
    if parsed is None:
        return False
    store = open_embedded()
    if store is None:
        return False
    try:
        emit = _COMMANDS[parsed[0]](store, **parsed[1])
    except Exception:  # whatever it is, the full path reports it properly
        return False
    finally:
        store.connection.close()
    if emit is None:
        return False
    try:
        emit()
        sys.stdout.flush()
    except BrokenPipeError:
        # `seedline runs | head`: the reader left; end quietly, as the full command line does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True


def _rows(store: EmbeddedStore) -> reading.Rows:
    return lambda sql, params: store.connection.execute(sql, params).fetchall()


Emit = Callable[[], None]


def _print(text: str, end: str = "\n") -> Emit:
    return lambda: print(text, end=end)


def _document(data: Any) -> str:
    """What ``--json`` prints for most commands (cli.main._echo_json)."""
    from seedline.cli.render import json_document

    return json_document(data)


def _runs(store: EmbeddedStore, as_json: bool, limit: int = 50) -> Emit | None:
    rows = _rows(store)
    running = reading.running_on(rows, socket.gethostname())
    if any(not reading.process_alive(pid, started) for _, pid, started in running):
        return None  # marking them interrupted is a write: the full path does it
    found = reading.list_runs(rows, limit=limit)
    if as_json:
        return _print(_document([r.to_dict() for r in found]))
    from seedline.cli.render import console, render_runs

    return lambda: render_runs(console(), found)


def _show(store: EmbeddedStore, as_json: bool, ref: str) -> Emit | None:
    rows = _rows(store)
    run_id = reading.resolve(rows, ref)
    address, _ = reading.manifest_object(rows, run_id)
    if address is None:
        return None  # running or interrupted: the full path explains which
    from seedline.storage.objects import LocalObjectStore

    # the object store checks the bytes against their address: they are what seedline wrote
    stored = LocalObjectStore(store.objects_dir).get(address)
    tags = reading.read_tags(rows, [run_id])[run_id]
    if as_json:
        # what `seedline show --json` prints: the manifest with every default filled in (the
        # model's dump), then the run's tags under 'tags'
        from seedline.records.manifest import Manifest

        manifest = Manifest.from_json(stored).to_dict()
        return _print(json.dumps({**manifest, "tags": tags}, indent=2))
    document = json.loads(stored)
    if document.get("schema_version") != reading.MANIFEST_SCHEMA_VERSION:
        return None  # another format: the full path reads it or says why not
    from seedline.cli.render import console, render_manifest

    # rendered whole before anything is printed: a document this renderer cannot read (the
    # full path's model would refuse it) makes the quick path step aside, having printed nothing
    out = console()
    with out.capture() as captured:
        render_manifest(out, document, tags)
    return _print(captured.get(), end="")


def _models(store: EmbeddedStore, as_json: bool) -> Emit:
    found = reading.list_models(_rows(store))
    if as_json:
        return _print(_document(found))
    from seedline.cli.render import console, render_models

    return lambda: render_models(console(), found)


def _sweeps(store: EmbeddedStore, as_json: bool) -> Emit:
    found = [r.to_dict() for r in reading.list_sweeps(_rows(store))]
    if as_json:
        return _print(_document(found))
    from seedline.cli.render import console, render_sweeps

    return lambda: render_sweeps(console(), found)


def _cache_ls(store: EmbeddedStore, as_json: bool) -> Emit:
    found = [e.to_dict() for e in reading.list_cache_entries(_rows(store))]
    if as_json:
        # `seedline cache ls --json` keeps the entries' own key order
        return _print(json.dumps(found, indent=2))
    from seedline.cli.render import console, render_cache_entries

    return lambda: render_cache_entries(console(), found)


_COMMANDS: Mapping[str, Callable[..., Emit | None]] = {
    "runs": _runs,
    "show": _show,
    "models": _models,
    "sweeps": _sweeps,
    "cache ls": _cache_ls,
}


__all__ = ["answer", "parse"]
