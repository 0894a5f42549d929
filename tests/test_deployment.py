"""Deployment profiles: the Kubernetes profile's executor and GPU requests, and a run on a Dask cluster."""

import os
import re

import pandas as pd
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, execute_job, reconstructable, validate_run_config

from gene_assets.definitions import build_definitions
from gene_assets.deployment import PROFILE_ENV, current_profile
from gene_assets.embeddings.partitions import backbone_partitions
from gene_assets.settings import HOME_ENV

from .conftest import planted_inputs


def test_k8s_profile_runs_steps_as_pods_and_requests_a_gpu_for_embedding(monkeypatch):
    from dagster_k8s.job import get_user_defined_k8s_config

    monkeypatch.setenv("GENE_ASSETS_K8S_NAMESPACE", "genes")
    monkeypatch.setenv("GENE_ASSETS_K8S_SECRET", "gene-assets-keys")
    defs = build_definitions("k8s")
    job = defs.resolve_job_def("backbone_job")
    assert job.executor_def.name == "k8s_gpu_executor"
    executor = validate_run_config(job, {})["execution"]["k8s_gpu_executor"]  # dagster-k8s's schema accepts it
    assert executor["job_namespace"] == "genes" and executor["env_secrets"] == ["gene-assets-keys"]
    assert executor["volume_mounts"][0]["mount_path"] == next(
        v.split("=", 1)[1] for v in executor["env_vars"] if v.startswith(f"{HOME_ENV}=")
    )
    step = get_user_defined_k8s_config(job.get_node_named("gene_embeddings").tags)
    assert step.container_config["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    scoring = get_user_defined_k8s_config(job.get_node_named("geneformer_results").tags)
    assert "resources" not in scoring.container_config  # only the embedding step holds a GPU
    assert defs.resolve_sensor_def("model_discovery_sensor").default_status.value == "RUNNING"
    assert build_definitions("local").resolve_sensor_def("model_discovery_sensor").default_status.value == "STOPPED"
    monkeypatch.setenv(PROFILE_ENV, "cloud")
    with pytest.raises(ValueError, match="GENE_ASSETS_ENV='cloud' is not one of local, k8s, dask"):
        current_profile()


def dask_backbone_job():
    """The backbone job as the `dask` profile defines it (a LocalCluster of 2 worker processes)."""
    return build_definitions("dask").resolve_job_def("backbone_job")


@pytest.mark.slow
def test_backbone_job_runs_on_a_dask_cluster_with_storage_on_s3(tmp_path, monkeypatch, s3_bucket):
    """Every step runs in a dask worker process; with GENE_ASSETS_STORAGE=s3://… the workers read their inputs from and
    write their outputs to the local S3 server (no shared volume): nothing is stored on the local disk, no temporary
    object is left, and a reader elsewhere loads the results from the bucket."""
    import fsspec

    from gene_assets.settings import STORAGE_ENV

    storage = f"s3://{s3_bucket}/storage"
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(STORAGE_ENV, storage)
    planted_inputs(tmp_path / "planted")
    s3 = fsspec.filesystem("s3")
    for path in (tmp_path / "planted").iterdir():
        s3.put_file(str(path), f"{s3_bucket}/storage/{path.name}")
    (tmp_path / "dagster_home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster_home")) as instance:
        instance.add_dynamic_partitions(backbone_partitions.name, ["bag-of-words"])
        result = execute_job(
            reconstructable(dask_backbone_job),
            instance,
            run_config={
                "ops": {
                    "geneformer_results": {"config": {"n_bootstrap": 50, "random_draws": 1, "universes": ["all_genes"]}}
                }
            },
            tags={
                "dagster/partition": "bag-of-words|summary",
                "dagster/partition/backbone": "bag-of-words",
                "dagster/partition/view": "summary",
            },
            asset_selection=[AssetKey("gene_embeddings"), AssetKey("geneformer_results")],
        )
        assert result.success
        step_pids = {e.step_key: e.pid for e in result.all_events if e.event_type == DagsterEventType.STEP_START}
        paths = {
            e.asset_key.path[-1]: e.materialization.metadata["path"].value
            for e in result.get_asset_materialization_events()
        }
    assert set(step_pids) == {"gene_embeddings", "geneformer_results"}
    assert os.getpid() not in step_pids.values()  # every step ran in a dask worker process
    assert paths == {
        "gene_embeddings": f"{storage}/gene_embeddings/backbone=bag-of-words/view=summary.parquet",
        "geneformer_results": f"{storage}/geneformer_results/backbone=bag-of-words/view=summary.parquet",
    }
    assert not (tmp_path / "home" / "storage").exists()
    assert not [p for p in s3.find(f"{s3_bucket}/storage") if p.endswith(".tmp")]
    results = pd.read_parquet(paths["geneformer_results"])
    auc = results.query(
        "task == 'dosage_sensitive_tfs' and classifier == 'logistic_regression' and metric == 'roc_auc'"
    )
    assert auc["estimate"].item() > 0.95 and auc["n_genes"].item() == 240


def test_every_environment_variable_is_listed_in_settings():
    """The GENE_ASSETS_* names in the package are exactly settings.ENVIRONMENT's (the docs render their table from
    it: tests/test_docs.py)."""
    from gene_assets.settings import ENVIRONMENT, PROJECT_ROOT

    source = "".join(path.read_text() for path in (PROJECT_ROOT / "gene_assets").rglob("*.py"))
    assert set(re.findall(r"GENE_ASSETS_[A-Z0-9_]*[A-Z0-9]", source)) == set(ENVIRONMENT)
