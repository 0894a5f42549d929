"""Deployment profiles (`GENE_ASSETS_ENV`): which executor runs the steps, and whether automation starts on its own.

- `local` (default): Dagster's multiprocess executor on this machine; schedule and sensors start stopped.
- `k8s`: every step in its own Kubernetes pod (dagster-k8s `k8s_job_executor`); embedding steps request GPUs
  through their `dagster-k8s/config` tag; schedule and sensors start running.
- `dask`: steps on a Dask cluster (dagster-dask `dask_executor`): the scheduler at $GENE_ASSETS_DASK_SCHEDULER, or a
  `LocalCluster` of $GENE_ASSETS_DASK_WORKERS worker processes (default 2) when it is unset.
"""

from __future__ import annotations

import os

from dagster import ExecutorDefinition

from .settings import (
    AUTOMATION_ENV,
    DASK_SCHEDULER_ENV,
    DASK_WORKERS_ENV,
    DATA_DIR_ENV,
    DVC_REMOTE_ENV,
    EMBEDDING_CACHE_ENV,
    HOME_ENV,
    K8S_HOME_CLAIM_ENV,
    K8S_NAMESPACE_ENV,
    K8S_SECRET_ENV,
    PROFILE_ENV,
    PROFILES,
    RELEASE_REPO_ENV,
    STORAGE_ENV,
    SWITCH,
    choice_setting,
    int_setting,
)

FORWARDED_ENV = [
    DATA_DIR_ENV,
    HOME_ENV,
    DVC_REMOTE_ENV,
    RELEASE_REPO_ENV,
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    EMBEDDING_CACHE_ENV,
    STORAGE_ENV,
    "AWS_ENDPOINT_URL",
]
"""Environment variables a step pod takes from the launching process (paths and offline switches; secrets such as
OPENAI_API_KEY or NCBI_API_KEY come from the Kubernetes secret named by $GENE_ASSETS_K8S_SECRET)."""


def current_profile() -> str:
    return choice_setting(PROFILE_ENV, "local", PROFILES)


def k8s_executor_config() -> dict:
    """Step pods in $GENE_ASSETS_K8S_NAMESPACE with the project home (storage, caches) on a shared volume claim."""
    claim = os.environ.get(K8S_HOME_CLAIM_ENV, "gene-assets-home")
    home = os.environ.get(HOME_ENV, "/gene_assets")
    secret = os.environ.get(K8S_SECRET_ENV)
    return {
        "job_namespace": os.environ.get(K8S_NAMESPACE_ENV, "gene-assets"),
        "env_vars": [f"{HOME_ENV}={home}", *(n for n in FORWARDED_ENV if n != HOME_ENV and n in os.environ)],
        "env_secrets": [secret] if secret else [],
        "volumes": [{"name": "gene-assets-home", "persistent_volume_claim": {"claim_name": claim}}],
        "volume_mounts": [{"name": "gene-assets-home", "mount_path": home}],
        "max_concurrent": 8,
        "step_k8s_config": {"container_config": {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}}}},
    }


def dask_executor_config() -> dict:
    address = os.environ.get(DASK_SCHEDULER_ENV)
    if address:
        return {"cluster": {"existing": {"address": address}}}
    return {"cluster": {"local": {"n_workers": int_setting(DASK_WORKERS_ENV, 2, 1), "threads_per_worker": 1}}}


def executor_for(profile: str) -> ExecutorDefinition | None:
    """None keeps Dagster's default (multiprocess) executor."""
    if profile == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="k8s_gpu_executor")
    if profile == "dask":
        from dagster_dask import dask_executor

        return dask_executor.configured(dask_executor_config(), name="dask_cluster_executor")
    return None


def automation_running(profile: str) -> bool:
    """Whether the schedule and sensors start running: on k8s (a deployment with a daemon) unless
    $GENE_ASSETS_AUTOMATION=off; elsewhere only with $GENE_ASSETS_AUTOMATION=on."""
    return choice_setting(AUTOMATION_ENV, "on" if profile == "k8s" else "off", SWITCH) == "on"
