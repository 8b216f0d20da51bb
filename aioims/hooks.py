"""Fault hooks: named points at the step boundaries of an upload.

The upload coordinator and the multipart driver ``await reach(name, **info)``
at each point where a crash or a lost answer matters; by default nothing
happens.  Tests install a hook to stop exactly there (raise, cancel, freeze
the thread, or ``os.kill(os.getpid(), SIGKILL)`` in a child process)::

    from aioims import hooks

    async def crash_at_complete(name: str, info: dict[str, object]) -> None:
        if name == "complete:after":
            raise SystemExit  # or freeze, or kill

    with hooks.installed(crash_at_complete):
        await ims.upload_image(...)

Points (``docs/uploading.md`` has the table of what the next run does):

* coordinator: ``create:before`` (intent recorded, request not sent),
  ``create:after`` (answer received, image id not yet recorded),
  ``prepare:after``, ``done:before`` (``done-sent`` recorded, request not
  sent), ``done:after`` (answer received), ``wait:after`` (image active,
  not yet verified);
* driver: ``multipart-create:after`` (upload id received, not yet in the
  journal), ``part:after`` (a part stored, not yet in the journal),
  ``complete:before``, ``complete:after`` (object complete, not yet in
  the journal).

The hook is held in a context variable: it applies to the task that
installed it and to the tasks that one starts.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["POINTS", "Hook", "installed", "reach"]

Hook = Callable[[str, dict[str, Any]], Awaitable[None]]

POINTS = (
    "create:before",
    "create:after",
    "prepare:after",
    "multipart-create:after",
    "part:after",
    "complete:before",
    "complete:after",
    "done:before",
    "done:after",
    "wait:after",
)

_hook: contextvars.ContextVar[Hook | None] = contextvars.ContextVar("aioims_hook", default=None)


async def reach(point: str, /, **info: Any) -> None:
    """Called by the library at ``point``; runs the installed hook."""
    hook = _hook.get()
    if hook is not None:
        await hook(point, info)


@contextmanager
def installed(hook: Hook) -> Iterator[None]:
    """Install ``hook`` for the current context (and tasks started from it)."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)
