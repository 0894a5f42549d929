"""Runs on the local instance.

Runs whose process died (SIGKILL, out of memory, a closed terminal) stay STARTED and keep their pool slots, so the
next embedding run would wait for the `gpu` pool forever. On this machine such runs are found by their processes,
marked failed and their slots freed; the caches they wrote stay valid (every entry is written atomically).

`gene-assets run` launches a run only for the asset partitions that are stale or missing (staleness.py: Dagster's stale
status and the checks it lacks), narrowed to those and what follows them in the run, so an unchanged rerun costs
seconds and an edit re-runs what it can change.

SIGINT (Ctrl-C) or SIGTERM stops `gene-assets run` as a whole (RunStopper): the runs in flight are canceled, their
processes end, and no further run starts; the next `gene-assets run` resumes from what is stored."""

from __future__ import annotations

import _thread
import functools
import hashlib
import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import psutil
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.storage.tags import RUN_FAILURE_REASON_TAG
from joblib import cpu_count

from .settings import PROJECT_ROOT
from .staleness import PartitionState, Staleness, observe_inputs

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
            run,
            message=f"The run's process (pid {', '.join(map(str, sorted(pids)))}) is gone: it was killed or "
            "crashed. Stored cache checkpoints stay valid; re-run the same selection to finish it.",
        )
        recovered.append(RecoveredRun(run.run_id, run.job_name, tuple(sorted(pids)), run.run_id in held))
    if held:
        for run in instance.get_runs(filters=RunsFilter(run_ids=list(held))):
            if run.is_finished:
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return recovered


@functools.cache
def code_digest() -> str:
    """sha256 of the package's source and the pinned requirements (recorded in a release's manifest)."""
    digest = hashlib.sha256()
    for path in sorted([*(PROJECT_ROOT / "gene_assets").rglob("*.py"), PROJECT_ROOT / "requirements.lock"]):
        if path.is_file():
            digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def code_revision() -> dict:
    """The git commit of this checkout and whether the package differs from it: uncommitted changes to gene_assets/,
    requirements.lock or pyproject.toml (tracked or new files) are recorded as the sha256 of their diff."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True)

    head = git("rev-parse", "HEAD")
    revision = {"commit": head.stdout.decode().strip() if head.returncode == 0 else None, "code_digest": code_digest()}
    if revision["commit"] is None:
        return {**revision, "uncommitted_changes": None}
    paths = ["gene_assets", "requirements.lock", "pyproject.toml"]
    diff = git("diff", "--binary", "HEAD", "--", *paths).stdout
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", *paths).stdout.split(b"\0")
    for name in sorted(n for n in untracked if n):
        diff += b"\0new file " + name + b"\0" + (PROJECT_ROOT / name.decode()).read_bytes()
    if not diff:
        return {**revision, "uncommitted_changes": False}
    return {**revision, "uncommitted_changes": True, "diff_sha256": hashlib.sha256(diff).hexdigest()}


@dataclass(frozen=True)
class Launch:
    """One run `gene-assets run` launches: a job, its partition, run config and asset selection (None: the job's)."""

    job_name: str
    partition: str | None = None
    run_config: dict | None = None
    selection: tuple[str, ...] | None = None


def execute_launch(defs, instance: DagsterInstance, launch: Launch, run_id: str | None = None) -> bool:
    """One in-process run of `launch` (with `run_id` when given); whether it succeeded."""
    result = defs.resolve_job_def(launch.job_name).execute_in_process(
        instance=instance,
        run_id=run_id,
        partition_key=launch.partition,
        run_config=launch.run_config,
        raise_on_error=False,
        asset_selection=[AssetKey(name) for name in launch.selection] if launch.selection else None,
    )
    return result.success


def execute_launch_in_child(definitions: str, instance_ref, launch: Launch, cores: int, run_id: str) -> None:
    """The body of a run's own process: run `run_id` of the Definitions at `definitions` ("module:attribute", a
    Definitions or a function returning one) and the instance of `instance_ref`, its worker pools sized to its share
    of the machine, `cores`; exit status 0 when the run succeeded. The process leads its own process group (a Ctrl-C
    in the terminal reaches `gene-assets run` alone, which cancels the run first)."""
    os.setpgrp()
    os.environ["LOKY_MAX_CPU_COUNT"] = str(cores)  # what parallel.worker_count and threads_per_worker read
    module, _, attribute = definitions.partition(":")
    defs = getattr(importlib.import_module(module), attribute)
    defs = defs() if callable(defs) else defs
    with DagsterInstance.from_ref(instance_ref) as instance:
        sys.exit(0 if execute_launch(defs, instance, launch, run_id) else 1)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
CHILD_GRACE_S = 10.0
"""Seconds a run's process has to cancel its run after SIGINT before its process group is killed."""


class RunStopped(Exception):
    """Raised in the main thread of `gene-assets run` once a stop signal has been received."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


INTERRUPTIONS = (RunStopped, DagsterExecutionInterruptedError, KeyboardInterrupt)


class RunStopper:
    """SIGINT and SIGTERM stop `gene-assets run` as a whole. Within its context a watcher thread learns of each
    signal through the wakeup fd (whichever handler runs, Dagster's included), marks every run in flight CANCELING and
    sends SIGINT to the runs' own processes (Dagster ends each run as CANCELED; a process still alive after
    CHILD_GRACE_S is killed with its process group). In the main thread the signal raises RunStopped, or, inside an
    in-process run, Dagster's interruption; the run is then marked CANCELED if it ended as interrupted, and no
    further run starts (`check`)."""

    def __init__(self):
        self.signum: int | None = None
        self.requested = threading.Event()  # a stop signal arrived
        self.raised = False  # RunStopped was raised in the main thread
        self.instance: DagsterInstance | None = None
        self.lock = threading.Lock()
        self.in_flight: dict[str, str] = {}  # run id: label
        self.children: dict[str, multiprocessing.Process] = {}  # run id: its process
        self.stopped: dict[str, str] = {}  # run id: label, of the runs in flight at the stop signal
        self.settled = threading.Event()  # the runs in flight were told to cancel

    def __enter__(self) -> RunStopper:
        self.reader, self.writer = socket.socketpair()
        self.writer.setblocking(False)
        self.previous_wakeup_fd = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        self.previous_handlers = {signum: signal.signal(signum, self.raise_stopped) for signum in STOP_SIGNALS}
        self.previous_unraisablehook, sys.unraisablehook = sys.unraisablehook, self.unraisable
        threading.Thread(target=self.watch, name="gene-assets stop signals", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous_handlers.items():  # once stopping, later signals are ignored
            signal.signal(signum, handler if self.signum is None else signal.SIG_IGN)
        signal.set_wakeup_fd(self.previous_wakeup_fd)
        sys.unraisablehook = self.previous_unraisablehook
        self.writer.close()

    def unraisable(self, unraisable) -> None:
        """An interruption raised where Python ignores exceptions (a weakref callback) is interrupted again by the
        watcher (`stop`), not reported; anything else is."""
        if not (self.requested.is_set() and isinstance(unraisable.exc_value, INTERRUPTIONS)):
            self.previous_unraisablehook(unraisable)

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.requested.set()

    def raise_stopped(self, signum, frame) -> None:
        self.request(signum)
        if not self.raised:
            self.raised = True
            raise RunStopped(self.signum)

    def check(self) -> None:
        """Raise RunStopped once a stop signal has been received."""
        if self.signum is not None and not self.raised:
            self.raised = True
            raise RunStopped(self.signum)

    def watch(self) -> None:
        with self.reader:
            while data := self.reader.recv(64):
                stops = [signum for signum in data if signum in STOP_SIGNALS]
                if stops and not self.settled.is_set():
                    self.request(stops[0])
                    self.stop()

    def stop(self) -> None:
        with self.lock:
            in_flight = dict(self.in_flight)
            children = list(self.children.values())
        name = signal.Signals(self.signum).name
        for run_id in in_flight if self.instance else ():
            run = self.instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                self.instance.report_run_canceling(run, message=f"{name}: canceling the run.")
        self.stopped = in_flight
        for process in children:  # the run's process alone: its workers and log watchers end with it
            try:
                os.kill(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        self.settled.set()
        deadline = time.monotonic() + CHILD_GRACE_S
        while time.monotonic() < deadline and self.in_process_run():
            time.sleep(1.0)  # an interruption raised in a weakref callback is lost (`unraisable`): once more
            _thread.interrupt_main(signal.SIGINT)
        multiprocessing.connection.wait(
            [process.sentinel for process in children], timeout=max(0.0, deadline - time.monotonic())
        )
        for process in children:
            signal_group(process.pid, signal.SIGKILL)

    def in_process_run(self) -> bool:
        with self.lock:
            return bool(set(self.in_flight) - set(self.children))

    def canceled(self) -> list[str]:
        """The labels of the runs in flight at the stop signal that ended CANCELED."""
        runs = self.instance.get_runs(filters=RunsFilter(run_ids=list(self.stopped))) if self.stopped else []
        canceled = {run.run_id for run in runs if run.status == DagsterRunStatus.CANCELED}
        return [label for run_id, label in self.stopped.items() if run_id in canceled]

    def started(self, run_id: str, label: str, process: multiprocessing.Process | None = None) -> None:
        """Record a run about to start, and start its own process when it has one; RunStopped when stopping."""
        with self.lock:
            if self.signum is not None:
                raise RunStopped(self.signum)
            self.in_flight[run_id] = label
            if process is not None:
                self.children[run_id] = process
                process.start()

    def finished(self, run_id: str) -> None:
        """The run's execution is over: when stopping, end what is left of its process group and mark it CANCELED
        unless it ended otherwise than by the interruption."""
        with self.lock:
            self.in_flight.pop(run_id, None)
            process = self.children.pop(run_id, None)
        run = self.instance.get_run_by_id(run_id)
        interrupted = run is not None and run.tags.get(RUN_FAILURE_REASON_TAG) == "UNEXPECTED_TERMINATION"
        if not self.requested.wait(2.0 if interrupted else 0.0):
            return
        if process is not None:
            signal_group(process.pid, signal.SIGKILL)
        if run is not None and (not run.is_finished or interrupted):
            self.instance.report_run_canceled(run, message=f"{signal.Signals(self.signum).name}: run canceled.")


def signal_group(pid: int, signum: int) -> None:
    """Send `signum` to the process group `pid` leads, if it still exists."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class PipelineRunner:
    """Launches the jobs of `gene-assets run`, each narrowed to its stale and missing asset partitions (all of them
    with `force`) and skipped when there are none; records failed, skipped and launched runs. The data-directory files
    and the backbones' inputs are observed first. `execute` runs one launch in this process; `execute_all` runs
    independent launches up to `concurrent_runs` at a time, each in its own process (which rebuilds the Definitions
    from `definitions` and the instance from its ref) with its share of the cores, so that the cores a run leaves
    idle while its last units finish serve the next run. With the default worker count a unit's result does not depend
    on the share: each unit runs on one BLAS thread either way (parallel.py)."""

    def __init__(
        self,
        defs,
        instance: DagsterInstance,
        force: bool = False,
        concurrent_runs: int = 1,
        definitions: str = "gene_assets.definitions:defs",
        stopper: RunStopper | None = None,
    ):
        self.defs, self.instance, self.force = defs, instance, force
        self.concurrent_runs, self.definitions = concurrent_runs, definitions
        self.stopper = stopper or RunStopper()
        self.stopper.instance = instance
        self.graph = defs.resolve_asset_graph()
        observe_inputs(instance, defs.resources)
        self.staleness = Staleness(defs, instance)
        self.failed, self.skipped, self.launches = [], [], []

    @property
    def launched(self) -> int:
        return len(self.launches)

    def execute(
        self,
        job_name: str,
        partition: str | None = None,
        run_config: dict | None = None,
        selection: list[str] | None = None,
    ) -> bool:
        return self.run(Launch(job_name, partition, run_config, tuple(selection) if selection else None))

    def run(self, launch: Launch) -> bool:
        """Run the launch's stale and missing asset partitions in this process; whether it succeeded (or was up to
        date)."""
        launch = self.pending(launch)
        if launch is None:
            return True
        return self.record(launch, self.execute_here(launch))

    def execute_here(self, launch: Launch) -> bool:
        """One in-process run, canceled by a stop signal; whether it succeeded."""
        run_id = str(uuid.uuid4())
        self.stopper.started(run_id, label_of(launch))
        try:
            success = execute_launch(self.defs, self.instance, launch, run_id)
        finally:
            self.stopper.finished(run_id)
        self.stopper.check()
        return success

    def execute_all(self, launches: list[Launch]) -> list[bool]:
        """Whether each launch succeeded (or was up to date). The launches must not read each other's outputs: their
        stale status is all taken before any of them runs."""
        planned = [self.pending(launch) for launch in launches]
        todo = [i for i, launch in enumerate(planned) if launch is not None]
        if self.concurrent_runs <= 1 or len(todo) <= 1 or not self.instance.is_persistent:
            outcomes = {i: self.execute_here(planned[i]) for i in todo}
        else:
            context = multiprocessing.get_context("spawn")
            cores = max(1, cpu_count() // self.concurrent_runs)  # more processes than cores thrash the caches

            def in_child(i: int) -> bool:
                launch, run_id = planned[i], str(uuid.uuid4())
                process = context.Process(
                    target=execute_launch_in_child,
                    args=(self.definitions, self.instance.get_ref(), launch, cores, run_id),
                    name=f"gene-assets {launch.job_name} {launch.partition or ''}".strip(),
                )
                try:
                    self.stopper.started(run_id, label_of(launch), process)
                except RunStopped:
                    return False
                try:
                    process.join()
                finally:
                    self.stopper.finished(run_id)
                return process.exitcode == 0

            with ThreadPoolExecutor(self.concurrent_runs) as pool:
                outcomes = dict(zip(todo, pool.map(in_child, todo)))
            self.stopper.check()
        return [launch is None or self.record(launch, outcomes[i]) for i, launch in enumerate(planned)]

    def job_keys(self, launch: Launch) -> list[AssetKey]:
        if launch.selection:
            return [AssetKey(name) for name in launch.selection]
        return sorted(self.defs.resolve_job_def(launch.job_name).asset_layer.executable_asset_keys)

    def states(self, launch: Launch) -> dict[AssetKey, PartitionState]:
        """The status of every asset partition the launch would write, under its run config."""
        self.staleness.refresh()
        return {key: self.staleness.state(key, launch.partition, launch.run_config) for key in self.job_keys(launch)}

    def pending(self, launch: Launch) -> Launch | None:
        """The launch narrowed to its stale and missing assets and those after them in its selection (they read the
        new outputs), or None (recorded as skipped) when every one is fresh. RunStopped once stopping."""
        self.stopper.check()
        keys = self.job_keys(launch)
        todo = set(keys) if self.force else {key for key, state in self.states(launch).items() if state.needs_run}
        if not todo:
            self.skipped.append(label_of(launch))
            return None
        grown = True
        while grown:
            after = {key for key in keys if key not in todo and self.graph.get(key).parent_keys & todo}
            todo |= after
            grown = bool(after)
        names = tuple(key.to_user_string() for key in keys if key in todo)
        ops = (launch.run_config or {}).get("ops")
        config = (
            {**launch.run_config, "ops": {n: c for n, c in ops.items() if n in names}} if ops else launch.run_config
        )
        narrowed = replace(launch, selection=names, run_config=config)
        self.launches.append(narrowed)
        return narrowed

    def record(self, launch: Launch, success: bool) -> bool:
        if not success:
            self.failed.append(label_of(launch))
        return success


def label_of(launch: Launch) -> str:
    return launch.job_name + (f" {launch.partition}" if launch.partition else "")
