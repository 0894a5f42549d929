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


def gene_assets_home() -> Path:
    """Working directory for caches and asset storage (never committed)."""
    return Path(os.environ.get(HOME_ENV, PROJECT_ROOT / ".gene_assets")).resolve()


def default_data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV, str((PROJECT_ROOT.parent / "shared" / "data").resolve()))


def default_dvc_remote_dir() -> str:
    """The embedded release remote for a single machine: a directory outside the repository (never committed)."""
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return str(data_home / "gene_assets" / "dvc-remote")
