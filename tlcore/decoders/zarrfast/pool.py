"""A small per-process thread pool for decoding the chunks of one read, safe across fork.

The pool's threads are created lazily in the process that uses them; a forked child (a
DataLoader worker forked after the parent read a crop) drops the parent's pool
(``os.register_at_fork`` and a pid check) and starts its own threads on its first read,
instead of queueing work for threads that do not exist there.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["run"]


class _Job:
    """Tasks shared by the calling thread and the pool's helpers: whoever is free takes the
    next; the caller returns when every task taken has finished."""

    def __init__(self, fn: Callable[[Any], None], tasks: Sequence[Any]) -> None:
        self.fn, self.tasks = fn, tasks
        self.next = 0
        self.running = 0
        self.error: BaseException | None = None
        self.cond = threading.Condition(threading.Lock())

    def work(self) -> None:
        while True:
            with self.cond:
                if self.error is not None or self.next >= len(self.tasks):
                    return
                task = self.tasks[self.next]
                self.next += 1
                self.running += 1
            try:
                self.fn(task)
            except BaseException as exc:
                with self.cond:
                    if self.error is None:
                        self.error = exc
            finally:
                with self.cond:
                    self.running -= 1
                    if self.running == 0:
                        self.cond.notify_all()

    def wait(self) -> None:
        with self.cond:
            while self.running:
                self.cond.wait()
        if self.error is not None:
            raise self.error


class _Pool:
    """Daemon threads that run helpers, created on demand in the process that owns them."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def help(self, job: _Job, helpers: int) -> None:
        with self.lock:
            while len(self.threads) < helpers:
                thread = threading.Thread(target=self._loop, name="tlcore-zarrfast", daemon=True)
                thread.start()
                self.threads.append(thread)
        for _ in range(helpers):
            self.queue.put(job)

    def _loop(self) -> None:
        while True:
            self.queue.get().work()


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    pool = _pool
    if pool is None or pool.pid != os.getpid():
        with _pool_lock:
            if _pool is None or _pool.pid != os.getpid():
                _pool = _Pool()
            pool = _pool
    return pool


def _after_fork_in_child() -> None:
    # The parent's threads do not exist here, and a lock one of them held stays held.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def run(fn: Callable[[Any], None], tasks: Sequence[Any], workers: int) -> None:
    """``fn(task)`` for every task, on ``workers`` threads, the calling thread one of them.

    The first exception a task raises is raised here, once every started task has finished
    (tasks not yet started are skipped)."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            fn(task)
        return
    job = _Job(fn, tasks)
    _get_pool().help(job, workers - 1)
    job.work()
    job.wait()
