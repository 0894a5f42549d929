"""Task labels (mapped once through the catalog), gene universes, and per-family results per backbone × view.

Results are one asset per task family rather than a task partition dimension: Dagster multi-partitions have
two dimensions and backbone × view already uses both; per-family assets can also be re-run, retried and
inspected on their own (the gene-pair task takes minutes, the Geneformer tasks seconds)."""

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    Config,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from ..automation.conditions import RESULTS_CONDITION
from ..catalog.resolver import GeneResolver
from ..embeddings.partitions import backbone_view_partitions
from ..embeddings.registry import get_backbone
from ..embeddings.table import GeneEmbeddings
from ..parallel import run_units, threads_per_worker, worker_count
from ..progress import ProgressLog
from ..results import UNIVERSES, FeatureDraws, GeneMatrix, counts_metadata, result_check_specs, result_checks
from ..roles import GENE_TASK_RESULTS, SHARED_INPUT, role_tags
from ..sources.bioconductor import AnnotationDatabases
from ..sources.data_directory import DataDirectory, read_data_csv
from ..texts.assets import go_annotation_counts
from .evaluation import (
    MULTICLASS_PROBES,
    MULTILABEL_PROBES,
    PROTOCOLS,
    Protocol,
    evaluate_binary,
    evaluate_multiclass,
    evaluate_multilabel,
    evaluate_pairs,
    genes_digest,
)
from .figures import confusion_png, png_markdown, roc_png
from .gene_properties import (
    GENE_PROPERTY_TASKS,
    chromosome_labels,
    gene_set_labels,
    hgnc_group_labels,
    tf_labels,
)
from .gene_type import GENE_TYPE_TASK, map_gene_type_labels
from .geneformer import GENEFORMER_TASKS, map_chen2020_labels, map_geneformer_labels
from .interaction import GGI_TASK, map_pairs, read_pair_split
from .spec import GeneTask, TaskLabelError
from .subsets import (
    STUDY_MEASURES,
    gene_subset_masks,
    mention_column,
    mention_shares,
    mentions_other,
    pair_subset_masks,
)


@asset(group_name="tasks", kinds={"pandas"}, tags=role_tags(SHARED_INPUT))
def gene_universes(
    context: AssetExecutionContext,
    gene_texts: pd.DataFrame,
    gene_summaries: pd.DataFrame,
    annotation_databases: AnnotationDatabases,
) -> pd.DataFrame:
    """entrez_id and the universes it belongs to (every backbone is scored on the same universe genes), and how
    well studied each gene is: words of its RefSeq summary and number of direct GO annotations (org.Hs.eg.db),
    which choose the least-studied third of every task's genes (subsets.py)."""
    genes = pd.DataFrame({"entrez_id": np.sort(gene_texts["entrez_id"].unique())})
    genes["all_genes"] = True
    genes["with_summary"] = genes["entrez_id"].isin(gene_summaries["entrez_id"])
    words = gene_summaries.set_index("entrez_id")["summary"].str.split().str.len()
    genes["summary_words"] = genes["entrez_id"].map(words).fillna(0).astype(int)
    genes["go_annotations"] = genes["entrez_id"].map(go_annotation_counts(annotation_databases)).fillna(0).astype(int)
    context.add_output_metadata(
        {
            **{name: int(genes[name].sum()) for name in UNIVERSES},
            "study_depth_median": MetadataValue.json(genes[list(STUDY_MEASURES)].median().to_dict()),
        }
    )
    return genes


@asset(group_name="tasks", kinds={"pandas"}, tags=role_tags(SHARED_INPUT))
def geneformer_labels(
    context: AssetExecutionContext, gene_catalog: pd.DataFrame, data_directory: DataDirectory
) -> pd.DataFrame:
    """The seven Geneformer tasks (Ensembl ids) and Chen 2020's TF range list (symbols) as Entrez-id labels."""
    resolver = GeneResolver(gene_catalog)
    geneformer_path, chen_path = data_directory.file("geneformer_tasks"), data_directory.file("chen2020_tf_range")
    labels, counts = map_geneformer_labels(read_data_csv(geneformer_path, dtype=str), resolver, geneformer_path)
    chen, chen_counts = map_chen2020_labels(read_data_csv(chen_path, dtype=str), resolver, chen_path)
    context.add_output_metadata(counts_metadata({**counts, **chen_counts}, [geneformer_path, chen_path]))
    return pd.concat([labels, chen], ignore_index=True)


@asset(group_name="tasks", kinds={"pandas"}, tags=role_tags(SHARED_INPUT))
def gene_type_labels(
    context: AssetExecutionContext, gene_catalog: pd.DataFrame, data_directory: DataDirectory
) -> pd.DataFrame:
    """GenePT's gene functionality labels (Ensembl gene_type), mapped to Entrez ids."""
    path = data_directory.file("gene_type_table")
    labels, counts = map_gene_type_labels(read_data_csv(path, dtype=str), GeneResolver(gene_catalog), path)
    context.add_output_metadata(counts_metadata(counts, [path]))
    return labels


@asset(group_name="tasks", kinds={"pandas"}, tags=role_tags(SHARED_INPUT))
def gene_property_labels(
    context: AssetExecutionContext, gene_catalog: pd.DataFrame, data_directory: DataDirectory
) -> pd.DataFrame:
    """TF vs non-TF, HGNC groups, KEGG / GO-BP / OMIM gene sets and chromosome, as (task, entrez_id, label)."""
    resolver = GeneResolver(gene_catalog)
    files = {
        name: data_directory.file(name)
        for name in ("human_tfs", "hgnc_gene_groups", "kegg_gene_sets", "go_bp_gene_sets", "omim_gene_sets")
    }
    parts = [
        tf_labels(read_data_csv(files["human_tfs"], sep="\t", dtype=str), resolver, files["human_tfs"]),
        hgnc_group_labels(read_data_csv(files["hgnc_gene_groups"], dtype=str), resolver, files["hgnc_gene_groups"]),
        gene_set_labels(files["kegg_gene_sets"], "kegg_pathways", resolver),
        gene_set_labels(files["go_bp_gene_sets"], "go_bp_experimental", resolver),
        gene_set_labels(files["omim_gene_sets"], "omim_disease", resolver),
        chromosome_labels(gene_catalog),
    ]
    counts = {task: c for _, part in parts for task, c in part.items()}
    context.add_output_metadata(counts_metadata(counts, list(files.values())))
    return pd.concat([labels for labels, _ in parts], ignore_index=True)[["task", "entrez_id", "label"]]


@asset(group_name="tasks", kinds={"pandas"}, tags=role_tags(SHARED_INPUT))
def gene_interaction_pairs(
    context: AssetExecutionContext, gene_catalog: pd.DataFrame, gene_texts: pd.DataFrame, data_directory: DataDirectory
) -> pd.DataFrame:
    """Gene2vec train and test pairs (2018 symbols) mapped to Entrez ids; unmapped pairs dropped and counted. Per
    text view, `mentions_<view>` flags the pairs where one gene's text names the other (content overlap, GenePT
    App. B.3; subsets.mentions_other), and the metadata gives the share of positive and negative pairs flagged."""
    files, splits = [], []
    for split in ("train", "test"):
        text, label = data_directory.file(f"ggi_{split}_text"), data_directory.file(f"ggi_{split}_label")
        files += [text, label]
        splits.append(read_pair_split(text, label, split))
    pairs, counts = map_pairs(pd.concat(splits, ignore_index=True), GeneResolver(gene_catalog))
    for view, texts in gene_texts.groupby("view"):
        pairs[mention_column(view)] = mentions_other(pairs, texts, gene_catalog)
    context.add_output_metadata(
        {**counts_metadata(counts, files), "content_overlap": MetadataValue.md(mention_shares(pairs).to_markdown())}
    )
    return pairs


class TaskEvaluationConfig(Config):
    protocol: str = Field(
        default="published",
        description=f"Evaluation protocol, one of {', '.join(PROTOCOLS)}. published: the sources' probes, forests on "
        "all_genes only and on 5 of the random control's draws; full: forests on both universes and every "
        "draw, and logistic regression tuned by nested cross-validation beside the default on binary tasks. Recorded in every result row; the leaderboard compares results of one protocol.",
    )
    multiclass_probes: list[str] = Field(
        default=["logistic_regression"],
        description=f"Multiclass probes, scored in this order, from {', '.join(MULTICLASS_PROBES)}: multinomial "
        "logistic regression (the published probe) and, only when named, the one-vs-rest ridge classifier.",
    )
    multilabel_probes: list[str] = Field(
        default=["logistic_regression"],
        description=f"Multilabel probes, scored in this order, from {', '.join(MULTILABEL_PROBES)}: one logistic "
        "regression per label (the published probe) and, only when named, ridge on standardized features.",
    )
    n_splits: int = Field(
        default=5, description="Stratified K-fold splits per task (the fold values are the folds' metrics)."
    )
    seed: int = Field(
        default=0, description="Seed of the splits and of every random step of the probes and the bootstrap."
    )
    pca_dims: int | None = Field(
        default=None,
        description=(
            "Reduce embeddings wider than this with PCA (fitted inside each fold) before the probe; None: the "
            "probes see every dimension."
        ),
    )
    n_bootstrap: int = Field(
        default=1000, description="Bootstrap resamples of the pooled test predictions behind each 95% CI."
    )
    random_draws: int = Field(
        default=20, description="The random-gaussian control is scored with this many seeds (a band, not one draw)."
    )
    universes: list[str] = Field(
        default=list(UNIVERSES),
        description=(
            "Gene universes scored: all_genes, and with_summary (genes with a RefSeq summary, a confound control)."
        ),
    )
    workers: int = Field(
        default=0,
        description=(
            "Processes scoring (task, universe, draw) units side by side (0: one per core); results do not depend "
            "on it."
        ),
    )

    def evaluation_protocol(self) -> Protocol:
        return Protocol.named(
            self.protocol,
            multiclass_probes=tuple(self.multiclass_probes),
            multilabel_probes=tuple(self.multilabel_probes),
            n_splits=self.n_splits,
            seed=self.seed,
            pca_dims=self.pca_dims,
            n_bootstrap=self.n_bootstrap,
            threads=threads_per_worker(worker_count(self.workers)),
        )


def restrict(task: GeneTask, labels: pd.DataFrame, genes: set) -> tuple[pd.DataFrame, int]:
    """Labels of genes in the universe (that have an embedding), with the task's class/label selection applied;
    for the gene-pair task, the pairs whose two genes are inside. Also returns how many genes (pairs) were left out."""
    if task.kind == "pairs":
        inside = labels[labels["entrez_a"].isin(genes) & labels["entrez_b"].isin(genes)]
        return inside, len(labels) - len(inside)
    inside = labels[labels["entrez_id"].isin(genes)]
    excluded = labels["entrez_id"].nunique() - inside["entrez_id"].nunique()
    if task.kind == "multiclass":
        sizes = inside["label"].value_counts()
        keep = sizes[sizes >= task.min_class_genes].index[: task.max_classes]
        inside = inside[inside["label"].isin(keep)]
    return inside.sort_values(["entrez_id", "label"]).reset_index(drop=True), int(excluded)


def labels_of(task: GeneTask, labels: pd.DataFrame) -> pd.DataFrame:
    """The task's rows of a family's labels table (the gene-pair and gene-type tables hold one task)."""
    return labels[labels["task"] == task.name] if "task" in labels else labels


def label_matrix(task: GeneTask, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A multilabel task's sorted genes and gene × label membership, for labels within the task's size range."""
    low, high = task.label_size_range
    sizes = labels["label"].value_counts()
    kept = sorted(sizes[(sizes >= low) & (sizes <= high)].index)
    genes = np.sort(labels["entrez_id"].unique())
    Y = (
        pd.crosstab(labels["entrez_id"], labels["label"]).reindex(index=genes, columns=kept, fill_value=0).to_numpy()
        > 0
    )
    return genes, Y


def task_genes(task: GeneTask, labels: pd.DataFrame) -> np.ndarray:
    """Every gene a task's (restricted) labels name."""
    columns = ["entrez_a", "entrez_b"] if task.kind == "pairs" else ["entrez_id"]
    return np.unique(labels[columns].to_numpy().ravel())


def in_band(task: GeneTask, labels: pd.DataFrame, protocol: Protocol) -> bool:
    """Whether the random control's extra draws score this task: a binary or multiclass task of at most
    `band_max_genes` genes. Not the gene-pair task, nor multilabel tasks: their mean over labels needs no band (and
    every one exceeds 2,000 genes on the full gene set), while per-label logistic regression on noise draws is the
    costliest fit there is."""
    return task.kind in ("binary", "multiclass") and labels["entrez_id"].nunique() <= protocol.band_max_genes


def score_task(
    task: GeneTask,
    labels: pd.DataFrame,
    genes: GeneMatrix,
    protocol: Protocol,
    extra_draw: bool = False,
    forest: bool = True,
    study: pd.DataFrame | None = None,
    mentions: str | None = None,
) -> tuple[list[dict], dict]:
    """Rows for one task on one universe (labels already restricted) and its figures' inputs. Extra draws of the
    random control skip bootstrap replicates (and are scored only on tasks `in_band`); `forest`: binary tasks also
    fit random forests (the gene-pair task always does). Given the study depth of the task's genes (entrez_id
    index, STUDY_MEASURES columns), every probe is also scored on the least-studied third of them; given a column
    of the pairs that flags texts naming each other, the gene-pair task also on the test pairs without (subsets.py)."""
    bootstrap = not extra_draw
    if task.kind == "pairs":
        train, test = labels[labels["split"] == "train"], labels[labels["split"] == "test"]
        if train.empty or test.empty:
            raise TaskLabelError(f"Task {task.name}: no train or no test pairs inside this universe.")

        def rows_of(t):
            return genes.index.get_indexer(t["entrez_a"]), genes.index.get_indexer(t["entrez_b"])

        rows, scores = evaluate_pairs(
            task,
            genes.matrix,
            rows_of(train),
            train["label"].to_numpy(),
            rows_of(test),
            test["label"].to_numpy(),
            protocol,
            bootstrap,
            pair_subset_masks(study, test, mentions),
        )
        digest = genes_digest(labels[["entrez_a", "entrez_b", "label"]].to_numpy())
        n_genes = len(pd.unique(labels[["entrez_a", "entrez_b"]].to_numpy().ravel()))
        for row in rows:
            row.update(n_genes=n_genes, n_pairs_train=len(train), n_pairs_test=len(test))
        return [dict(r, genes_digest=digest) for r in rows], {"roc": (test["label"].to_numpy(), scores)}
    if labels.empty:
        raise TaskLabelError(f"Task {task.name}: no labelled gene is inside this universe.")
    if task.kind == "multilabel":
        ids, Y = label_matrix(task, labels)
        rows = evaluate_multilabel(task, genes.rows(ids), Y, protocol, bootstrap, gene_subset_masks(study, ids))
        digest = genes_digest(ids, np.packbits(Y))
        return [dict(r, genes_digest=digest) for r in rows], {}
    X = genes.rows(labels["entrez_id"])
    subsets = gene_subset_masks(study, labels["entrez_id"])
    digest = genes_digest(labels["entrez_id"].to_numpy(), pd.factorize(labels["label"], sort=True)[0])
    if task.kind == "binary":
        rows = evaluate_binary(task, X, labels["label"], protocol, bootstrap, forest, subsets)
        return [dict(r, genes_digest=digest) for r in rows], {}
    rows, confusion = evaluate_multiclass(task, X, labels["label"], protocol, bootstrap, subsets)
    return [dict(r, genes_digest=digest) for r in rows], {"confusion": confusion}


def task_results_asset(name: str, labels_asset: str, tasks: list[GeneTask], description: str):
    """A results asset for one task family, partitioned by backbone × view, with its checks beside it."""

    @asset(
        name=name,
        group_name="tasks",
        partitions_def=backbone_view_partitions,
        ins={
            "embeddings": AssetIn("gene_embeddings"),
            "universes": AssetIn("gene_universes"),
            "labels": AssetIn(labels_asset),
        },
        kinds={"scikit-learn"},
        tags=role_tags(GENE_TASK_RESULTS),
        automation_condition=RESULTS_CONDITION,
        description=description,
        check_specs=result_check_specs(name),
    )
    def _results(
        context: AssetExecutionContext,
        config: TaskEvaluationConfig,
        embeddings: GeneEmbeddings,
        universes: pd.DataFrame,
        labels: pd.DataFrame,
    ):
        partition = context.partition_key.keys_by_dimension
        backbone = get_backbone(partition["backbone"])
        protocol, features = config.evaluation_protocol(), FeatureDraws(embeddings, config.random_draws)
        embedded = set(features.index)
        study = (
            universes.set_index("entrez_id")[list(STUDY_MEASURES)] if set(STUDY_MEASURES) <= set(universes) else None
        )
        if study is None:
            context.log.warning(
                "gene_universes has no study depth (summary_words, go_annotations): it predates them. Re-materialize "
                "gene_universes to also score the least-studied third of each task's genes."
            )
        restricted = {}
        for universe in config.universes:
            genes = set(universes.loc[universes[universe], "entrez_id"]) & embedded
            for task in tasks:
                restricted[universe, task.name] = restrict(task, labels_of(task, labels), genes)
        keys = [
            (draw, universe, task)
            for draw in features.draws
            for universe in config.universes
            for task in tasks
            if draw == 0 or in_band(task, restricted[universe, task.name][0], protocol)
        ]

        def unit(draw: int, universe: str, task: GeneTask) -> tuple:
            inside = restricted[universe, task.name][0]
            genes = task_genes(task, inside)
            return (
                task,
                inside,
                features.genes(draw, genes),
                protocol,
                draw > 0,
                protocol.forests(universe, draw),
                None if study is None else study.reindex(genes),
                mention_column(partition["view"]),
            )

        progress = ProgressLog(
            context.log,
            f"{name} {backbone.name}/{partition['view']}",
            "task evaluations",
            total=len(keys),
            every_seconds=0.0,
        )
        outcomes = run_units(
            score_task,
            (unit(*key) for key in keys),
            worker_count(config.workers),
            protocol.threads,
            expected=(TaskLabelError,),
        )
        rows, skipped, figures, timings = [], [], {}, {}
        for (draw, universe, task), (outcome, seconds) in zip(keys, outcomes):
            if isinstance(outcome, TaskLabelError):
                if draw == 0:
                    skipped.append({"task": task.name, "universe": universe, "reason": str(outcome)})
                    context.log.warning(f"{task.name} on {universe}: {outcome}")
                progress.advance(note=f"{task.name} on {universe} skipped")
                continue
            scored, figure = outcome
            progress.advance(note=f"{task.name} on {universe}, draw {draw}: {seconds:.1f}s")
            timings[task.name] = timings.get(task.name, 0.0) + seconds
            excluded = restricted[universe, task.name][1]
            rows += [
                dict(r, universe=universe, draw=draw, n_excluded=excluded, seconds=seconds, protocol=protocol.name)
                for r in scored
            ]
            if draw == 0 and universe == "all_genes" and figure:
                figures[task.name] = figure
        results = pd.DataFrame(rows).assign(backbone=backbone.name, view=partition["view"], dims=embeddings.dims)
        yield Output(
            results, metadata={"protocol": protocol.name, **_results_metadata(results, skipped, figures, timings)}
        )
        yield from result_checks(results, skipped)

    return _results


def _results_metadata(results: pd.DataFrame, skipped: list, figures: dict, timings: dict) -> dict:
    metadata = {
        "seconds_per_task": MetadataValue.json({k: round(v, 2) for k, v in timings.items()}),
        "seconds": round(sum(timings.values()), 2),
    }
    if len(results):
        first = results[results["draw"] == 0]
        summary = first.pivot_table(
            index=["task", "classifier", "metric"], columns="universe", values="estimate"
        ).round(3)
        metadata["estimates"] = MetadataValue.md(summary.to_markdown())
    if skipped:
        metadata["skipped"] = MetadataValue.json(skipped)
    for task, figure in figures.items():
        if "roc" in figure:
            metadata[f"{task}_roc"] = MetadataValue.md(png_markdown(roc_png(*figure["roc"], title=task)))
        if "confusion" in figure:
            metadata[f"{task}_confusion"] = MetadataValue.md(
                png_markdown(confusion_png(figure["confusion"], title=task))
            )
    return metadata


geneformer_results = task_results_asset(
    "geneformer_results",
    "geneformer_labels",
    GENEFORMER_TASKS,
    "ROC-AUC (LR, RF; stratified K-fold) on the Geneformer tasks and Chen 2020 TF range, per universe.",
)
gene_type_results = task_results_asset(
    "gene_type_results",
    "gene_type_labels",
    [GENE_TYPE_TASK],
    "Gene functionality: balanced accuracy, macro-F1 and MCC of multinomial LR (stratified K-fold), per universe.",
)
gene_property_results = task_results_asset(
    "gene_property_results",
    "gene_property_labels",
    GENE_PROPERTY_TASKS,
    "Gene-property families: binary AUC, multiclass balanced accuracy / F1 / MCC, multilabel mean per-label AUC.",
)
gene_interaction_results = task_results_asset(
    "gene_interaction_results",
    "gene_interaction_pairs",
    [GGI_TASK],
    "Gene-gene interaction: train-split fit, test-split ROC-AUC (LR, RF) on summed pair embeddings.",
)

TASKS = {t.name: t for t in [*GENEFORMER_TASKS, GENE_TYPE_TASK, *GENE_PROPERTY_TASKS, GGI_TASK]}
