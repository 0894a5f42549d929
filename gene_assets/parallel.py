"""Independent evaluation units (task × universe × draw, perturbation target × universe × draw) on worker processes.

A results asset's units share nothing, so they run side by side on `workers` processes, each unit with its share
of the cores for BLAS and forests. Every unit's result is the same as on one process: forests grow the same trees
on any number of threads and predict on one, and the perturbation models keep their fixed thread count."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator

from joblib import Parallel, cpu_count, delayed
from threadpoolctl import threadpool_limits


def silence_worker_replacement() -> None:
    """loky warns from its manager thread whenever a pool worker exits cleanly (its idle timeout) while units are
    queued; it starts a replacement at once and the units run, so the warning says nothing a person can act on. A
    worker that crashes is reported separately (TerminatedWorkerError) and still fails the asset. Installed where
    the pool is used (filterwarnings replaces an identical filter, so the list does not grow)."""
    warnings.filterwarnings(
        "ignore",
        message="A worker stopped while some jobs were given to the executor",
        category=UserWarning,
        module="joblib.externals.loky.process_executor",
    )


def worker_count(requested: int = 0) -> int:
    """`requested` processes, or one per core of this machine (cgroup quotas included) when 0."""
    return requested if requested > 0 else cpu_count()


def threads_per_worker(workers: int) -> int:
    return max(1, cpu_count() // max(1, workers))


def _timed(function: Callable, threads: int, expected: tuple, args: tuple) -> tuple:
    started = time.perf_counter()
    try:
        with threadpool_limits(threads):
            value = function(*args)
    except expected as exc:
        value = exc
    return value, time.perf_counter() - started


def run_units(
    function: Callable, units: Iterable[tuple], workers: int, threads: int, expected: tuple[type[Exception], ...] = ()
) -> Iterator[tuple]:
    """(function(*unit), seconds) for every unit, yielded in the units' order, with BLAS/OpenMP limited to
    `threads`; an `expected` exception is yielded in place of the value, so the other units go on. One worker runs
    in this process; more run on a reusable pool of loky processes, which take units from the iterable as they free
    up (large arrays reach them memory-mapped)."""
    if workers <= 1:
        for unit in units:
            yield _timed(function, threads, expected, unit)
        return
    silence_worker_replacement()
    yield from Parallel(n_jobs=workers, backend="loky", return_as="generator")(
        delayed(_timed)(function, threads, expected, unit) for unit in units
    )
