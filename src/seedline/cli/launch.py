"""The ``seedline`` entry point: pins the hash seed of ``seedline run`` before importing anything heavy.

String hashing is seeded once, when the interpreter starts, so ``seedline run`` restarts
itself with ``PYTHONHASHSEED`` derived from the spec's seed. Done here, from the command
line and the spec's ``seed:`` alone (``core.hashseed``: no NumPy, no pydantic, no typer),
the restart costs a bare interpreter start. Anything this quick reading cannot decide (an
unknown option, a spec that does not parse) is left to the command itself, which pins the
seed after loading the spec in full (``cli.main._pin_hash_seed``).

When a command is done, :func:`leave` ends the process the way the interpreter would, less
its last step: tearing down every module and freeing every object one by one, which after a
run (NumPy, pandas, SciPy, scikit-learn, pyarrow, SQLAlchemy loaded) takes about a second
of a six-second command on the project's 2-core machine, for memory the operating system
reclaims anyway.

The cycle collector runs less often for every command (:func:`fewer_collections`) and not
at all while ``run`` and ``serve`` start up (``core.collector``).
"""

from __future__ import annotations

import os
import sys

# the restart happens before anything else is imported: not even typing (re, collections),
# which annotations alone need (mypy reads a module's TYPE_CHECKING as true)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

PINNED_FLAG = "_SEEDLINE_HASH_SEED_PINNED"
# options of `seedline run` that take a value (see cli.main.run_cmd)
_RUN_VALUE_OPTIONS = frozenset({"--set", "--executor", "--workers", "--address"})
_RUN_FLAGS = frozenset({"--json", "--no-cache"})
# commands the quick listing path (cli/listing.py) may answer; every other one skips it unread
LISTING_COMMANDS = frozenset({"runs", "show", "models", "sweeps", "cache"})
GC_YOUNG_THRESHOLD = 5_000  # see fewer_collections
# commands that start up with the cycle collector paused; each resumes it once started up:
# `run` after preparing the run, `serve` once the model is loaded (or the workers' supervisor
# before it starts them)
COLLECTOR_PAUSED = frozenset({"run", "serve"})


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


def fewer_collections() -> None:
    """Run the cycle collector's youngest generation every 5,000 allocations instead of 700.

    A command imports thousands of modules whose objects all survive: with the default
    threshold the collector scans them again and again (about 480 young and 4 full
    collections in a run, 0.4 to 0.6 s of a three-second command on the project's machine;
    about 70 young and no full ones after). Garbage without cycles is freed at once as
    ever; cycles wait a little longer. A collector switched off or tuned by the user
    (threshold 0, or above this one) is left as it is.
    """
    import gc

    young, middle, old = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def main() -> None:
    """Console-script entry point."""
    pin_hash_seed_early(sys.argv)
    fewer_collections()
    if sys.argv[1:2] and sys.argv[1] in COLLECTOR_PAUSED:
        from seedline.core import collector

        collector.pause()  # the command resumes it once started up (core.collector)
    if sys.argv[1:2] and sys.argv[1] in LISTING_COMMANDS:
        from seedline.cli.listing import answer

        if answer(sys.argv):
            leave(0)
    from seedline.cli.main import main as cli_main

    try:
        cli_main()
    except SystemExit as exc:
        leave(exc.code)
    leave(0)


def leave(code: str | int | None) -> NoReturn:
    """Exit with ``code`` (what ``sys.exit`` takes), skipping the interpreter's module teardown.

    Everything the interpreter does at exit that anyone can observe still happens, in its
    order: it waits for non-daemon threads and runs the callbacks registered for that
    (``threading._shutdown``), then the ``atexit`` callbacks (logging flushes its handlers,
    ``weakref.finalize`` removes temporary folders, the store closes its database
    connections), then flushes standard output and error. Only the freeing of objects is
    left to the operating system, so an object's ``__del__`` does not run: seedline closes
    what it opens with ``with``. Under a profiler, a debugger or a coverage tracer (which may
    have more to do once the program returns), or where any of those private hooks is
    missing (another interpreter), it exits the ordinary way.
    """
    import atexit
    import contextlib
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    run_exit_callbacks = getattr(atexit, "_run_exitfuncs", None)
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if watched or shutdown is None or run_exit_callbacks is None:
        sys.exit(code)
    shutdown()
    run_exit_callbacks()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message goes to standard error, the status is 1
        status = 1
        with contextlib.suppress(OSError, ValueError):  # standard error closed: nothing to say
            print(code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`seedline runs | head`) or stream: nothing left to say
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
