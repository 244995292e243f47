"""The ``seedline`` entry point: pins the hash seed of ``seedline run`` before importing anything heavy.

String hashing is seeded once, when the interpreter starts, so ``seedline run`` restarts
itself with ``PYTHONHASHSEED`` derived from the spec's seed. Done here, from the command
line and the spec's ``seed:`` alone (``core.hashseed``: no NumPy, no pydantic, no typer),
the restart costs a bare interpreter start. Anything this quick reading cannot decide (an
unknown option, a spec that does not parse) is left to the command itself, which pins the
seed after loading the spec in full (``cli.main._pin_hash_seed``).
"""

from __future__ import annotations

import os
import sys

PINNED_FLAG = "_SEEDLINE_HASH_SEED_PINNED"
# options of `seedline run` that take a value (see cli.main.run_cmd)
_RUN_VALUE_OPTIONS = frozenset({"--set", "--executor", "--workers", "--address"})
_RUN_FLAGS = frozenset({"--json", "--no-cache"})
# commands the quick listing path (cli/listing.py) may answer; every other one skips it unread
LISTING_COMMANDS = frozenset({"runs", "show", "models", "sweeps", "cache"})


def run_arguments(argv: list[str]) -> tuple[str, list[str]] | None:
    """The spec path and ``--set`` overrides of a ``seedline run`` command line, or None."""
    if len(argv) < 2 or argv[1] != "run":
        return None
    spec: str | None = None
    overrides: list[str] = []
    args = iter(argv[2:])
    for arg in args:
        name, eq, inline = arg.partition("=")
        if name in _RUN_VALUE_OPTIONS:
            value = inline if eq else next(args, None)
            if value is None:
                return None
            if name == "--set":
                overrides.append(value)
        elif arg in _RUN_FLAGS:
            continue
        elif arg.startswith("-") or spec is not None:
            return None  # --help, an unknown option, a second argument: let the CLI say
        else:
            spec = arg
    return (spec if spec is not None else "seedline.yaml"), overrides


def pin_hash_seed_early(argv: list[str]) -> None:
    """Restart ``seedline run`` with its spec's hash seed, unless it already runs with it."""
    if os.environ.get(PINNED_FLAG) == "1":
        return
    parsed = run_arguments(argv)
    if parsed is None:
        return
    from seedline.core.hashseed import spec_hash_seed

    wanted = spec_hash_seed(*parsed)
    if wanted is None:
        return
    if os.environ.get("PYTHONHASHSEED") == str(wanted):
        return
    env = dict(os.environ, PYTHONHASHSEED=str(wanted), **{PINNED_FLAG: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "seedline", *argv[1:]], env)


def main() -> None:
    """Console-script entry point."""
    pin_hash_seed_early(sys.argv)
    if sys.argv[1:2] and sys.argv[1] in LISTING_COMMANDS:
        from seedline.cli.listing import answer

        if answer(sys.argv):
            return
    from seedline.cli.main import main as cli_main

    cli_main()
