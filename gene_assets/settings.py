"""Paths and environment variables shared by every module."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DATA_DIR_ENV = "GENE_ASSETS_DATA_DIR"
HOME_ENV = "GENE_ASSETS_HOME"
DVC_REMOTE_ENV = "GENE_ASSETS_DVC_REMOTE"
RELEASE_REPO_ENV = "GENE_ASSETS_RELEASE_REPO"
STORAGE_ENV = "GENE_ASSETS_STORAGE"
"""Root of asset storage: a directory or an fsspec URL such as s3://bucket/storage (default $GENE_ASSETS_HOME/storage)."""
EMBEDDING_CACHE_ENV = "GENE_ASSETS_EMBEDDING_CACHE"
DISCOVERED_REGISTRY_ENV = "GENE_ASSETS_DISCOVERED_REGISTRY"
PRECISION_DECISIONS_ENV = "GENE_ASSETS_PRECISION_DECISIONS"
PROFILE_ENV = "GENE_ASSETS_ENV"
AUTOMATION_ENV = "GENE_ASSETS_AUTOMATION"
DISCOVERY_INTERVAL_ENV = "GENE_ASSETS_DISCOVERY_INTERVAL_S"
REFRESH_CRON_ENV = "GENE_ASSETS_REFRESH_CRON"
K8S_NAMESPACE_ENV = "GENE_ASSETS_K8S_NAMESPACE"
K8S_HOME_CLAIM_ENV = "GENE_ASSETS_K8S_HOME_CLAIM"
K8S_SECRET_ENV = "GENE_ASSETS_K8S_SECRET"
K8S_GPUS_ENV = "GENE_ASSETS_K8S_GPUS"
DASK_SCHEDULER_ENV = "GENE_ASSETS_DASK_SCHEDULER"
DASK_WORKERS_ENV = "GENE_ASSETS_DASK_WORKERS"

ENVIRONMENT = {
    HOME_ENV: "Working directory for caches, models, the discovered registry and asset storage (default: .gene_assets "
    "in the project; /gene_assets in k8s step pods).",
    DATA_DIR_ENV: "The input data directory (default: ../shared/data beside the project).",
    STORAGE_ENV: "Root of asset storage: a directory or an fsspec URL such as s3://bucket/storage (default: "
    "$GENE_ASSETS_HOME/storage).",
    EMBEDDING_CACHE_ENV: "Root of the embedding cache: a directory or an fsspec URL (default: "
    "$GENE_ASSETS_HOME/cache/embeddings).",
    DISCOVERED_REGISTRY_ENV: "The persisted registry of discovered and added backbones (default: "
    "$GENE_ASSETS_HOME/registry/discovered_backbones.json).",
    PRECISION_DECISIONS_ENV: "The remembered CPU precision decisions (default: "
    "$GENE_ASSETS_HOME/cache/precision_decisions.json).",
    RELEASE_REPO_ENV: "The git repository releases are committed and tagged in (default: this project).",
    DVC_REMOTE_ENV: "Where releases push and `gene-assets pull` fetches: a directory or a DVC remote URL (default: "
    "the remote .dvc/config.local names, else a local directory).",
    PROFILE_ENV: "Deployment profile: local (default), k8s or dask.",
    AUTOMATION_ENV: "on / off: whether the schedule and sensors start running (default: on in the k8s profile, else "
    "off).",
    DISCOVERY_INTERVAL_ENV: "Seconds between two evaluations of the discovery sensor (default: 604800, a week).",
    REFRESH_CRON_ENV: "Cron schedule of the weekly refresh, in UTC (default: 0 3 * * 1).",
    K8S_NAMESPACE_ENV: "k8s: namespace of the step pods (default: gene-assets).",
    K8S_HOME_CLAIM_ENV: "k8s: volume claim mounted at $GENE_ASSETS_HOME in every step pod (default: gene-assets-home).",
    K8S_SECRET_ENV: "k8s: the secret whose keys become the step pods' environment (OPENAI_API_KEY, NCBI_API_KEY).",
    K8S_GPUS_ENV: "k8s: GPUs each embedding step requests (default: 1; 0 for a CPU cluster).",
    DASK_SCHEDULER_ENV: "dask: address of an existing scheduler (default: a LocalCluster for the run).",
    DASK_WORKERS_ENV: "dask: worker processes of the LocalCluster (default: 2).",
}
"""Every GENE_ASSETS_* environment variable the project reads, with what it sets (docs/environment.md renders it)."""


def gene_assets_home() -> Path:
    """Working directory for caches and asset storage (never committed)."""
    return Path(os.environ.get(HOME_ENV, PROJECT_ROOT / ".gene_assets")).resolve()


def default_data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV, str((PROJECT_ROOT.parent / "shared" / "data").resolve()))


def default_dvc_remote_dir() -> str:
    """The embedded release remote for a single machine: a directory outside the repository (never committed)."""
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return str(data_home / "gene_assets" / "dvc-remote")
