"""Observable source assets: the files outputs are computed from, each with its content digest as data version.

- `data_directory/<name>`: one per file of the data directory (DATA_FILES); its data version is the file's sha256, so
  `touch` changes nothing and an edit that keeps size and mtime still counts.
- `backbone_inputs`, one partition per backbone: a digest of its registry entry (kind, model, revision, allowed
  precisions, …), the task evidence its CPU precision is chosen on, and the sha256 of every file its vectors are
  computed from that can change in place (a precomputed file, a local model directory, a
  weights package's model directory; hub snapshots are pinned by revision and sha256).
Each asset that reads one of them depends on it (`DATA_FILE_READERS`, gene_embeddings on its backbone's partition), so
Dagster marks exactly those assets stale when the content changes. They are observed at the start of `gene-assets
run` and `gene-assets status`, and by `input_observation_sensor` while the daemon runs (the UI's `dagster dev`)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSpec,
    DataVersion,
    DataVersionsByPartition,
    DefaultSensorStatus,
    ObserveResult,
    RunRequest,
    SensorEvaluationContext,
    define_asset_job,
    multi_observable_source_asset,
    observable_source_asset,
    sensor,
)

from ..embeddings.calibration import load_evidence
from ..embeddings.partitions import backbone_partitions
from ..embeddings.registry import all_backbones
from ..storage import sha256_file
from ..tasks.gene_properties import GENE_SET_FILES
from .data_directory import DATA_FILES, DataDirectory

DATA_GROUP = "data_directory"
ABSENT = "absent"
"""The data version of a file that is not there (the asset reading it fails with the file's name)."""


def data_file_key(name: str) -> AssetKey:
    return AssetKey([DATA_GROUP, name])


DATA_FILE_READERS = {
    "gene_catalog": ["ncbi_gene_info"],
    "gene_summaries": ["refseq_summaries"],
    "geneformer_labels": ["geneformer_tasks", "chen2020_tf_range"],
    "gene_type_labels": ["gene_type_table"],
    "gene_property_labels": ["human_tfs", "hgnc_gene_groups", "kegg_gene_sets", "go_bp_gene_sets", "omim_gene_sets"],
    "gene_interaction_pairs": [f"ggi_{split}_{part}" for split in ("train", "test") for part in ("text", "label")],
    "perturbation_signatures": ["replogle_signatures"],
    "cell_datasets": [name for name in DATA_FILES if name.startswith("single_cell_")],
    "term_masking": sorted(GENE_SET_FILES.values()),
}
"""The data-directory files each asset reads (cell_datasets: the built-in datasets' files, for every partition)."""


def content_digest(path: Path) -> str:
    return sha256_file(path) if path.is_file() else ABSENT


@multi_observable_source_asset(
    name="data_directory_files",
    specs=[
        AssetSpec(data_file_key(name), description=f"{relative}: {contents}", group_name=DATA_GROUP, kinds={"file"})
        for name, (relative, contents) in DATA_FILES.items()
    ],
    can_subset=True,
    required_resource_keys={"data_directory"},
)
def data_directory_files(context):
    """The sha256 of every selected data-directory file."""
    root = Path(context.resources.data_directory.path).expanduser()
    for key in context.selected_asset_keys:
        path = root / DATA_FILES[key.path[-1]][0]
        yield ObserveResult(
            asset_key=key,
            data_version=DataVersion(content_digest(path)),
            metadata={"path": str(path), "bytes": path.stat().st_size if path.is_file() else 0},
        )


def backbone_files(name: str) -> list[Path]:
    """The files a backbone's vectors are computed from that can change in place: its precomputed file, a local model
    directory's files and a weights package's model directory."""
    backbone = all_backbones().get(name)
    if backbone is None:
        return []
    directories = [Path(backbone.model_id)] if backbone.model_id and Path(backbone.model_id).is_dir() else []
    if backbone.weights_package:
        try:
            directories.append(Path(importlib.import_module(backbone.weights_package).get_model_path()))
        except ImportError:
            pass  # not installed yet: `gene-assets run` installs it, the embedding run reports it missing
    return ([Path(backbone.source_path)] if backbone.source_path else []) + sorted(
        p for directory in directories for p in directory.rglob("*") if p.is_file()
    )


def backbone_digest(name: str) -> str:
    """What a backbone's vectors depend on besides the texts and the code (the module docstring)."""
    backbone = all_backbones().get(name)
    entry = dataclasses.asdict(backbone) if backbone else None
    payload = {
        "entry": entry,
        "evidence": load_evidence().get(name, {}),
        "files": {str(p): content_digest(p) for p in backbone_files(name)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@observable_source_asset(
    partitions_def=backbone_partitions,
    group_name="embeddings",
    description="What a backbone's vectors depend on besides the texts and the code: its registry entry (allowed "
    "precisions included), its precision evidence, and its local files' sha256.",
)
def backbone_inputs(context) -> DataVersionsByPartition:
    return DataVersionsByPartition(
        {name: backbone_digest(name) for name in context.instance.get_dynamic_partitions(backbone_partitions.name)}
    )


OBSERVED = [data_directory_files, backbone_inputs]

data_files_observation_job = define_asset_job(
    "data_files_observation_job",
    selection=[data_file_key(name) for name in DATA_FILES],
    description="Observe the data-directory files (their sha256).",
)
backbone_inputs_observation_job = define_asset_job(
    "backbone_inputs_observation_job",
    selection=[backbone_inputs.key],
    description="Observe every backbone's inputs (registry entry, evidence, CPU, local files).",
)


def file_stamps(root: Path) -> str:
    """A digest of (size, mtime, ctime) of every data-directory file: cheap to take, changed by any write."""
    stamps = []
    for relative, _ in DATA_FILES.values():
        path = root / relative
        stat = path.stat() if path.is_file() else None
        stamps.append([relative, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns] if stat else [relative])
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()


@sensor(
    jobs=[data_files_observation_job, backbone_inputs_observation_job],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Observes the data-directory files (sha256) when one of them was written, and every backbone's inputs "
    "at the daemon's start and when the set of backbones changes.",
)
def input_observation_sensor(context: SensorEvaluationContext, data_directory: DataDirectory):
    """Cursor: the files' stamps and the backbones; only a change launches an observation run."""
    previous = json.loads(context.cursor) if context.cursor else {}
    current = {
        "files": file_stamps(Path(data_directory.path).expanduser()),
        "backbones": sorted(context.instance.get_dynamic_partitions(backbone_partitions.name)),
    }
    if current["files"] != previous.get("files"):
        yield RunRequest(job_name=data_files_observation_job.name)
    if current["backbones"] != previous.get("backbones"):
        yield RunRequest(job_name=backbone_inputs_observation_job.name)
    context.update_cursor(json.dumps(current))
