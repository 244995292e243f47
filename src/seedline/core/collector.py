"""The cycle collector, paused while ``seedline run`` and ``seedline serve`` start up.

Start-up (importing NumPy, pandas, scikit-learn, SQLAlchemy, pydantic and the pipeline's
classes; reading the spec; loading and splitting the data, or loading the model) creates
a few hundred thousand objects that nearly all live until the process ends. The
collector's young passes examine each of them once or twice on its way to the oldest
generation and find nothing to free: about 0.1 s of a run or of a server's start on the
project's 2-core machine (see docs/performance.md).

``cli.launch`` pauses the collector when a ``run`` or ``serve`` command starts; the
command resumes it once started up (``execution.runner.run`` after ``prepare``; the
server once its model is loaded, or the supervisor of ``--workers N`` before it starts
them), first moving every object made so far into the permanent generation
(``gc.freeze``, the standard library's tool for long-lived start-up objects), so that no
later pass examines them either. Garbage without cycles is freed at once throughout, as
ever. The limit: a reference cycle that became garbage while the collector was paused
(during the data loading, say) is frozen with the rest and kept until the process ends.

Nothing here acts unless :func:`pause` did: a program that calls seedline's functions
in-process, or a collector the user switched off, is left as it is.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Switch the collector off until :func:`resume`, if it is on."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Freeze what start-up made and switch the collector back on, if :func:`pause` switched it off."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def paused() -> bool:
    """Whether :func:`pause` has the collector off now."""
    return _paused
