"""Worker processes that never outlive the command that started them.

A ``ProcessPoolExecutor`` worker whose parent is killed (SIGKILL, OOM) is not told: it stays
alive, blocked writing a result to a pipe nobody reads. Every worker here asks Linux to kill it
when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) and, where that is unavailable,
checks its parent from a thread once a second. Workers also get one BLAS thread each: the pool
shares the cores, and BLAS threads per worker would only oversubscribe them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

from pipeline.core import config

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_CHECK_S = 1.0


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:  # re-parented: ours is gone
                os._exit(1)
            threading.Event().wait(PARENT_CHECK_S)

    # the parent may have died before prctl took effect: the watcher catches that too
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _init_worker(parent: int, blas_threads: int | None, setup, setup_args: tuple,
                 plugins: tuple[str, ...] = ()) -> None:
    _die_with_parent(parent)
    # the parent's plug-in optimizers (a forked worker has them already, a spawned one not)
    from pipeline.core.plugins import ensure_plugins

    ensure_plugins(plugins)
    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(blas_threads)
    if setup is not None:
        setup(*setup_args)


def process_pool(jobs: int, blas_threads: int | None = 1, setup=None,
                 setup_args: tuple = ()) -> ProcessPoolExecutor:
    """A pool of ``jobs`` workers that die with this process; each runs ``setup(*setup_args)``
    once at its start (to receive data once rather than with every task)."""
    from pipeline.core.plugins import plugin_files

    return ProcessPoolExecutor(max(1, jobs), initializer=_init_worker,
                               initargs=(os.getpid(), blas_threads, setup, setup_args,
                                         plugin_files()))


def default_jobs() -> int:
    return max(1, min(config.MAX_JOBS, os.cpu_count() or 1))
