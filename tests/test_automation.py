"""Discovery of new mteb models as backbone partitions, and the automation conditions that follow them."""

import itertools
import json

import mteb
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    DagsterInstance,
    build_sensor_context,
    evaluate_automation_conditions,
)

from gene_assets.automation.discovery import ModelDiscovery
from gene_assets.definitions import SCORED_PER_PARTITION, build_definitions
from gene_assets.embeddings.backbone import PARTITION_KEY_PATTERN
from gene_assets.embeddings.discovered import DiscoveredRegistry, partition_key
from gene_assets.embeddings.partitions import backbone_partitions, backbone_view_key
from gene_assets.embeddings.registry import get_backbone
from gene_assets.settings import DISCOVERED_REGISTRY_ENV as REGISTRY_ENV
from gene_assets.sources.data_directory import DATA_FILES
from gene_assets.sources.observations import data_file_key

RULES = ModelDiscovery(max_parameters=150_000_000)
N = 5


@pytest.fixture
def registry_file(tmp_path, monkeypatch):
    path = tmp_path / "registry" / "discovered_backbones.json"
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    return path


@pytest.fixture
def visible_models(monkeypatch):
    """mteb's real registry, of which only the models named in the returned list are visible to discovery."""
    real = mteb.get_model_metas
    eligible = [b.model_id for b in RULES.candidates()]
    visible: list[str] = []
    monkeypatch.setattr(mteb, "get_model_metas", lambda **kw: [m for m in real(**kw) if m.name in visible])
    return eligible, visible


def tick(defs, instance, cursor):
    """One sensor evaluation; its partition requests are applied to the instance as the daemon does."""
    sensor = defs.resolve_sensor_def("model_discovery_sensor")
    context = build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources={"model_discovery": RULES}
    )
    data = sensor(context)
    added = [key for request in data.dynamic_partitions_requests for key in request.partition_keys]
    instance.add_dynamic_partitions(backbone_partitions.name, added)
    return data, added


def test_sensor_adds_exactly_the_new_models_and_keeps_vanished_ones(registry_file, visible_models):
    eligible, visible = visible_models
    assert len(eligible) > N + 2 and "BAAI/bge-small-en-v1.5" not in eligible  # built-in entries are not rediscovered
    defs = build_definitions("local")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(backbone_partitions.name, ["all-MiniLM-L6-v2"])
        visible[:] = eligible[:N]
        first, added = tick(defs, instance, None)
        assert len(added) == N and len(first.run_requests) == N

        visible[:] = eligible[: N + 2]
        second, added = tick(defs, instance, first.cursor)
        new_keys = [partition_key(name, mteb.get_model_meta(name).revision) for name in eligible[N : N + 2]]
        assert added == new_keys
        assert sorted(r.partition_key for r in second.run_requests) == sorted(
            backbone_view_key(k, "summary") for k in new_keys
        )
        assert len(instance.get_dynamic_partitions(backbone_partitions.name)) == N + 3

        third, added = tick(defs, instance, second.cursor)
        assert added == [] and third.run_requests == [] and third.cursor == second.cursor

        visible[:] = eligible[1 : N + 2]  # the first model left mteb's registry
        fourth, added = tick(defs, instance, third.cursor)
        assert added == [] and fourth.run_requests == []
        assert len(instance.get_dynamic_partitions(backbone_partitions.name)) == N + 3

        restarted, added = tick(defs, instance, None)  # cursor lost: partitions and registry still prevent re-adding
        assert added == [] and restarted.run_requests == []

    stored = json.loads(registry_file.read_text())["backbones"]
    assert [r["model_id"] for r in stored] == eligible[: N + 2]
    vanished = get_backbone(partition_key(eligible[0], mteb.get_model_meta(eligible[0]).revision))
    meta = mteb.get_model_meta(eligible[0])
    assert (vanished.model_id, vanished.revision, vanished.dims, vanished.origin) == (
        meta.name,
        meta.revision,
        meta.embed_dim,
        "mteb",
    )
    assert not vanished.trust_remote_code


def test_discovery_rules_filter_the_real_registry():
    small = {b.model_id: b for b in ModelDiscovery(max_parameters=40_000_000).candidates()}
    assert "avsolatorio/GIST-small-Embedding-v0" not in small  # a built-in entry at the same revision
    assert small and all(b.n_parameters <= 40_000_000 and b.dims > 0 and b.revision for b in small.values())
    assert all(PARTITION_KEY_PATTERN.match(b.name) for b in small.values())
    excluded = ModelDiscovery(max_parameters=40_000_000, exclude_patterns=["^sentence-transformers/"]).candidates()
    assert {b.model_id for b in excluded} == {m for m in small if not m.startswith("sentence-transformers/")}


def test_partition_keys_are_stable_valid_and_distinct_per_revision():
    key = partition_key("org/model name:v2", "0123456789abcdef")
    assert key == "org__model-name-v2--01234567" == partition_key("org/model name:v2", "0123456789abcdef")
    assert partition_key("org/model", "aaaaaaaa1") != partition_key("org/model", "bbbbbbbb1")
    long = partition_key("o/" + "x" * 300, "r1")
    assert len(long) <= 128 and PARTITION_KEY_PATTERN.match(long) and long != partition_key("o/" + "x" * 301, "r1")


def test_registry_file_is_appended_never_rewritten(registry_file):
    registry = DiscoveredRegistry()
    first = RULES.candidates()[:2]
    assert registry.add(first) == first and registry.add(first) == []
    assert [b.name for b in registry.add(RULES.candidates()[1:3])] == [RULES.candidates()[2].name]
    assert list(registry.load()) == [b.name for b in RULES.candidates()[:3]]
    registry_file.write_text("{not json")
    with pytest.raises(ValueError, match="is not a discovered-backbones file"):
        registry.load()


NEW_CONTENT = itertools.count()


def materialized(instance, asset, partition=None, data_version=None):
    """A materialization, as a run records it: with the stored content's digest as data version (new content unless
    `data_version` is given)."""
    tags = {"dagster/data_version": data_version or f"content-{next(NEW_CONTENT)}"}
    instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition, tags=tags))


def requested(result) -> dict[str, set]:
    return {
        key.to_user_string(): set(result.get_requested_partitions(key) or {None})
        for key in result._requested_partitions_by_asset_key
    }


def inputs_observed(instance) -> None:
    """Every data-directory file observed, as the input observation sensor's first tick does."""
    for name in DATA_FILES:
        instance.report_runless_asset_event(AssetObservation(data_file_key(name), tags={"dagster/data_version": "v1"}))


def term_masking_passed(instance, passed: bool = True) -> None:
    """term_masking materialized with its blocking check's result, as a run of it records them."""
    materialized(instance, "term_masking")
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=AssetKey("term_masking"), check_name="clean_views_survive_term_masking", passed=passed
        )
    )


def test_automation_scores_new_partitions_then_refreshes_leaderboard_and_release():
    defs = build_definitions("local")
    new, old = backbone_view_key("new-model", "summary"), backbone_view_key("old-model", "summary")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(backbone_partitions.name, ["new-model", "old-model", "never-loaded"])
        inputs_observed(instance)
        for asset in (
            "gene_catalog",
            "gene_universes",
            "geneformer_labels",
            "gene_type_labels",
            "gene_property_labels",
            "gene_interaction_pairs",
            "perturbation_signatures",
        ):
            materialized(instance, asset)
        term_masking_passed(instance)
        materialized(instance, "gene_texts", data_version="texts-v1")
        materialized(instance, "gene_embeddings", old)
        for asset in SCORED_PER_PARTITION:
            materialized(instance, asset, old)
        result = evaluate_automation_conditions(defs, instance)
        cursor = result.cursor

        embedded_new = "vectors-of-new-model"
        materialized(instance, "gene_embeddings", new, data_version=embedded_new)  # the discovery sensor's run
        # (never-loaded failed)
        result = evaluate_automation_conditions(defs, instance, cursor=cursor)
        assert requested(result) == {asset: {new} for asset in SCORED_PER_PARTITION}

        for asset in SCORED_PER_PARTITION:
            materialized(instance, asset, new, data_version=f"{asset}-1")
        result = evaluate_automation_conditions(defs, instance, cursor=result.cursor)
        # One run: its blocking check random_band_at_chance stops the release there if the leaderboard fails it.
        assert requested(result) == {"leaderboard": {None}, "embeddings_release": {None}}

        materialized(instance, "leaderboard")
        materialized(instance, "embeddings_release")
        materialized(instance, "gene_texts", data_version="texts-v1")  # weekly refresh, same texts
        result = evaluate_automation_conditions(defs, instance, cursor=result.cursor)
        assert result.total_requested == 0

        for asset in SCORED_PER_PARTITION:  # re-scored with the same bytes: the leaderboard has nothing new
            materialized(instance, asset, new, data_version=f"{asset}-1")
        result = evaluate_automation_conditions(defs, instance, cursor=result.cursor)
        assert result.total_requested == 0

        materialized(instance, "gene_texts", data_version="texts-v2")  # changed texts: existing partitions only
        result = evaluate_automation_conditions(defs, instance, cursor=result.cursor)
        assert requested(result) == {
            "gene_embeddings": {new, old},
            "term_masking": {None},  # the new texts are masked again
        }

        materialized(instance, "gene_embeddings", old)  # new vectors
        materialized(instance, "gene_embeddings", new, data_version=embedded_new)  # the same vectors as before
        result = evaluate_automation_conditions(defs, instance, cursor=result.cursor)
        assert requested(result) == {asset: {old} for asset in SCORED_PER_PARTITION}


def test_leaderboard_materialized_alone_is_released_only_when_its_blocking_check_passed():
    defs = build_definitions("local")
    with DagsterInstance.ephemeral() as instance:
        result = evaluate_automation_conditions(defs, instance)
        term_masking_passed(instance)
        for passed in (False, True):
            materialized(instance, "leaderboard")
            for check in ("random_band_at_chance", "random_near_mean_signature"):  # the leaderboard's blocking checks
                instance.report_runless_asset_event(
                    AssetCheckEvaluation(asset_key=AssetKey("leaderboard"), check_name=check, passed=passed)
                )
            result = evaluate_automation_conditions(defs, instance, cursor=result.cursor)
            assert requested(result) == ({"embeddings_release": {None}} if passed else {})


def test_release_waits_for_term_masking_and_its_blocking_check():
    defs = build_definitions("local")
    with DagsterInstance.ephemeral() as instance:
        result = evaluate_automation_conditions(defs, instance)
        for masking, released in ((None, False), (False, False), (True, True)):
            if masking is not None:
                term_masking_passed(instance, masking)
            materialized(instance, "leaderboard")
            for check in ("random_band_at_chance", "random_near_mean_signature"):
                instance.report_runless_asset_event(
                    AssetCheckEvaluation(asset_key=AssetKey("leaderboard"), check_name=check, passed=True)
                )
            result = evaluate_automation_conditions(defs, instance, cursor=result.cursor)
            assert ("embeddings_release" in requested(result)) == released, masking
