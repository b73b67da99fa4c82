"""Named, supervised background tasks: none of them may die silently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from notifyd.logs import get_logger

log = get_logger(__name__)


class Supervisor:
    """Starts named tasks and reports any that ends on its own.

    A task of the daemon runs until cancelled; one that returns or raises is a bug, so it is
    logged with its name and `on_failure` stops the daemon loudly.
    """

    def __init__(self, on_failure: Callable[[str], None]) -> None:
        self._on_failure = on_failure
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._stopping: set[str] = set()

    def spawn(self, name: str, factory: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        task = asyncio.create_task(factory(), name=name)
        self._tasks[name] = task
        task.add_done_callback(self._on_done)

    def running(self, prefix: str = "") -> int:
        return sum(
            1 for name, task in self._tasks.items() if name.startswith(prefix) and not task.done()
        )

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        name = task.get_name()
        if task.cancelled() or name in self._stopping:
            return
        exc = task.exception()
        if exc is None:
            log.critical("task_exited", task=name)
        else:
            log.critical(
                "task_crashed",
                task=name,
                error_type=type(exc).__name__,
                error=str(exc),
                exc_info=exc,
            )
        self._on_failure(name)

    async def stop(self, prefix: str = "", grace: float = 0.0) -> None:
        """Stop the tasks whose name starts with `prefix` and wait for them to end.

        They get `grace` seconds to end on their own (a task asked to stop finishing what
        it holds) before they are cancelled.
        """
        names = [name for name in self._tasks if name.startswith(prefix)]
        self._stopping.update(names)
        tasks = [self._tasks.pop(name) for name in names]
        if grace > 0 and tasks:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
