"""`gene-assets`: run the pipeline, register backbones, show the leaderboard, verify a release."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from .embeddings.partitions import backbone_partitions, backbone_view_key
from .embeddings.registry import BACKBONES, OFFLINE_BACKBONES, get_backbone
from .texts.views import VIEWS


def register_backbones(instance: DagsterInstance, names: list[str]) -> list[str]:
    """Add backbones as partitions; returns the ones that were new."""
    for name in names:
        get_backbone(name)
    known = set(instance.get_dynamic_partitions(backbone_partitions.name))
    new = [n for n in names if n not in known]
    if new:
        instance.add_dynamic_partitions(backbone_partitions.name, new)
    return new


def run_pipeline(defs, instance: DagsterInstance, backbones: list[str], views: list[str], release: bool = True) -> dict:
    """Sources once, then every (backbone, view) partition, then the leaderboard and the release."""
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
    selection = None if release else [AssetKey("leaderboard")]
    result = defs.resolve_job_def("release_job").execute_in_process(
        instance=instance, asset_selection=selection, raise_on_error=False
    )
    outcome["release_succeeded"] = result.success
    return outcome


def print_leaderboard(io_base: Path) -> None:
    import pandas as pd

    from .leaderboard.inputs import task_spec
    from .leaderboard.report import family_summary, leakage_audit, perturbation_table, wide_table

    path = io_base / "leaderboard.parquet"
    if not path.exists():
        raise SystemExit(f"No leaderboard at {path}: run `make run` first.")
    summary = pd.read_parquet(path)
    leaks = leakage_audit({v: VIEWS[v] for v in summary["view"].unique()}, {t: task_spec(t) for t in summary["task"].unique()})
    for universe in ("all_genes", "with_summary"):
        print(f"\n## {universe}: estimate [95% CI]; ★ best, ≈ not significantly worse, ⚠ view shares the label source\n")
        print(wide_table(summary, universe, leaks).to_markdown(index=False))
    print("\n## Families (mean primary metric) and mean rank\n")
    print(family_summary(summary).to_markdown(index=False))
    perturbation = perturbation_table(summary)
    if len(perturbation):
        print("\n## Unseen perturbation (all_genes): mean ± SD over folds; gap to the mean-signature baseline, paired 95% CI\n")
        print(perturbation.to_markdown(index=False))


def main(argv: list[str] | None = None) -> int:
    from .embeddings.encoders import BackboneUnavailableError
    from .embeddings.registry import UnknownBackboneError
    from .release.dvc_repository import ReleaseError
    from .sources.bioconductor import AnnotationDatabaseError
    from .sources.data_directory import DataDirectoryError

    try:
        return _main(argv)
    except (DataDirectoryError, AnnotationDatabaseError, UnknownBackboneError, BackboneUnavailableError, ReleaseError) as exc:
        print(f"gene-assets: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="gene-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the default asset graph and print the leaderboard")
    run.add_argument("--backbones", nargs="+", default=OFFLINE_BACKBONES)
    run.add_argument("--views", nargs="+", default=["summary"], choices=list(VIEWS))
    run.add_argument("--no-release", action="store_true", help="skip the DVC release")
    sub.add_parser("backbones", help="list registered backbones")
    sub.add_parser("register-backbones", help="add the offline backbones as partitions (for the UI)")
    sub.add_parser("leaderboard", help="print the stored leaderboard")
    sub.add_parser("fetch-annotations", help="download and verify org.Hs.eg.db and GO.db")
    verify = sub.add_parser("verify", help="check a pulled release against its MANIFEST.json")
    verify.add_argument("data_dir", nargs="?", default="data")
    args = parser.parse_args(argv)

    if args.command == "backbones":
        for b in BACKBONES.values():
            where = "offline" if b.offline else "needs weights"
            print(f"{b.name:24} {b.kind:22} {b.dims:5}d  {where:13} {b.model_id or ''}")
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
    if args.command == "register-backbones":
        print("new partitions:", register_backbones(instance, OFFLINE_BACKBONES) or "none")
        return 0
    outcome = run_pipeline(defs, instance, args.backbones, args.views, release=not args.no_release)
    print_leaderboard(io_base)
    if outcome["failed_partitions"]:
        print(f"\nFailed partitions (see the Dagster logs): {', '.join(outcome['failed_partitions'])}", file=sys.stderr)
    if not outcome["release_succeeded"]:
        print("The leaderboard or release step failed; data/ and data.dvc are unchanged.", file=sys.stderr)
        return 1
    return 1 if outcome["failed_partitions"] else 0


if __name__ == "__main__":
    sys.exit(main())
