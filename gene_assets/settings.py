"""Paths and environment variables shared by every module."""

import os
import re
from pathlib import Path

from .errors import GeneAssetsError

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


def release_cache_dir() -> Path:
    """Where load_embeddings keeps verified copies of released files: $GENE_ASSETS_HOME/cache/releases when
    GENE_ASSETS_HOME is set, else $XDG_CACHE_HOME/gene_assets/releases (~/.cache/gene_assets/releases)."""
    if HOME_ENV in os.environ:
        return gene_assets_home() / "cache" / "releases"
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return (cache_home / "gene_assets" / "releases").resolve()


def default_dvc_remote_dir() -> str:
    """The embedded release remote for a single machine: a directory outside the repository (never committed)."""
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return str(data_home / "gene_assets" / "dvc-remote")


class SettingError(GeneAssetsError, ValueError):
    """A GENE_ASSETS_* variable that cannot be used as given; the message names it and says what to write."""


PATH_SETTINGS = (HOME_ENV, DATA_DIR_ENV, DISCOVERED_REGISTRY_ENV, PRECISION_DECISIONS_ENV, RELEASE_REPO_ENV)
"""Settings that are local paths."""
LOCATION_SETTINGS = {
    STORAGE_ENV: "fsspec",
    EMBEDDING_CACHE_ENV: "fsspec",
    DVC_REMOTE_ENV: "dvc",
}
"""Settings that are a local path or a URL, and which library must know the URL's scheme."""
PROFILES = ("local", "k8s", "dask")
SWITCH = ("on", "off")
SCHEME = re.compile(r"^([A-Za-z][\w+.-]*):")


def url_schemes(library: str) -> set[str]:
    """The URL schemes fsspec (asset storage, embedding cache) or DVC (release remote) can open."""
    if library == "dvc":
        from dvc.config_schema import REMOTE_SCHEMAS

        return {scheme for scheme in REMOTE_SCHEMAS if scheme and scheme != "remote"}
    from fsspec.registry import known_implementations

    return set(known_implementations)


def resolved_location(name: str, value: str) -> str:
    """A path or URL setting as every process uses it: a URL with a known scheme and a host or bucket, or an absolute
    path (a relative one is taken from the directory the command starts in)."""
    if not value.strip():
        raise SettingError(f"{name} is set but empty: unset it for its default, or give a path.")
    scheme = SCHEME.match(value)
    library = LOCATION_SETTINGS.get(name)
    if scheme and len(scheme.group(1)) > 1:
        example = f"{scheme.group(1)}://bucket/path"
        if library is None:
            raise SettingError(f"{name}={value!r} is a URL, but {name} must be a local path: give a directory.")
        if library == "fsspec" and value.startswith("file://"):
            return os.path.abspath(value.removeprefix("file://"))
        known = url_schemes(library) - {"file", "local"}
        if scheme.group(1).lower() not in known:
            schemes = ", ".join(f"{s}://" for s in sorted(known & {"s3", "gs", "azure", "az", "http", "https", "ssh"}))
            raise SettingError(
                f"{name}={value!r}: unknown URL scheme {scheme.group(1)!r}; use a local path or a URL such as "
                f"{schemes}."
            )
        rest = value[scheme.end() :]
        if not rest.startswith("//") or not rest[2:].split("/")[0]:
            raise SettingError(
                f"{name}={value!r} is not a well-formed URL (it needs '{scheme.group(1)}://' and a host or bucket, "
                f"e.g. {example}); as written it would be read as a local directory named {value.split('/')[0]!r}."
            )
        return value
    return os.path.abspath(os.path.expanduser(value))


def int_setting(name: str, default: int, minimum: int) -> int:
    """A whole-number setting of at least `minimum`."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise SettingError(f"{name}={text!r} is not a whole number of {minimum} or more: fix or unset it.")
    return value


def choice_setting(name: str, default: str, choices: tuple[str, ...]) -> str:
    """A setting that is one of `choices`."""
    value = os.environ.get(name, default)
    if value not in choices:
        raise SettingError(f"{name}={value!r} is not one of {', '.join(choices)}: fix or unset it (default {default}).")
    return value


def cron_setting(name: str, default: str) -> str:
    """A cron schedule setting (five fields)."""
    from dagster._utils.schedules import is_valid_cron_string

    value = os.environ.get(name, default)
    if not is_valid_cron_string(value):
        raise SettingError(
            f"{name}={value!r} is not a cron schedule (five fields: minute hour day month weekday, e.g. "
            f"{default!r}): fix or unset it."
        )
    return value


def resolve_settings() -> None:
    """Parse every GENE_ASSETS_* setting once, before anything reads it: a malformed value is a SettingError naming
    the variable; relative paths become absolute (against the current directory) in this process's environment, so
    steps, child processes and the release repository all read the same place."""
    from .automation.schedules import WEEKLY

    for name in (*PATH_SETTINGS, *LOCATION_SETTINGS):
        if name in os.environ:
            os.environ[name] = resolved_location(name, os.environ[name])
    choice_setting(PROFILE_ENV, "local", PROFILES)
    choice_setting(AUTOMATION_ENV, "off", SWITCH)
    int_setting(DISCOVERY_INTERVAL_ENV, 1, 1)
    int_setting(K8S_GPUS_ENV, 1, 0)
    int_setting(DASK_WORKERS_ENV, 2, 1)
    cron_setting(REFRESH_CRON_ENV, WEEKLY)
