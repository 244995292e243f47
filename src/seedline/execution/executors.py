"""Executors: run many coarse tasks serially, on local processes or on a Dask cluster, alike.

An executor calls one module-level function ``fn(key, item, shared)`` for each item of a
dict and returns the results keyed and ordered by key (sorted), never by completion
order, so that what a caller builds from them does not depend on which worker finished
first. Three kinds, made with :func:`make_executor`::

    with make_executor("dask", workers=2, threads=1) as ex:
        scores = ex.map(fit_fold, {"fold-0": idx0, "fold-1": idx1}, shared=frame)
        manifest.settings.update(ex.settings())
        record(ex.task_info)          # per task: worker, pid, host, hash seed, thread pools

- ``serial``: a plain loop in key order, in this process.
- ``processes``: a ``ProcessPoolExecutor`` of ``workers`` processes started with *spawn*
  (a fresh interpreter: forking a parent whose BLAS/OpenMP threads are running is unsafe).
- ``dask``: a ``distributed.Client`` on the scheduler at ``address``, or on a
  ``LocalCluster`` of ``workers`` single-threaded worker processes on 127.0.0.1 that the
  executor starts and stops.

Contract of a task, the same on every backend:

- ``fn`` is a module-level function (workers import it by name) and every item and result
  is picklable. Tasks are **coarse**: a fold's fit, a sweep trial. Each one costs a fixed
  overhead on top of its work (measured by ``benchmarks/executors.py`` on a 2-core machine:
  about 0.03 ms serially, 0.2 ms on processes and 2 ms on Dask, plus 2-5 s to start a pool
  or a LocalCluster), so a task should run for a tenth of a second or more, and many more
  tasks than workers keep them busy; batch smaller work into fewer tasks.
- ``shared`` (the training frame, say) is shipped to each worker **once**, not with every
  task: a process pool gets it through its initializer, a Dask cluster through one
  ``client.scatter(..., broadcast=True)``. An executor keeps the copy it shipped for as
  long as later calls pass the *same object*, so treat ``shared`` as read-only: to change
  it, pass a new object. Items travel with their task, so keep them small (indices, params).
- Inside every task, BLAS and OpenMP thread pools are pinned to ``threads`` with
  threadpoolctl for the duration of the call, and the task reports what it ran under
  (:class:`TaskInfo`): worker, pid, host, ``PYTHONHASHSEED``, whether string hashing there
  agrees with this process, and the thread-pool sizes in force when it finished.
- A failure inside a task is raised here as :class:`TaskError`, naming the key, the worker
  and the original error; the executor cancels what is left, and on ``KeyboardInterrupt``
  stops its workers at once.

Worker processes started by seedline (the process pool, the LocalCluster's workers) get
exactly this process's environment, ``PYTHONHASHSEED`` included. Dask's nanny would
otherwise set ``PYTHONHASHSEED=6640`` (and ``OMP_NUM_THREADS=1`` and friends) in *this*
process's environment before spawning each worker; seedline's LocalCluster uses a nanny
that passes the inherited values unchanged. Workers of an external cluster run under their
own environment: ``TaskInfo.hash_seed_matches`` says when they hash differently from here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from seedline.core.errors import SeedlineError, did_you_mean

KINDS = ("serial", "processes", "dask")

WORKERS_TIMEOUT_S = 60.0
"""How long to wait for an external Dask scheduler to have ``workers`` workers."""

_HASH_PROBE = "seedline/hash-probe"

R = TypeVar("R")
TaskFunction = Callable[[str, Any, Any], R]


class ExecutorError(SeedlineError):
    """Raised when an executor is asked for something it cannot do, cannot start, or loses its workers."""


class TaskError(ExecutorError):
    """Raised when a task fails: names the task's key, the worker it ran on and the original error."""

    def __init__(
        self,
        key: str,
        *,
        worker: str,
        error_type: str,
        error_message: str,
        traceback_text: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(
            f"task {key!r} failed on {worker}: {error_type}: {error_message}",
            hint=hint
            or "the worker's traceback is in the error's 'traceback' attribute; "
            "to debug the task in this process, run it with the serial executor",
        )
        self.key = key
        self.worker = worker
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback_text

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only arguments: the default (type, args) pickling could not rebuild it
        return _rebuild_task_error, (
            self.key,
            self.worker,
            self.error_type,
            self.error_message,
            self.traceback,
            self.hint,
        )


def _rebuild_task_error(
    key: str,
    worker: str,
    error_type: str,
    error_message: str,
    traceback_text: str,
    hint: str | None,
) -> TaskError:
    return TaskError(
        key,
        worker=worker,
        error_type=error_type,
        error_message=error_message,
        traceback_text=traceback_text,
        hint=hint,
    )


@dataclass(frozen=True)
class TaskInfo:
    """Where and under what settings one task ran, for the manifest."""

    key: str
    worker: str
    """``"serial"``, ``"process PID"``, or the Dask worker's address."""
    host: str
    pid: int
    hash_seed: str | None
    """The worker's ``PYTHONHASHSEED`` (None when unset)."""
    hash_seed_matches: bool
    """Whether ``hash()`` of a string gives the same value in the worker as in this process."""
    threads: dict[str, int]
    """Thread-pool size per native library (threadpoolctl prefix) when the task finished."""
    threads_pinned: bool
    """Whether every thread pool had exactly the requested number of threads."""
    seconds: float
    """The task's own wall time in the worker, pinning included."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Worker side: everything below runs inside the worker (or in this process, serially).


@dataclass(frozen=True)
class _TaskContext:
    """What every task of one ``map`` call needs besides its own arguments."""

    threads: int
    backend: str
    client_hash: int


@dataclass(frozen=True)
class _SharedRef:
    """Stands in for ``shared`` in a process-pool task: the worker got it from its initializer."""

    token: str


@dataclass(frozen=True)
class _Outcome:
    """What a task sends back: its value or its error, and where it ran."""

    value: Any
    info: TaskInfo
    error: tuple[str, str, str] | None = None
    """(qualified type name, message, formatted traceback) of the task's exception."""
    exception: BaseException | None = field(default=None, compare=False)
    """The exception itself, for the serial backend only (it never crosses a process)."""


# The shared object a process-pool worker received from its initializer, by token.
_SHARED: dict[str, Any] = {}
# A threadpoolctl controller, rescanned only when new modules (and so maybe new native
# libraries) have been imported: a full scan costs about 1 ms, a cached one 10 µs.
_CONTROLLER: tuple[int, Any] | None = None


def _init_process_worker(token: str, shared: Any) -> None:
    """Process-pool initializer: keep the shared object for every task this worker runs."""
    _SHARED.clear()
    _SHARED[token] = shared


def _thread_controller() -> Any:
    global _CONTROLLER
    # sklearn loads its OpenMP runtime when imported; load it before pinning so that a
    # task importing sklearn lazily does not run its first fit with an unpinned pool
    if "sklearn" not in sys.modules:
        import sklearn  # noqa: F401

    n_modules = len(sys.modules)
    if _CONTROLLER is None or _CONTROLLER[0] != n_modules:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = (n_modules, ThreadpoolController())
    return _CONTROLLER[1]


def _thread_counts() -> dict[str, int]:
    info = _thread_controller().info()
    return {
        str(lib["prefix"]): int(lib["num_threads"])
        for lib in sorted(info, key=lambda d: d["prefix"])
    }


def _worker_name(backend: str) -> str:
    if backend == "dask":
        from distributed import get_worker

        try:
            return str(get_worker().address)
        except ValueError:  # not inside a worker: a task run by the client itself
            return f"dask client {os.getpid()}"
    if backend == "processes":
        return f"process {os.getpid()}"
    return "serial"


def _run_task(
    key: str, item: Any, *, fn: Callable[[str, Any, Any], Any], shared: Any, ctx: _TaskContext
) -> _Outcome:
    """Run one task with thread pools pinned and report where and how it ran.

    Exceptions are caught and sent back as text: an exception object need not pickle, and
    the caller wants the key and the worker with it, not a bare remote traceback.
    """
    start = time.perf_counter()
    value: Any = None
    error: tuple[str, str, str] | None = None
    exception: BaseException | None = None
    if isinstance(shared, _SharedRef):
        shared = _SHARED.get(shared.token, shared)
    controller = _thread_controller()
    with controller.limit(limits=ctx.threads):
        try:
            if isinstance(shared, _SharedRef):
                raise RuntimeError(
                    "this worker never received the shared object (was it restarted?)"
                )
            value = fn(key, item, shared)
        except Exception as exc:
            kind = type(exc)
            error = (f"{kind.__module__}.{kind.__qualname__}", str(exc), traceback.format_exc())
            if ctx.backend == "serial":
                exception = exc
        threads = _thread_counts()
    info = TaskInfo(
        key=key,
        worker=_worker_name(ctx.backend),
        host=socket.gethostname(),
        pid=os.getpid(),
        hash_seed=os.environ.get("PYTHONHASHSEED"),
        hash_seed_matches=hash(_HASH_PROBE) == ctx.client_hash,
        threads=threads,
        threads_pinned=all(n == ctx.threads for n in threads.values()),
        seconds=time.perf_counter() - start,
    )
    return _Outcome(value=value, info=info, error=error, exception=exception)


# ---------------------------------------------------------------------------------------
# Client side.


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_fn(fn: Any) -> None:
    if not callable(fn):
        raise ExecutorError(
            f"Executor.map expects a function fn(key, item, shared) as 'fn'; got {type(fn).__name__} {fn!r}"
        )
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if qualname is None or module is None or "<" in qualname:
        raise ExecutorError(
            f"Executor.map needs a module-level function, which workers can import by name; got {_qualified(fn)}",
            hint="define the task with 'def' at the top level of a module (not a lambda or a function inside a function), "
            "so that it runs the same on every executor; pass data through items or shared",
        )


def _check_items(items: Any) -> list[str]:
    if not isinstance(items, Mapping):
        raise ExecutorError(
            f"Executor.map expects items as a dict of key -> item; got {type(items).__name__}",
            hint="key each item by a stable name, e.g. {'fold-0': ..., 'fold-1': ...}",
        )
    bad = [k for k in items if not isinstance(k, str)]
    if bad:
        raise ExecutorError(
            f"Executor.map expects string keys (results are ordered by key); got {bad[0]!r} ({type(bad[0]).__name__})",
            hint="use stable string keys such as f'fold-{i:03d}'",
        )
    return sorted(items)


class Executor:
    """Runs ``fn(key, item, shared)`` for each item; use it as a context manager.

    ``map`` returns results keyed and ordered by key; ``task_info`` then holds a
    :class:`TaskInfo` per key of the last ``map``. An executor runs one ``map`` at a time.
    """

    name: ClassVar[str] = "?"

    def __init__(self, *, workers: int = 1, address: str | None = None, threads: int = 1) -> None:
        self._workers = workers
        self._address = address
        self._threads = threads
        self._open = False
        self.task_info: dict[str, TaskInfo] = {}

    @property
    def workers(self) -> int:
        """How many workers run tasks (for an external cluster: how many it had when entered)."""
        return self._workers

    @property
    def address(self) -> str | None:
        """The Dask scheduler's address: the one given, or that of the LocalCluster started."""
        return self._address

    @property
    def threads(self) -> int:
        """BLAS/OpenMP threads each task runs with."""
        return self._threads

    def settings(self) -> dict[str, Any]:
        """The execution settings recorded in the manifest."""
        return {
            "executor": self.name,
            "workers": self.workers,
            "address": self._external_address(),
            "threads": self.threads,
        }

    def _external_address(self) -> str | None:
        return None

    def __enter__(self) -> Self:
        self._start()
        self._open = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        if exc is None:
            self._close()
            return
        # already failing: stop the workers, and never let a failed close hide the real error
        with contextlib.suppress(Exception):
            self._abort()
        with contextlib.suppress(Exception):
            self._close()

    def map(
        self, fn: TaskFunction[R], items: Mapping[str, Any], shared: Any = None
    ) -> dict[str, R]:
        """Call ``fn(key, item, shared)`` for each item; results keyed and ordered by key.

        Raises :class:`TaskError` for the first task found failing, after cancelling the rest.
        """
        if not self._open:
            raise ExecutorError(
                f"the {self.name} executor is not open",
                hint=f"use it as a context manager: with make_executor({self.name!r}, ...) as ex: ex.map(...)",
            )
        _check_fn(fn)
        keys = _check_items(items)
        self.task_info = {}
        if not keys:
            return {}
        ctx = _TaskContext(threads=self.threads, backend=self.name, client_hash=hash(_HASH_PROBE))
        outcomes: dict[str, _Outcome] = {}
        try:
            for key, outcome in self._run(fn, keys, items, shared, ctx):
                if outcome.error is not None:
                    error_type, message, text = outcome.error
                    raise TaskError(
                        key,
                        worker=outcome.info.worker,
                        error_type=error_type,
                        error_message=message,
                        traceback_text=text,
                    ) from outcome.exception
                outcomes[key] = outcome
        except BaseException:
            with contextlib.suppress(Exception):  # the task's error is the one to see
                self._abort()
            raise
        self.task_info = {key: outcomes[key].info for key in keys}
        return {key: outcomes[key].value for key in keys}

    # -- what a backend provides ---------------------------------------------------------

    def _start(self) -> None:
        """Start workers (or connect to them)."""

    def _run(
        self,
        fn: Callable[[str, Any, Any], Any],
        keys: list[str],
        items: Mapping[str, Any],
        shared: Any,
        ctx: _TaskContext,
    ) -> Iterator[tuple[str, _Outcome]]:
        """Run every task; yield (key, outcome) as each one completes."""
        raise NotImplementedError

    def _abort(self) -> None:
        """Cancel whatever the last ``_run`` left running; stop workers that are busy with it."""

    def _close(self) -> None:
        """Stop workers and release resources; the executor may be entered again."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings()}>"


class SerialExecutor(Executor):
    """Runs tasks one after the other in key order, in this process."""

    name = "serial"

    def _run(
        self,
        fn: Callable[[str, Any, Any], Any],
        keys: list[str],
        items: Mapping[str, Any],
        shared: Any,
        ctx: _TaskContext,
    ) -> Iterator[tuple[str, _Outcome]]:
        for key in keys:
            yield key, _run_task(key, items[key], fn=fn, shared=shared, ctx=ctx)


def _remote_error(key: str, exc: BaseException, worker: str, hint: str | None = None) -> TaskError:
    kind = type(exc)
    return TaskError(
        key,
        worker=worker,
        error_type=f"{kind.__module__}.{kind.__qualname__}",
        error_message=str(exc),
        traceback_text="".join(traceback.format_exception(exc)),
        hint=hint,
    )


_NOT_SENT_HINT = (
    "the task could not be sent to a worker or its result could not be sent back: "
    "fn must be importable by its module and name, and items and results must pickle"
)


class ProcessExecutor(Executor):
    """Runs tasks on a pool of ``workers`` local processes started with *spawn*."""

    name = "processes"

    def __init__(self, *, workers: int = 1, address: str | None = None, threads: int = 1) -> None:
        super().__init__(workers=workers, address=address, threads=threads)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._pool_shared: tuple[Any, str] | None = None
        self._pending: list[cf.Future[_Outcome]] = []

    def _pool_for(self, shared: Any) -> tuple[cf.ProcessPoolExecutor, Any]:
        """The pool to run on, and what its tasks get for ``shared``."""
        # the initializer ships `shared` once per worker process, so a different object
        # needs a new pool; the same object keeps the pool and the copies its workers hold
        if self._pool is not None and self._pool_shared is not None:
            if self._pool_shared[0] is shared:
                return self._pool, _SharedRef(self._pool_shared[1])
            if shared is None:
                return self._pool, None
        self._close()
        token = uuid.uuid4().hex
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process_worker,
            initargs=(token, shared),
        )
        self._pool_shared = (shared, token)
        return self._pool, _SharedRef(token)

    def _run(
        self,
        fn: Callable[[str, Any, Any], Any],
        keys: list[str],
        items: Mapping[str, Any],
        shared: Any,
        ctx: _TaskContext,
    ) -> Iterator[tuple[str, _Outcome]]:
        pool, ref = self._pool_for(shared)
        by_future: dict[cf.Future[_Outcome], str] = {}
        try:
            for key in keys:
                by_future[pool.submit(_run_task, key, items[key], fn=fn, shared=ref, ctx=ctx)] = key
        except cf.BrokenExecutor as exc:
            raise ExecutorError(
                f"the process pool broke before all tasks were sent: {exc}",
                hint="a worker process died; see its output above",
            ) from exc
        self._pending = list(by_future)
        for future in cf.as_completed(by_future):
            key = by_future[future]
            try:
                outcome = future.result()
            except cf.BrokenExecutor as exc:
                raise ExecutorError(
                    f"a worker process died while task {key!r} was queued or running: {exc}",
                    hint="the task may have run out of memory or crashed the interpreter; "
                    "if fn is defined in an interactive session, move it into a module",
                ) from exc
            except Exception as exc:
                raise _remote_error(key, exc, "a worker process", _NOT_SENT_HINT) from exc
            yield key, outcome
        self._pending = []

    def _abort(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending = []
        pool, self._pool, self._pool_shared = self._pool, None, None
        if pool is None:
            return
        # running tasks cannot be cancelled: stop their processes, as Python 3.14's
        # ProcessPoolExecutor.terminate_workers does, rather than wait for them to finish
        terminate = getattr(pool, "terminate_workers", None)
        if terminate is not None:
            terminate()
            return
        processes = dict(getattr(pool, "_processes", None) or {})
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes.values():
            if process.is_alive():
                process.terminate()
        for process in processes.values():
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    def _close(self) -> None:
        pool, self._pool, self._pool_shared = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _inheriting_nanny() -> type:
    """A dask Nanny whose worker process gets this process's environment, unchanged.

    Dask's Nanny writes its ``pre-spawn-environ`` (``PYTHONHASHSEED=6640`` unless configured,
    ``OMP_NUM_THREADS=1``, ...) into the *spawning* process's ``os.environ``, which for a
    LocalCluster is ours: it would change the hash seed of every process seedline starts
    afterwards, and the environment recorded in manifests. Threads are pinned per task anyway.
    """
    from distributed import Nanny

    class InheritingNanny(Nanny):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seed = os.environ.get("PYTHONHASHSEED")
            inherited = {} if seed is None else {"PYTHONHASHSEED": seed}
            self.pre_spawn_env = dict(inherited)
            self.env = dict(inherited)

    return InheritingNanny


class DaskExecutor(Executor):
    """Runs tasks on a Dask cluster: the scheduler at ``address``, or a LocalCluster it starts."""

    name = "dask"

    def __init__(self, *, workers: int = 1, address: str | None = None, threads: int = 1) -> None:
        super().__init__(workers=workers, address=address, threads=threads)
        self._external = address is not None
        self._min_workers = workers
        self._client: Any = None
        self._cluster: Any = None
        self._shared: tuple[Any, Any] | None = None
        self._pending: list[Any] = []

    def _external_address(self) -> str | None:
        return self._address if self._external else None

    def _start(self) -> None:
        from distributed import Client, LocalCluster

        if self._external:
            try:
                # waits up to dask's distributed.comm.timeouts.connect (30 s unless configured)
                self._client = Client(self._address, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(
                    f"could not connect to the Dask scheduler at {self._address!r}: {exc}",
                    hint="check the address (tcp://HOST:PORT) and that 'dask scheduler' is running there; "
                    "or leave the address out to start a local cluster",
                ) from exc
            try:
                self._check_external_workers()
            except BaseException:
                self._close()
                raise
            return
        try:
            self._cluster = LocalCluster(
                n_workers=self._workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # no dashboard, but the scheduler still serves HTTP (health, metrics): on a
                # random loopback port rather than 8787, which another cluster may hold
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                worker_class=_inheriting_nanny(),
            )
            self._client = Client(self._cluster, set_as_default=False)
        except BaseException as exc:
            self._close()
            if isinstance(exc, Exception):
                raise ExecutorError(
                    f"could not start a Dask LocalCluster of {self._workers} workers: {exc}",
                    hint="try fewer workers, or the processes executor",
                ) from exc
            raise
        self._address = str(self._cluster.scheduler_address)

    def _check_external_workers(self) -> None:
        try:
            self._client.wait_for_workers(self._min_workers, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError as exc:
            have = len(self._client.nthreads())
            raise ExecutorError(
                f"the Dask scheduler at {self._address!r} has {have} workers after {WORKERS_TIMEOUT_S:.0f} s; "
                f"expected at least {self._min_workers}",
                hint=f"start more workers ('dask worker {self._address} --nthreads 1') or ask for fewer",
            ) from exc
        nthreads: dict[str, int] = dict(self._client.nthreads())
        threaded = sorted(w for w, n in nthreads.items() if n != 1)
        if threaded:
            raise ExecutorError(
                f"Dask worker {threaded[0]} runs {nthreads[threaded[0]]} threads; seedline needs one task at a time "
                "per worker process, because BLAS/OpenMP thread pools are pinned per process",
                hint="start the workers with 'dask worker ADDRESS --nthreads 1' (use --nworkers for more)",
            )
        self._workers = len(nthreads)

    def _scattered(self, shared: Any) -> Any:
        if shared is None:
            return None
        if self._shared is not None and self._shared[0] is shared:
            return self._shared[1]
        self._shared = None
        # a list around it, so that a list or dict is shipped as one object, not per element
        future = self._client.scatter([shared], broadcast=True, hash=False)[0]
        self._shared = (shared, future)
        return future

    def _run(
        self,
        fn: Callable[[str, Any, Any], Any],
        keys: list[str],
        items: Mapping[str, Any],
        shared: Any,
        ctx: _TaskContext,
    ) -> Iterator[tuple[str, _Outcome]]:
        from distributed import as_completed

        shared_arg = self._scattered(shared)
        call = uuid.uuid4().hex[:12]
        prefix = getattr(fn, "__name__", "task")
        futures = self._client.map(
            _run_task,
            keys,
            [items[k] for k in keys],
            fn=fn,
            shared=shared_arg,
            ctx=ctx,
            key=[f"seedline-{prefix}-{k}-{call}" for k in keys],
            pure=False,
        )
        self._pending = list(futures)
        by_key = {f.key: k for f, k in zip(futures, keys, strict=True)}
        # batches: one gather per group of finished tasks, not one round trip per task
        for batch in as_completed(futures, loop=self._client.loop).batches():
            failed = sorted((by_key[f.key], f) for f in batch if f.status != "finished")
            for key, future in failed:
                try:
                    future.result()
                except (Exception, asyncio.CancelledError) as exc:
                    raise _remote_error(key, exc, "a Dask worker", _NOT_SENT_HINT) from exc
            for future, outcome in zip(batch, self._client.gather(batch), strict=True):
                yield by_key[future.key], outcome
        self._pending = []

    def _abort(self) -> None:
        pending, self._pending = self._pending, []
        if pending and self._client is not None:
            # best effort: closing the client releases them too
            with contextlib.suppress(Exception):
                self._client.cancel(pending, force=True)

    def _close(self) -> None:
        self._shared = None
        self._pending = []
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        try:
            if client is not None:
                client.close(timeout=10)
        finally:
            if cluster is not None:
                cluster.close(timeout=30)


_BACKENDS: dict[str, type[Executor]] = {
    "serial": SerialExecutor,
    "processes": ProcessExecutor,
    "dask": DaskExecutor,
}


def _check_count(name: str, value: Any, kind: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExecutorError(
            f"The {name!r} parameter of the {kind} executor must be an int in the range [1, inf); got {value!r}",
            hint=f"pass {name}=1 or more",
        )
    return value


def make_executor(
    kind: str, *, workers: int = 1, address: str | None = None, threads: int = 1
) -> Executor:
    """An executor of ``kind`` (``serial``, ``processes`` or ``dask``); enter it to start its workers.

    ``workers``: processes in the pool, workers of the LocalCluster, or for an external
    Dask cluster (``address``) how many workers to wait for. ``threads``: BLAS/OpenMP
    threads per task.
    """
    if not isinstance(kind, str) or kind not in _BACKENDS:
        hint = did_you_mean(kind, KINDS) if isinstance(kind, str) else ""
        raise ExecutorError(
            f"executor kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}.{hint}",
            hint="'serial' runs in this process, 'processes' on local processes, 'dask' on a Dask cluster",
        )
    workers = _check_count("workers", workers, kind)
    threads = _check_count("threads", threads, kind)
    if kind == "serial" and workers != 1:
        raise ExecutorError(
            f"the serial executor runs tasks in this process, one at a time, so workers must be 1; got {workers}",
            hint="use the 'processes' or 'dask' executor to run on several workers",
        )
    if address is not None:
        if kind != "dask":
            raise ExecutorError(
                f"a scheduler address is only used by the dask executor; got address={address!r} with {kind!r}",
                hint="use kind='dask' to run on the cluster at that address, or leave the address out",
            )
        if not isinstance(address, str) or not address.strip() or any(c.isspace() for c in address):
            raise ExecutorError(
                f"a Dask scheduler address must look like 'tcp://HOST:PORT'; got {address!r}",
                hint="copy the address that 'dask scheduler' prints, e.g. tcp://10.0.0.5:8786",
            )
    return _BACKENDS[kind](workers=workers, address=address, threads=threads)


__all__ = [
    "KINDS",
    "Executor",
    "ExecutorError",
    "TaskError",
    "TaskFunction",
    "TaskInfo",
    "make_executor",
]
