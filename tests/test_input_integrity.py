"""Inputs that used to be silently wrong: stale files called up to date, identifiers that map to nothing."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, Definitions

from gene_assets.embeddings.backbone import Backbone
from gene_assets.embeddings.discovered import DiscoveredRegistry
from gene_assets.settings import DISCOVERED_REGISTRY_ENV as REGISTRY_ENV

from .conftest import planted_inputs, store_frame


@pytest.fixture
def registry(tmp_path, monkeypatch) -> DiscoveredRegistry:
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "discovered.json"))
    return DiscoveredRegistry()


def word2vec(path: Path, symbols: list[str], offset: float) -> None:
    path.write_text("".join(f"{s} {offset + i} {offset + 1.5} {offset + 2.25}\n" for i, s in enumerate(symbols)))


def edit_in_place_keeping_size_and_mtime(path: Path, content: str) -> None:
    stat = path.stat()
    assert len(content.encode()) == stat.st_size
    path.write_text(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_backbone_file_edited_in_place_is_not_up_to_date(tmp_path, registry):
    """A precomputed file rewritten with the same size and its old mtime: its backbone's inputs get a new data version,
    the next run embeds again and stores the new vectors. A local model directory's files count the same way."""
    from gene_assets.automation.sensors import embedding_job
    from gene_assets.definitions import all_asset_checks, all_assets
    from gene_assets.orchestration.partitions import register_backbones
    from gene_assets.resources import local_resources
    from gene_assets.runs import PipelineRunner
    from gene_assets.sources.observations import backbone_digest
    from gene_assets.storage import ParquetIOManager

    planted_inputs(tmp_path / "storage")
    source = tmp_path / "published.txt"
    symbols = [f"G{i}" for i in range(1, 241)]
    word2vec(source, symbols, 1.0)
    model_dir = tmp_path / "local-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"hidden_size": 3}')
    registry.add(
        [
            Backbone(name="published", kind="precomputed", dims=3, source_path=str(source), origin="manual"),
            Backbone(
                name="local-model", kind="sentence_transformers", dims=3, model_id=str(model_dir), origin="manual"
            ),
        ]
    )
    resources = {**local_resources(), "io_manager": ParquetIOManager(base_dir=str(tmp_path / "storage"))}
    defs = Definitions(assets=all_assets, asset_checks=all_asset_checks, jobs=[embedding_job], resources=resources)
    stored = tmp_path / "storage" / "gene_embeddings" / "backbone=published" / "view=summary.parquet"
    with DagsterInstance.ephemeral() as instance:
        register_backbones(instance, ["published", "local-model"])
        runner = PipelineRunner(defs, instance)
        assert runner.execute("embedding_job", "published|summary") and runner.launched == 1
        runner = PipelineRunner(defs, instance)
        assert runner.execute("embedding_job", "published|summary") and runner.skipped == [
            "embedding_job published|summary"
        ]
        first = np.stack(pd.read_parquet(stored)["embedding"])
        edited = source.read_text().replace("2.5 3.25\n", "2.7 3.05\n")
        edit_in_place_keeping_size_and_mtime(source, edited)
        runner = PipelineRunner(defs, instance)  # observes the backbones' inputs first
        assert runner.execute("embedding_job", "published|summary") and runner.launched == 1
        second = np.stack(pd.read_parquet(stored)["embedding"])
        assert first.shape == second.shape and not np.array_equal(first, second)
        assert np.allclose(second[:, 1:], [2.7, 3.05])

        before = backbone_digest("local-model")
        edit_in_place_keeping_size_and_mtime(model_dir / "config.json", '{"hidden_size": 4}')
        assert backbone_digest("local-model") != before


# Labels: safe respellings are normalized and counted, unknown values refused with file, value and count ------------


def tiny_resolver():
    from gene_assets.catalog.resolver import GeneResolver

    return GeneResolver(
        pd.DataFrame(
            {
                "entrez_id": [1, 2, 3, 4],
                "symbol": ["A", "B", "C", "D"],
                "aliases": "",
                "ensembl_ids": ["ENSG1", "ENSG2", "ENSG3", "ENSG4"],
            }
        )
    )


def test_label_variants_are_normalized_and_every_dropped_row_is_counted():
    from gene_assets.tasks.gene_properties import tf_labels
    from gene_assets.tasks.geneformer import map_chen2020_labels, map_geneformer_labels

    chen = pd.DataFrame(
        {
            "TF": ["A", "B", "C", "D", "NOPE"],
            "assignment": ["long-range TF ", "Long-Range TF", "short_range tf", "short-range TF", "long-range TF"],
        }
    )
    labels, counts = map_chen2020_labels(chen, tiny_resolver(), "chen.csv")
    assert labels[["entrez_id", "label"]].values.tolist() == [
        [1, "long-range TF"],
        [2, "long-range TF"],
        [3, "short-range TF"],
        [4, "short-range TF"],
    ]
    assert counts["tf_range_chen2020"] == {
        "n_source": 5,
        "n_unmapped": 1,
        "n_mapped": 4,
        "n_conflicting": 0,
        "n_rows": 5,
        "n_rows_respelled": 3,
        "n_rows_dropped": 1,
    }

    from gene_assets.tasks.geneformer import GENEFORMER_SOURCES

    rows = [
        (source, label, f"ENSG{1 + i % 4}", "x")
        for source, positive, negative in GENEFORMER_SOURCES.values()
        for i, label in enumerate([positive, negative])
    ]
    rows[0] = (" Dosage_Sensitive_vs_Insensitive_TF", " dosage-sensitive tfs", "ENSG1", "A")
    geneformer = pd.DataFrame(rows, columns=["task", "label", "ensembl_id", "gene_name"])
    labels, counts = map_geneformer_labels(geneformer, tiny_resolver(), "long.csv")
    dosage = labels[labels["task"] == "dosage_sensitive_tfs"].set_index("entrez_id")["label"].to_dict()
    assert dosage == {1: "Dosage-sensitive TFs", 2: "Dosage-insensitive TFs"}
    assert (
        counts["dosage_sensitive_tfs"]["n_rows_respelled"] == 1
        and counts["dosage_sensitive_tfs"]["n_rows_dropped"] == 0
    )

    tfs = pd.DataFrame(
        {
            "Ensembl ID": ["ENSG1", "ENSG2"],
            "HGNC symbol": ["A", "B"],
            "Is TF?": ["yes", " No"],
            "EntrezGene ID": ["1", "2"],
        }
    )
    labels, counts = tf_labels(tfs, tiny_resolver(), "tfs.txt")
    assert labels.set_index("entrez_id")["label"].to_dict() == {1: "TF", 2: "non_TF"}
    assert counts["tf_vs_non_tf"]["n_rows_respelled"] == 2


@pytest.mark.parametrize("case", ["chen2020", "geneformer", "human_tfs"])
def test_an_unknown_label_value_is_refused_naming_the_file_the_value_and_its_count(case):
    from gene_assets.tasks.gene_properties import tf_labels
    from gene_assets.tasks.geneformer import GENEFORMER_SOURCES, map_chen2020_labels, map_geneformer_labels
    from gene_assets.tasks.spec import TaskLabelError

    if case == "chen2020":
        table = pd.DataFrame(
            {"TF": ["A", "B", "C", "D"], "assignment": ["long-range TF", "mid-range TF", "mid-range TF", None]}
        )
        call, expected = (
            map_chen2020_labels,
            (
                r"chen2020: column 'assignment' has 3 rows with unknown label values: "
                r"'mid-range TF' \(2 rows\), '<missing>' \(1 rows\)\. Expected one of "
                r"\['long-range TF', 'short-range TF'\]"
            ),
        )
    elif case == "geneformer":
        rows = [
            (source, label, "ENSG1", "A")
            for source, positive, negative in GENEFORMER_SOURCES.values()
            for label in (positive, negative)
        ]
        rows.append(("bivalent_vs_lys4_only", "trivalent", "ENSG2", "B"))
        table = pd.DataFrame(rows, columns=["task", "label", "ensembl_id", "gene_name"])
        call, expected = (
            map_geneformer_labels,
            (
                r"geneformer: task 'bivalent_vs_lys4_only' has 1 rows with unknown "
                r"label values: 'trivalent' \(1 rows\)"
            ),
        )
    else:
        table = pd.DataFrame(
            {
                "Ensembl ID": ["ENSG1", "ENSG2"],
                "HGNC symbol": ["A", "B"],
                "Is TF?": ["Yes", "Maybe"],
                "EntrezGene ID": ["1", "2"],
            }
        )
        call, expected = (
            tf_labels,
            r"human_tfs: column 'Is TF\?' has 1 rows with unknown label values: 'Maybe' \(1 rows\)",
        )
    with pytest.raises(TaskLabelError, match=expected):
        call(table, tiny_resolver(), case)


# Precomputed files keyed by Entrez or Ensembl ids map; a file that maps (almost) nothing is refused ---------------


def catalog_with_ensembl_ids(storage: Path) -> pd.DataFrame:
    path = storage / "gene_catalog.parquet"
    catalog = pd.read_parquet(path).assign(ensembl_ids=lambda c: [f"ENSG{i:011d}" for i in c["entrez_id"]])
    store_frame(catalog, path)
    return catalog


@pytest.mark.parametrize("kind", ["Entrez ids", "Ensembl ids"])
def test_a_precomputed_file_keyed_by_entrez_or_ensembl_ids_maps(tmp_path, kind):
    from gene_assets.embeddings.precomputed import import_precomputed

    planted_inputs(tmp_path / "storage")
    catalog = catalog_with_ensembl_ids(tmp_path / "storage")
    texts = pd.read_parquet(tmp_path / "storage" / "gene_texts.parquet")
    ids = [str(i) if kind == "Entrez ids" else f"ENSG{i:011d}.{i % 3 + 1}" for i in range(1, 241)]
    word2vec(tmp_path / "v.txt", ids + (["999999"] if kind == "Entrez ids" else ["ENSG99999999999"]), 0.0)
    backbone = Backbone(name="p", kind="precomputed", dims=3, source_path=str(tmp_path / "v.txt"))
    imported = import_precomputed(backbone, catalog, texts)
    assert imported.genes["entrez_id"].tolist() == list(range(1, 241))
    assert np.allclose(imported.matrix[:, 0], np.arange(240))  # each gene its own row
    method = "mapped_by_entrez" if kind == "Entrez ids" else "mapped_by_ensembl"
    assert imported.mapping[method] == 240 and imported.mapping["unmapped"] == 1
    assert imported.mapping["identifier_kinds"] == {kind: 241}


def test_a_precomputed_file_mapping_below_the_minimum_coverage_fails_naming_the_identifier_kind(tmp_path, registry):
    """Mouse Ensembl ids: the partition fails with the coverage and the kind seen; the stored table stays as it was."""
    from dagster import materialize

    from gene_assets.definitions import all_asset_checks, all_assets
    from gene_assets.embeddings.partitions import backbone_partitions, backbone_view_key
    from gene_assets.embeddings.precomputed import PrecomputedEmbeddingError
    from gene_assets.resources import local_resources
    from gene_assets.storage import ParquetIOManager

    from .test_bad_input import assert_nothing_lost, previous_table, stored_files

    storage = tmp_path / "storage"
    planted_inputs(storage)
    catalog_with_ensembl_ids(storage)
    word2vec(tmp_path / "mouse.txt", [f"ENSMUSG{i:011d}" for i in range(1, 201)] + ["G7"], 0.0)
    registry.add(
        [Backbone(name="mouse", kind="precomputed", dims=3, source_path=str(tmp_path / "mouse.txt"), origin="manual")]
    )
    previous_table(storage, "mouse")
    before = stored_files(storage)
    resources = {**local_resources(), "io_manager": ParquetIOManager(base_dir=str(storage))}
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(backbone_partitions.name, ["mouse"])
        with pytest.raises(
            PrecomputedEmbeddingError,
            match=(
                r"mouse\.txt: its 201 vectors cover 1 of the view's 240 genes \(0\.4%, below the minimum 5%\)\. Its "
                r"identifiers are Ensembl ids \(200 of 201\); 200 map to no catalog gene \(e\.g\. ENSMUSG00000000001, "
                r"ENSMUSG00000000002, ENSMUSG00000000003\)\. Key the file by human gene symbols, Entrez ids or Ensembl"
            ),
        ):
            materialize(
                [*all_assets, *all_asset_checks],
                selection=["gene_embeddings"],
                instance=instance,
                resources=resources,
                partition_key=backbone_view_key("mouse", "summary"),
            )
    assert_nothing_lost(storage, before)


# Validation reads the whole input: a bad value after the first cells is found ----------------------------------------


def write_cells_with_a_late_value(path: Path, value: float, cell: int = 2_500) -> None:
    """2,600 cells of 3 types × 150 genes G1..G150 with integer counts, except `value` in one late cell."""
    import anndata
    from scipy import sparse

    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(2_600, 150)).astype(np.float32)
    X[cell, 5] = value
    obs = pd.DataFrame(
        {"my_type": np.repeat(["alpha", "beta", "delta"], [900, 900, 800])}, index=[f"cell{i}" for i in range(2_600)]
    )
    anndata.AnnData(
        X=sparse.csr_matrix(X), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(1, 151)])
    ).write_h5ad(path)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "value, message",
    [
        (-0.5, r"Cell dataset 'toy' has negative values: .* 1 values are negative, the first in cell 2,500\."),
        (
            float("nan"),
            r"Cell dataset 'toy' has 1 NaN or infinite values \(the first in cell 2,500\): give finite counts",
        ),
    ],
    ids=["negative", "nan"],
)
def test_a_bad_value_after_the_first_cells_fails_the_dataset_and_keeps_the_previous_cells(tmp_path, value, message):
    from gene_assets.cells.datasets import CellDatasetError

    from .test_bad_input import assert_nothing_lost, run, stored_files, write_cells

    storage = tmp_path / "storage"
    planted_inputs(storage)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("cell_dataset", ["toy"])
        write_cells(tmp_path / "good.h5ad")
        config = {"h5ad_path": str(tmp_path / "good.h5ad"), "label_key": "my_type"}
        run(storage, "cell_datasets", instance=instance, partition_key="toy", config=config)
        before = stored_files(storage)
        write_cells_with_a_late_value(tmp_path / "late.h5ad", value)
        with pytest.raises(CellDatasetError, match=message):
            run(
                storage,
                "cell_datasets",
                instance=instance,
                partition_key="toy",
                config={**config, "h5ad_path": str(tmp_path / "late.h5ad")},
            )
    assert_nothing_lost(storage, before)


def test_the_input_scale_is_read_from_every_chunk_of_cells(tmp_path):
    """Integer counts in the first cells and one TPM-like value late: unlogged, not counts (chunks of 1,000 cells)."""
    import anndata

    from gene_assets.cells.datasets import CellMatrix, detect_input_scale

    write_cells_with_a_late_value(tmp_path / "late.h5ad", 310.5)
    matrix = CellMatrix(anndata.read_h5ad(tmp_path / "late.h5ad", backed="r"), False, "late")
    assert detect_input_scale(matrix, "late", chunk_cells=1_000) == "unlogged"
    assert detect_input_scale(matrix.block(0, 2_000), "late") == "counts"  # what the first 2,000 cells alone say
