"""Runs whose process died (SIGKILL, out of memory, a closed terminal) stay STARTED and keep their pool slots, so the
next embedding run would wait for the `gpu` pool forever. On this machine such runs are found by their processes,
marked failed and their slots freed; the caches they wrote stay valid (every entry is written atomically)."""

from __future__ import annotations

from dataclasses import dataclass

import psutil
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


@dataclass(frozen=True)
class RecoveredRun:
    run_id: str
    job_name: str
    pids: tuple[int, ...]
    held_pool_slots: bool


def process_alive(pid: int, started_before: float) -> bool:
    """True when `pid` is a live process that already existed at `started_before` (a recycled pid does not count)."""
    try:
        return psutil.Process(pid).create_time() <= started_before + 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def run_processes(instance: DagsterInstance, run_id: str) -> tuple[set[int], float]:
    """The pids that wrote the run's events, and the time of its last event."""
    entries = instance.all_logs(run_id)
    pids = {e.dagster_event.pid for e in entries if e.dagster_event is not None and e.dagster_event.pid}
    return pids, max((e.timestamp for e in entries), default=0.0)


def recover_dead_runs(instance: DagsterInstance) -> list[RecoveredRun]:
    """Fail every unfinished run none of whose processes is alive on this machine, and free the pool slots of
    every finished run that still holds some."""
    recovered = []
    held = instance.event_log_storage.get_concurrency_run_ids()
    for run in instance.get_runs(filters=RunsFilter(statuses=UNFINISHED)):
        pids, last_event = run_processes(instance, run.run_id)
        if not pids or any(process_alive(pid, last_event) for pid in pids):
            continue
        instance.report_run_failed(
            run, message=f"The run's process (pid {', '.join(map(str, sorted(pids)))}) is gone: it was killed or "
                         "crashed. Stored cache checkpoints stay valid; re-run the same selection to finish it.")
        recovered.append(RecoveredRun(run.run_id, run.job_name, tuple(sorted(pids)), run.run_id in held))
    if held:
        for run in instance.get_runs(filters=RunsFilter(run_ids=list(held))):
            if run.is_finished:
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return recovered
