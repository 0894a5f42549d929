"""embeddings_release: every available embedding table and the leaderboard, published as a DVC release."""

import dataclasses
import hashlib
import io

import pandas as pd
import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    Config,
    DagsterInstance,
    MetadataValue,
    PathMetadataValue,
    asset,
)
from pydantic import Field

from ..automation.conditions import RELEASE_CONDITION
from ..cells.embedding import CellEmbeddings
from ..embeddings.registry import all_backbones
from ..embeddings.table import GeneEmbeddings
from ..fine_tuning.report import fine_tuning_table
from ..leaderboard.sections import build_sections
from ..runs import code_revision
from ..staleness import latest_materialization
from .dvc_repository import DvcReleaseRepository
from .published import GENE_IDENTIFIERS, embedding_file_name, gene_identifiers

RUN_FIGURES = {
    "seconds",
    "texts_per_second",
    "embedded_per_second",
    "texts_from_cache",
    "texts_embedded",
    "precision_decision_remembered",
}
"""gene_embeddings metadata about one run (its speed, whether the precision decision was remembered), not about the
vectors: left out of the release's MANIFEST."""
RELEASED_DECISION = ("precision", "fingerprint", "min_cosine", "task_deltas", "texts", "threads")
"""What released tables and the MANIFEST keep of a CPU precision decision: the choice, the machine it holds for and
the accuracy evidence. Its timings, the reason and exclusions they word, and when it was made differ whenever the
precision is timed again: the gene_embeddings metadata and the decisions file keep them."""


def released_table(table: GeneEmbeddings) -> GeneEmbeddings:
    """The table as released: its precision decision reduced to RELEASED_DECISION."""
    decision = table.attrs.get("precision_decision")
    if decision is None:
        return table
    kept = {key: decision[key] for key in RELEASED_DECISION if key in decision}
    return dataclasses.replace(table, attrs={**table.attrs, "precision_decision": kept})


def digest_of(frame: pd.DataFrame) -> str:
    """sha256 of a table's rows, order-independent (sorted by every column)."""
    rows = frame.sort_values(list(frame.columns)).astype(str).to_csv(index=False)
    return hashlib.sha256(rows.encode()).hexdigest()


def embedding_provenance(instance: DagsterInstance, partition: str, table: GeneEmbeddings) -> dict:
    """What one released embedding table holds: its attrs, the metadata its gene_embeddings materialization recorded
    (device, precision and whatever else the step reports; paths and speed left out), the backbone's weights sha256,
    digests of its texts (entrez id → text sha256) and of its gene universe, and how its genes were mapped."""
    record = latest_materialization(instance, AssetKey("gene_embeddings"), partition)
    metadata = {
        key: value.value
        for key, value in (record.asset_materialization.metadata if record else {}).items()
        if key not in RUN_FIGURES and not isinstance(value, PathMetadataValue)
    }
    backbone = all_backbones().get(table.attrs.get("backbone"))
    genes = table.genes
    provenance = {
        **metadata,
        **table.attrs,
        "weights_sha256": metadata.get("weights_sha256") or (backbone.weights_sha256 if backbone else None),
    }
    if "text_sha256" in genes:
        provenance["text_view_sha256"] = digest_of(genes[["entrez_id", "text_sha256"]])
    provenance["gene_universe_sha256"] = digest_of(genes[["entrez_id"]])
    provenance["mapping"] = provenance.pop("symbol_mapping", None) or {
        "view_genes_covered": len(genes),
        "view_genes_without_vector": 0,
    }
    return provenance


def parquet_bytes(table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def embedding_files(
    instance: DagsterInstance,
    gene_catalog: pd.DataFrame,
    gene_embeddings: dict[str, GeneEmbeddings],
    cell_embeddings: dict[str, CellEmbeddings],
) -> tuple[dict[str, bytes], list[dict]]:
    """The release's tables and their MANIFEST entries: one parquet per (backbone, view) gene embedding and per
    (backbone, dataset) cell embedding, and the catalog's gene identifiers (what `gene_assets.tl` resolves a user's
    genes with)."""
    files, models = {GENE_IDENTIFIERS: parquet_bytes(gene_identifiers(gene_catalog))}, []
    for key in sorted(gene_embeddings):
        table = released_table(gene_embeddings[key])
        name = embedding_file_name(table.attrs)
        files[name] = parquet_bytes(table.to_arrow())
        models.append({**embedding_provenance(instance, key, table), "n_genes": len(table.genes), "file": name})
    for key in sorted(cell_embeddings):
        cells = cell_embeddings[key]
        name = f"cells/{cells.attrs['backbone']}__{cells.attrs['dataset']}.parquet"
        files[name] = parquet_bytes(cells.to_arrow())
        models.append({**cells.attrs, "file": name})
    return files, models


def leaderboard_files(leaderboard: pd.DataFrame) -> dict[str, bytes]:
    """The release's leaderboard files: the wide table (the UI's and the CLI's, ⚠ marks and overall rank intervals
    included), the cell-type section, the batch effect, the long table, paired comparisons, rank intervals per task
    and overall, the gain of tuned over default logistic regression, the GO-vs-summary ablation, the perturbation
    tables, study bias (least-studied thirds), content overlap (gene pairs whose texts name each other) and the
    heatmap (leaderboard/sections.py builds them)."""
    sections = build_sections(leaderboard)
    tables = {
        "leaderboard.csv": sections.leaderboard,
        "leaderboard_cells.csv": sections.cell_types,
        "leaderboard_cell_gains.csv": sections.cell_gains,
        "leaderboard_batch_effect.csv": sections.batch_effect,
        "leaderboard_long.csv": sections.long,
        "leaderboard_comparisons.csv": sections.comparisons,
        "leaderboard_ranks.csv": sections.ranks,
        "leaderboard_tuning.csv": sections.tuning,
        "leaderboard_go_minus_summary.csv": sections.go_minus_summary,
        "leaderboard_perturbation.csv": sections.perturbation,
        "leaderboard_perturbation_vs_mean_signature.csv": sections.perturbation_vs_mean_signature,
        "leaderboard_study_bias.csv": sections.study_bias,
        "leaderboard_content_overlap.csv": sections.content_overlap,
    }
    return {
        **{name: table.to_csv(index=False).encode() for name, table in tables.items()},
        "leaderboard.png": sections.heatmap,
    }


class ReleaseConfig(Config):
    drop: list[str] = Field(
        default=[],
        description="Files of the current release (paths in data/, e.g. embeddings/B__V.parquet) to leave out on "
        "purpose; a release that would lose any other file is refused.",
    )


@asset(
    group_name="release",
    ins={
        "gene_catalog": AssetIn(),
        "gene_embeddings": AssetIn(),
        "cell_embeddings": AssetIn(),
        "leaderboard": AssetIn(),
        "term_masking": AssetIn(),
        "fine_tuning_results": AssetIn(),
    },
    kinds={"dvc"},
    automation_condition=RELEASE_CONDITION,
)
def embeddings_release(
    context: AssetExecutionContext,
    gene_catalog: pd.DataFrame,
    config: ReleaseConfig,
    gene_embeddings: dict[str, GeneEmbeddings],
    cell_embeddings: dict[str, CellEmbeddings],
    leaderboard: pd.DataFrame,
    term_masking: pd.DataFrame,
    fine_tuning_results: dict[str, pd.DataFrame],
    release_repository: DvcReleaseRepository,
) -> pd.DataFrame:
    """data/ with the embedding_files (gene and cell embeddings, gene identifiers), the leaderboard_files (gene tasks
    with rank intervals, the cell-type section, perturbation tasks), the term-masking leakage check (leaderboard_term_masking.csv), fine-tuned vs frozen (leaderboard_fine_tuning.csv) where
    fine_tuning_results is materialized, and MANIFEST.json;
    `dvc add`, push, tag."""
    if not gene_embeddings:
        raise ValueError("No gene_embeddings partition is materialized: nothing to release.")
    files, models = embedding_files(context.instance, gene_catalog, gene_embeddings, cell_embeddings)
    files.update(leaderboard_files(leaderboard))
    files["leaderboard_term_masking.csv"] = term_masking.to_csv(index=False).encode()
    if fine_tuning_results:
        files["leaderboard_fine_tuning.csv"] = fine_tuning_table(fine_tuning_results).to_csv(index=False).encode()
    code = code_revision()
    if code["uncommitted_changes"]:
        context.log.warning(
            f"The package differs from commit {code['commit']}: the release records the diff's sha256 "
            f"{code['diff_sha256']}; commit the changes for a release that a commit reproduces."
        )
    protocol = leaderboard["protocol"].iloc[0] if "protocol" in leaderboard and len(leaderboard) else None
    release = release_repository.publish(
        files, describe={"code": code, "protocol": protocol, "models": models}, drop=tuple(config.drop)
    )
    context.log.info(
        f"Release {release.version} at {release.revision[:12]}" + ("" if release.created else " (unchanged, reused)")
    )
    context.add_output_metadata(
        {
            "version": release.version,
            "git_revision": release.revision,
            "code": MetadataValue.json(code),
            "new_release": release.created,
            "remote": release.remote_url,
            "files": MetadataValue.json(release.manifest["files"]),
            "consume": MetadataValue.md(
                f"`dvc get {release_repository.repo_dir} {release_repository.data_dir_name} --rev {release.version}`"
            ),
        }
    )
    return pd.DataFrame(
        [
            {"version": release.version, "git_revision": release.revision, "file": f, "sha256": d}
            for f, d in release.manifest["files"].items()
        ]
    )
