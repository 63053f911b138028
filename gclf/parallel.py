"""Where independent tasks run: a local process pool, or a Dask distributed cluster (``--scheduler``).

Both are ``concurrent.futures`` executors (``Client.get_executor()`` for Dask), so the callers (extraction
over files, cross-validation over folds) are written once. Tasks are module-level functions of picklable
arguments; what they write goes to a folder every machine sees at the same path (the feature cache, the
run folder is written by the caller), by atomic renames.

A cluster is ``dask scheduler`` on one machine and ``dask worker tcp://HOST:8786`` on each of the others
(README, "Scale"); a test starts ``distributed.LocalCluster``.
"""
from __future__ import annotations

from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Iterator

from gclf.errors import GclfError

CONNECT_TIMEOUT = "20s"


@contextmanager
def dask_executor(scheduler: str) -> Iterator[Executor]:
    """An executor whose tasks run on the Dask cluster at ``scheduler`` (``tcp://host:8786``)."""
    try:
        from distributed import Client
    except ImportError:
        raise GclfError("--scheduler needs Dask: pip install 'dask[distributed]' (or gclf[cluster])") from None
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise GclfError(f"cannot reach a Dask scheduler at {scheduler}: {str(exc).splitlines()[0][:200]}") from None
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()


@contextmanager
def executor(scheduler: str | None = None, workers: int | None = None) -> Iterator[Executor | None]:
    """The Dask cluster's executor when ``scheduler`` is given; else a local pool of ``workers`` processes
    (None when ``workers`` is 1: run in this process)."""
    if scheduler:
        with dask_executor(scheduler) as ex:
            yield ex
    elif workers is not None and workers <= 1:
        yield None
    else:
        with ProcessPoolExecutor(workers) as pool:   # workers end with the work
            yield pool
