"""Runs on the local instance.

Runs whose process died (SIGKILL, out of memory, a closed terminal) stay STARTED and keep their pool slots, so the
next embedding run would wait for the `gpu` pool forever. On this machine such runs are found by their processes,
marked failed and their slots freed; the caches they wrote stay valid (every entry is written atomically).

Each run that `gene-assets run` launches is tagged with a fingerprint of what its outputs depend on; a run whose
outputs already carry the current fingerprint is skipped, so an unchanged rerun costs seconds."""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    MultiPartitionsDefinition,
    RunsFilter,
)
from dagster._core.definitions.partitions.context import partition_loading_context
from joblib import cpu_count

from .embeddings.discovered import DiscoveredRegistry
from .embeddings.registry import all_backbones
from .settings import PROJECT_ROOT
from .sources.data_directory import DATA_FILES
from .storage import storage_path

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


FINGERPRINT_TAG = "gene_assets/fingerprint"
"""Run tag: what a run's outputs were computed from (code, config, inputs, upstream materializations)."""


@functools.cache
def code_digest() -> str:
    """sha256 of the package's source and the pinned requirements: any change makes every run stale."""
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


def file_stamps(paths) -> list[tuple[str, int, int, int]]:
    """(path, size, mtime, ctime) of each existing file: a changed input file changes the fingerprint. The ctime is
    the kernel's (no tool sets it back), so an edit that keeps the size and restores the mtime counts too."""
    stats = [(str(p), p.stat()) for p in map(Path, paths) if p.is_file()]
    return sorted((path, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for path, st in stats)


def backbone_files(name: str) -> list[Path]:
    """The files a backbone's vectors are computed from that can change in place: its precomputed file, a local model
    directory's files and a weights package's model directory. (Hub snapshots are pinned by revision and sha256.)"""
    backbone = all_backbones().get(name)
    if backbone is None:
        return []
    directories = [Path(backbone.model_id)] if backbone.model_id and Path(backbone.model_id).is_dir() else []
    if backbone.weights_package:
        try:
            directories.append(Path(importlib.import_module(backbone.weights_package).get_model_path()))
        except ImportError:
            pass  # the run itself reports the missing package
    return ([Path(backbone.source_path)] if backbone.source_path else []) + sorted(
        p for directory in directories for p in directory.rglob("*") if p.is_file()
    )


def partition_backbone(graph, keys: set[AssetKey], partition: str | None) -> str | None:
    """The backbone dimension of the run's partition (backbone × view or backbone × dataset), if it has one."""
    for key in keys:
        partitions_def = graph.get(key).partitions_def
        if (
            partition
            and isinstance(partitions_def, MultiPartitionsDefinition)
            and "backbone" in partitions_def.partition_dimension_names
        ):
            return partitions_def.get_partition_key_from_str(str(partition)).keys_by_dimension["backbone"]
    return None


def config_paths(config) -> list[str]:
    """Every string in a run config that names an existing file (a user's h5ad or expression file)."""
    if isinstance(config, dict):
        return [p for value in config.values() for p in config_paths(value)]
    if isinstance(config, (list, tuple)):
        return [p for value in config for p in config_paths(value)]
    return [config] if isinstance(config, str) and len(config) < 4096 and Path(config).is_file() else []


def latest_materialization(instance: DagsterInstance, key: AssetKey, partition: str | None):
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0] if records else None


def fingerprint(
    instance: DagsterInstance,
    graph,
    keys: set[AssetKey],
    partition: str | None,
    run_config: dict | None,
    input_files: list,
    resources: dict,
) -> str:
    """Digest of everything the run's outputs depend on: the code, the resources' settings, the partition and run
    config, the input files (with the files of the partition's backbone), and the latest materialization of every
    upstream asset partition outside the run that the run's partition reads (through the partition mappings)."""
    latest = {}
    with partition_loading_context(dynamic_partitions_store=instance):
        for key in keys:
            own = partition if graph.get(key).partitions_def else None
            for parent in graph.get_parents_partitions(key, own).parent_partitions:
                if parent.asset_key not in keys:
                    record = latest_materialization(instance, parent.asset_key, parent.partition_key)
                    latest[f"{parent.asset_key.to_user_string()}[{parent.partition_key or ''}]"] = (
                        record.storage_id if record else None
                    )
    settings = {name: r.model_dump() for name, r in sorted(resources.items()) if hasattr(r, "model_dump")}
    backbone = partition_backbone(graph, keys, partition)
    files = [*input_files, *config_paths(run_config or {}), *(backbone_files(backbone) if backbone else [])]
    payload = {
        "code": code_digest(),
        "resources": settings,
        "partition": partition,
        "config": run_config or {},
        "upstream": latest,
        "files": file_stamps(files),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def up_to_date(instance: DagsterInstance, graph, keys: set[AssetKey], partition: str | None, digest: str) -> bool:
    """True when every asset's latest materialization (of this partition) came from a run with this fingerprint and
    its stored file is still there."""
    for key in keys:
        record = latest_materialization(instance, key, partition if graph.get(key).partitions_def else None)
        run = instance.get_run_by_id(record.run_id) if record else None
        if run is None or run.tags.get(FINGERPRINT_TAG) != digest:
            return False
        stored = record.asset_materialization.metadata.get("path")
        if stored is not None and not storage_path(stored.value).is_file():
            return False
    return True


@dataclass(frozen=True)
class Launch:
    """One run `gene-assets run` launches: a job, its partition, run config and asset selection (None: the job's)."""

    job_name: str
    partition: str | None = None
    run_config: dict | None = None
    selection: tuple[str, ...] | None = None


def execute_launch(defs, instance: DagsterInstance, launch: Launch, digest: str) -> bool:
    """One in-process run of `launch`, tagged with its fingerprint; whether it succeeded."""
    result = defs.resolve_job_def(launch.job_name).execute_in_process(
        instance=instance,
        partition_key=launch.partition,
        run_config=launch.run_config,
        raise_on_error=False,
        asset_selection=[AssetKey(name) for name in launch.selection] if launch.selection else None,
        tags={FINGERPRINT_TAG: digest},
    )
    return result.success


def execute_launch_in_child(definitions: str, instance_ref, launch: Launch, digest: str, cores: int) -> None:
    """The body of a run's own process: the Definitions at `definitions` ("module:attribute", a Definitions or a
    function returning one) and the instance of `instance_ref`, its worker pools sized to its share of the machine,
    `cores`; exit status 0 when the run succeeded."""
    os.environ["LOKY_MAX_CPU_COUNT"] = str(cores)  # what parallel.worker_count and threads_per_worker read
    module, _, attribute = definitions.partition(":")
    defs = getattr(importlib.import_module(module), attribute)
    defs = defs() if callable(defs) else defs
    with DagsterInstance.from_ref(instance_ref) as instance:
        sys.exit(0 if execute_launch(defs, instance, launch, digest) else 1)


class PipelineRunner:
    """Launches the jobs of `gene-assets run`, skipping a run whose outputs already carry its fingerprint unless
    `force`; records failed and skipped runs. `execute` runs one launch in this process; `execute_all` runs
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
    ):
        self.defs, self.instance, self.force = defs, instance, force
        self.concurrent_runs, self.definitions = concurrent_runs, definitions
        self.graph = defs.resolve_asset_graph()
        root = Path(defs.resources["data_directory"].path)
        self.input_files = [root / relative for relative, _ in DATA_FILES.values()] + [DiscoveredRegistry().path]
        self.failed, self.skipped, self.launched = [], [], 0

    def execute(
        self,
        job_name: str,
        partition: str | None = None,
        run_config: dict | None = None,
        selection: list[str] | None = None,
    ) -> bool:
        launch = Launch(job_name, partition, run_config, tuple(selection) if selection else None)
        digest = self.pending(launch)
        if digest is None:
            return True
        success = execute_launch(self.defs, self.instance, launch, digest)
        return self.record(launch, success)

    def execute_all(self, launches: list[Launch]) -> list[bool]:
        """Whether each launch succeeded (or was up to date). The launches must not read each other's outputs: their
        fingerprints are all taken before any of them runs."""
        digests = [self.pending(launch) for launch in launches]
        todo = [i for i, digest in enumerate(digests) if digest is not None]
        if self.concurrent_runs <= 1 or len(todo) <= 1 or not self.instance.is_persistent:
            outcomes = {i: execute_launch(self.defs, self.instance, launches[i], digests[i]) for i in todo}
        else:
            context = multiprocessing.get_context("spawn")
            cores = max(1, cpu_count() // self.concurrent_runs)  # more processes than cores thrash the caches

            def in_child(i: int) -> bool:
                launch = launches[i]
                process = context.Process(
                    target=execute_launch_in_child,
                    args=(self.definitions, self.instance.get_ref(), launch, digests[i], cores),
                    name=f"gene-assets {launch.job_name} {launch.partition or ''}".strip(),
                )
                process.start()
                process.join()
                return process.exitcode == 0

            with ThreadPoolExecutor(self.concurrent_runs) as pool:
                outcomes = dict(zip(todo, pool.map(in_child, todo)))
        return [digest is None or self.record(launches[i], outcomes[i]) for i, digest in enumerate(digests)]

    def pending(self, launch: Launch) -> str | None:
        """The launch's fingerprint, or None (recorded as skipped) when its outputs already carry it."""
        job = self.defs.resolve_job_def(launch.job_name)
        keys = (
            {AssetKey(name) for name in launch.selection}
            if launch.selection
            else set(job.asset_layer.executable_asset_keys)
        )
        digest = fingerprint(
            self.instance, self.graph, keys, launch.partition, launch.run_config, self.input_files, self.defs.resources
        )
        if not self.force and up_to_date(self.instance, self.graph, keys, launch.partition, digest):
            self.skipped.append(label_of(launch))
            return None
        self.launched += 1
        return digest

    def record(self, launch: Launch, success: bool) -> bool:
        if not success:
            self.failed.append(label_of(launch))
        return success


def label_of(launch: Launch) -> str:
    return launch.job_name + (f" {launch.partition}" if launch.partition else "")
