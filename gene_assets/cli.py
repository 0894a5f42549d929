"""`gene-assets`: run the pipeline, register backbones, show the leaderboard, verify a release."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from .cells.datasets import CELL_DATASETS
from .cells.partitions import backbone_dataset_key, cell_dataset_partitions
from .embeddings.partitions import backbone_partitions, backbone_view_key
from .embeddings.registry import OFFLINE_BACKBONES, Backbone, all_backbones, get_backbone
from .texts.views import VIEWS


def register_partitions(instance: DagsterInstance, dimension: str, names: list[str]) -> list[str]:
    """Add keys to a dynamic partition dimension; returns the ones that were new."""
    known = set(instance.get_dynamic_partitions(dimension))
    new = [n for n in names if n not in known]
    if new:
        instance.add_dynamic_partitions(dimension, new)
    return new


def register_backbones(instance: DagsterInstance, names: list[str]) -> list[str]:
    """Add backbones as partitions; returns the ones that were new."""
    for name in names:
        get_backbone(name)
    return register_partitions(instance, backbone_partitions.name, names)


def add_backbone(instance: DagsterInstance, args) -> int:
    """Write the entry to the persisted registry (after checking a precomputed file) and add its partition."""
    from .embeddings.discovered import DiscoveredRegistry
    from .embeddings.precomputed import read_gene_vectors

    backbone = Backbone(name=args.name, kind=args.kind, dims=args.dims, model_id=args.model_id, revision=args.revision,
                        prompt=args.prompt, max_length=args.max_length, symbol_column=args.symbol_column,
                        source_path=str(Path(args.source_path).resolve()) if args.source_path else None, origin="manual")
    if backbone.kind == "precomputed":
        symbols, _ = read_gene_vectors(Path(backbone.source_path or ""), backbone.dims, backbone.symbol_column)
        print(f"{backbone.source_path}: {len(symbols)} vectors of {backbone.dims} dimensions")
    elif not backbone.model_id:
        raise SystemExit("gene-assets add-backbone: --model-id is needed for a sentence_transformers backbone.")
    if args.name in all_backbones():
        raise SystemExit(f"gene-assets add-backbone: {args.name!r} is already a backbone; choose another name.")
    DiscoveredRegistry().add([backbone])
    register_backbones(instance, [backbone.name])
    print(f"Added {backbone.name}; materialize it with `gene-assets run --backbones {backbone.name}` or from the UI.")
    return 0


def run_cells(defs, instance: DagsterInstance, backbones: list[str], view: str, datasets: dict[str, dict],
              outcome: dict) -> None:
    """Every cell dataset (genes harmonized, PCA baseline), then its cell embeddings and results per backbone.
    `datasets` maps a dataset name to its cell_datasets config (empty for built-in datasets)."""
    register_partitions(instance, cell_dataset_partitions.name, list(datasets))
    for dataset, config in datasets.items():
        result = defs.resolve_job_def("cell_datasets_job").execute_in_process(
            instance=instance, partition_key=dataset, raise_on_error=False,
            run_config={"ops": {"cell_datasets": {"config": config}}},
        )
        if not result.success:
            outcome["failed_partitions"].append(f"cells {dataset}")
            continue
        for backbone in backbones:
            result = defs.resolve_job_def("cells_job").execute_in_process(
                instance=instance, partition_key=backbone_dataset_key(backbone, dataset), raise_on_error=False,
                run_config={"ops": {"cell_embeddings": {"config": {"view": view}}}},
            )
            if not result.success:
                outcome["failed_partitions"].append(f"cells {backbone}|{dataset}")


def run_pipeline(defs, instance: DagsterInstance, backbones: list[str], views: list[str], release: bool = True,
                 cell_datasets: dict[str, dict] | None = None) -> dict:
    """Sources once, then every (backbone, view) partition, the cell datasets × backbones, then the leaderboard and
    the release."""
    register_backbones(instance, backbones)
    outcome = {"failed_partitions": []}
    result = defs.resolve_job_def("sources_job").execute_in_process(
        instance=instance, run_config={"ops": {"gene_texts": {"config": {"views": views}}}}
    )
    if not result.success:
        raise SystemExit("sources_job failed; see the log above.")
    for backbone in backbones:
        for view in views:
            result = defs.resolve_job_def("backbone_job").execute_in_process(
                instance=instance, partition_key=backbone_view_key(backbone, view), raise_on_error=False
            )
            if not result.success:
                outcome["failed_partitions"].append(f"{backbone}|{view}")
    if cell_datasets:
        run_cells(defs, instance, backbones, "summary" if "summary" in views else views[0], cell_datasets, outcome)
    selection = None if release else [AssetKey("leaderboard")]
    result = defs.resolve_job_def("release_job").execute_in_process(
        instance=instance, asset_selection=selection, raise_on_error=False
    )
    outcome["release_succeeded"] = result.success
    return outcome


def print_leaderboard(io_base: Path) -> None:
    import pandas as pd

    from .cells.report import cell_gains, cell_type_table, gains_table
    from .leaderboard.inputs import task_spec
    from .leaderboard.report import family_summary, leakage_audit, perturbation_table, wide_table

    path = io_base / "leaderboard.parquet"
    if not path.exists():
        raise SystemExit(f"No leaderboard at {path}: run `make run` first.")
    summary = pd.read_parquet(path)
    text_tasks = summary.loc[summary["kind"] != "cells", "task"].unique()
    leaks = leakage_audit({v: VIEWS[v] for v in summary["view"].unique() if v in VIEWS}, {t: task_spec(t) for t in text_tasks})
    for universe in ("all_genes", "with_summary"):
        print(f"\n## {universe}: estimate [95% CI]; ★ best, ≈ not significantly worse, ⚠ view shares the label source\n")
        print(wide_table(summary, universe, leaks).to_markdown(index=False))
    print("\n## Families (mean primary metric) and mean rank\n")
    print(family_summary(summary).to_markdown(index=False))
    cells = cell_type_table(summary)
    if len(cells):
        print("\n## Cell types: kNN macro-F1 [95% CI]; ★ best on the dataset, ≈ not significantly worse\n")
        print(cells.to_markdown(index=False))
        print("\n## Cell types: macro-F1 gain over the expression-PCA and random-gaussian baselines [paired 95% CI]\n")
        print(gains_table(cell_gains(summary)).to_markdown(index=False))
    perturbation = perturbation_table(summary)
    if len(perturbation):
        print("\n## Unseen perturbation (all_genes): mean ± SD over folds; gap to the mean-signature baseline, paired 95% CI\n")
        print(perturbation.to_markdown(index=False))


def main(argv: list[str] | None = None) -> int:
    from .embeddings.encoders import BackboneUnavailableError
    from .embeddings.precomputed import PrecomputedEmbeddingError
    from .embeddings.discovered import DiscoveredRegistryError
    from .embeddings.registry import InvalidBackboneError, UnknownBackboneError
    from .release.dvc_repository import ReleaseError
    from .sources.bioconductor import AnnotationDatabaseError
    from .sources.data_directory import DataDirectoryError, DataFileError
    from .tasks.spec import TaskLabelError
    from .texts.views import GeneTextError

    try:
        return _main(argv)
    except (DataDirectoryError, AnnotationDatabaseError, UnknownBackboneError, BackboneUnavailableError, ReleaseError,
            PrecomputedEmbeddingError, InvalidBackboneError, DiscoveredRegistryError, DataFileError, TaskLabelError,
            GeneTextError) as exc:
        print(f"gene-assets: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="gene-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the default asset graph and print the leaderboard")
    run.add_argument("--backbones", nargs="+", default=OFFLINE_BACKBONES)
    run.add_argument("--views", nargs="+", default=["summary"], choices=list(VIEWS))
    run.add_argument("--no-release", action="store_true", help="skip the DVC release")
    run.add_argument("--cell-datasets", nargs="*", default=list(CELL_DATASETS), choices=list(CELL_DATASETS),
                     help="built-in single-cell datasets to embed and score (none: skip the cell assets)")
    run.add_argument("--cell-h5ad", nargs=3, action="append", default=[], metavar=("NAME", "PATH", "LABEL_COLUMN"),
                     help="also embed and score your own h5ad (repeatable)")
    run.add_argument("--max-cells", type=int, default=20_000, help="cells scored per dataset (a stratified sample)")
    sub.add_parser("backbones", help="list registered and discovered backbones")
    add = sub.add_parser("add-backbone", help="add a model or a file of published gene embeddings as a backbone")
    add.add_argument("name", help="partition key: letters, digits, '.', '_' or '-'")
    add.add_argument("--kind", choices=["sentence_transformers", "precomputed"], required=True)
    add.add_argument("--dims", type=int, required=True)
    add.add_argument("--model-id", help="Hub model id or local model directory (sentence_transformers)")
    add.add_argument("--revision", help="Hub commit to pin (sentence_transformers)")
    add.add_argument("--prompt")
    add.add_argument("--max-length", type=int)
    add.add_argument("--source-path", help="embedding file (precomputed)")
    add.add_argument("--symbol-column", default="symbol")
    sub.add_parser("discover", help="list the models discovery would add now (mteb registry, default rules)")
    sub.add_parser("register-backbones", help="add the offline backbones and built-in cell datasets as partitions (for the UI)")
    sub.add_parser("leaderboard", help="print the stored leaderboard")
    sub.add_parser("fetch-annotations", help="download and verify org.Hs.eg.db and GO.db")
    verify = sub.add_parser("verify", help="check a pulled release against its MANIFEST.json")
    verify.add_argument("data_dir", nargs="?", default="data")
    args = parser.parse_args(argv)

    if args.command == "backbones":
        for b in all_backbones().values():
            where = ("offline" if b.offline else "needs API key" if b.kind == "openai"
                     else "needs weights" if b.origin == "registry" else b.origin)
            print(f"{b.name:32} {b.kind:22} {b.dims:5}d  {where:15} {b.model_id or b.source_path or ''}")
        return 0
    if args.command == "discover":
        from .automation.discovery import ModelDiscovery

        known = set(all_backbones())
        for b in ModelDiscovery().candidates():
            print(f"{b.name:60} {b.dims:5}d  {b.n_parameters or 0:>14,} parameters  {'known' if b.name in known else 'new'}")
        return 0
    if args.command == "verify":
        from .release.dvc_repository import verify_release

        manifest = verify_release(Path(args.data_dir))
        print(f"{args.data_dir}: release {manifest['version']}, {len(manifest['files'])} files verified")
        return 0

    from .definitions import defs

    resources = defs.resources
    if args.command == "fetch-annotations":
        for package in ("org.Hs.eg.db", "GO.db"):
            print(f"{package}: {resources['annotation_databases'].sqlite_path(package)}")
        return 0
    io_base = Path(resources["io_manager"].base_dir)
    if args.command == "leaderboard":
        print_leaderboard(io_base)
        return 0
    instance = DagsterInstance.get()
    if args.command == "add-backbone":
        return add_backbone(instance, args)
    if args.command == "register-backbones":
        new = register_backbones(instance, OFFLINE_BACKBONES)
        new += register_partitions(instance, cell_dataset_partitions.name, list(CELL_DATASETS))
        print("new partitions:", new or "none")
        return 0
    cell_datasets = {name: {"max_cells": args.max_cells} for name in args.cell_datasets}
    cell_datasets.update({name: {"h5ad_path": str(Path(path).resolve()), "label_key": label, "max_cells": args.max_cells}
                          for name, path, label in args.cell_h5ad})
    outcome = run_pipeline(defs, instance, args.backbones, args.views, release=not args.no_release,
                           cell_datasets=cell_datasets)
    print_leaderboard(io_base)
    if outcome["failed_partitions"]:
        print(f"\nFailed partitions (see the Dagster logs): {', '.join(outcome['failed_partitions'])}", file=sys.stderr)
    if not outcome["release_succeeded"]:
        print("The leaderboard or release step failed; data/ and data.dvc are unchanged.", file=sys.stderr)
        return 1
    return 1 if outcome["failed_partitions"] else 0


if __name__ == "__main__":
    sys.exit(main())
