"""Resources: this machine's defaults (paths from the environment, so every deployment profile uses them) and
temporary resources for tests (storage and release under one temp dir)."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import EnvVar

from .automation.discovery import ModelDiscovery
from .embeddings.device import EmbeddingDevice
from .release.dvc_repository import DvcReleaseRepository
from .settings import DVC_REMOTE_ENV, PROJECT_ROOT, RELEASE_REPO_ENV, STORAGE_ENV, default_data_dir, gene_assets_home
from .sources.bioconductor import AnnotationDatabases
from .sources.data_directory import DataDirectory
from .sources.ncbi_eutils import NcbiEutils
from .storage import ParquetIOManager

NCBI_API_KEY_ENV = "NCBI_API_KEY"
"""A secret: passed as an EnvVar, so the UI and the run config show its name, never its value."""


def local_resources() -> dict:
    home = gene_assets_home()
    return {
        "io_manager": ParquetIOManager(base_dir=os.environ.get(STORAGE_ENV, str(home / "storage"))),
        "data_directory": DataDirectory(path=default_data_dir()),
        "annotation_databases": AnnotationDatabases(cache_dir=str(home / "cache" / "bioconductor")),
        "ncbi_eutils": NcbiEutils(
            api_key=EnvVar(NCBI_API_KEY_ENV) if NCBI_API_KEY_ENV in os.environ else None,
            email=os.environ.get("NCBI_EMAIL"),
            cache_dir=str(home / "cache" / "ncbi_esummary"),
        ),
        "release_repository": DvcReleaseRepository(
            repo_dir=os.environ.get(RELEASE_REPO_ENV, str(PROJECT_ROOT)),
            remote_url=os.environ.get(DVC_REMOTE_ENV),
            create_remote=DVC_REMOTE_ENV not in os.environ,
        ),
        "embedding_device": EmbeddingDevice(),
        "model_discovery": ModelDiscovery(),
    }


def temporary_resources(tmp_dir: Path, release_repo: Path, remote: Path, annotation_cache: Path | None = None) -> dict:
    """Fresh storage and release repository under tmp_dir; the real data directory and annotation cache."""
    resources = local_resources()
    resources["io_manager"] = ParquetIOManager(base_dir=str(tmp_dir / "storage"))
    resources["ncbi_eutils"] = NcbiEutils(cache_dir=str(tmp_dir / "ncbi_esummary"))
    resources["release_repository"] = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(remote))
    if annotation_cache is not None:
        resources["annotation_databases"] = AnnotationDatabases(cache_dir=str(annotation_cache))
    return resources
