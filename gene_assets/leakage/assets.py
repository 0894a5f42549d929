"""term_masking: every text view against the tasks whose labels a view may name, with its blocking check."""

import hashlib
import logging
import time

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)
from pydantic import Field

from ..automation.conditions import TERM_MASKING_CONDITION
from ..embeddings.backbone import Backbone
from ..embeddings.cache import EmbeddingCache
from ..embeddings.device import EmbeddingDevice
from ..embeddings.encoders import load_encoder, vector_settings
from ..embeddings.registry import get_backbone
from ..leaderboard.assets import markdown_table
from ..results import GeneMatrix
from ..settings import EMBEDDING_CACHE_ENV
from ..sources.data_directory import DataDirectory
from ..storage import ParquetIOManager
from ..tasks.assets import labels_of
from ..tasks.evaluation import Protocol
from ..tasks.gene_properties import GENE_SET_FILES
from ..tasks.spec import TaskLabelError
from ..texts.views import VIEWS
from .masking import (
    MAX_DROP,
    MIN_NAMED_LABELS,
    SCORE_COLUMNS,
    TERM_TASKS,
    TermMatcher,
    label_terms,
    mask_texts,
    masked_pairs,
    masking_scores,
    named_labels,
    scored_labels,
    scoring_labels,
    term_masking_table,
    verdicts,
)

CORPUS_KINDS = ("bag_of_words", "tfidf")
"""Backbone kinds fitted on the texts embedded together: cheap, masked on every run."""
CONDITIONS = ("term_masked", "random_masked")
GPU_PRECISIONS = ("bf16", "fp16")
"""Precisions a cached backbone may have run at on an accelerator (the embedding cache keys vectors by precision)."""
logger = logging.getLogger(__name__)


class MaskingSkipped(Exception):
    """A backbone is not scored on a masked view; the message is the reason recorded in its row."""


class TermMaskingConfig(Config):
    backbones: list[str] = Field(
        default=["bag-of-words", "tfidf", "all-MiniLM-L6-v2"],
        description="Backbones whose masked texts are embedded and scored. Bag-of-words and TF-IDF are refitted on "
        "the masked texts; a backbone with an embedding cache (a neural model, a web API) is scored only when its "
        "cache holds the masked texts, up to max_texts_to_embed missing ones.",
    )
    max_texts_to_embed: int = Field(
        default=0,
        description="Masked texts a cached backbone may embed in this run (they are kept in its embedding cache); "
        "one with more missing is skipped with the count in its row. 0: only what the cache already holds.",
    )
    universe: str = Field(default="all_genes", description="The gene universe scored (a gene_universes column).")
    n_splits: int = Field(default=5, description="Folds, as in the results assets' config (the same folds).")
    seed: int = Field(default=0, description="Seed of the folds (as in the results assets) and of the random masks.")
    max_drop: float = Field(
        default=MAX_DROP,
        description="The blocking check fails when a (task, view) pair the leakage audit calls clean loses more "
        "than this to its term mask (relative to the random mask): the median drop of the primary metric over the "
        "labels whose names occur in the view's texts.",
    )
    min_named_labels: int = Field(
        default=MIN_NAMED_LABELS,
        description="A (task, view) pair with fewer labels named in the view's texts is reported as 'cannot judge': "
        "neither clean nor blocking.",
    )


def text_sha256(texts: pd.Series) -> list[str]:
    return [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]


def masked_vectors(
    backbone: Backbone,
    view: str,
    masked: pd.DataFrame,
    embedding_device: EmbeddingDevice | None = None,
    max_texts_to_embed: int = 0,
    log=logger,
) -> dict[str, GeneMatrix]:
    """Both masks of a view's texts (mask_texts) embedded by the backbone, a GeneMatrix per condition; a backbone
    with an embedding cache only when at most `max_texts_to_embed` of them are not cached (else MaskingSkipped)."""
    index = pd.Index(masked["entrez_id"])
    frames = {
        condition: pd.DataFrame({"entrez_id": masked["entrez_id"], "text": masked[condition], "source": "masked"})
        for condition in CONDITIONS
    }
    if backbone.kind in CORPUS_KINDS:
        return {c: GeneMatrix(index, load_encoder(backbone).embed(frame)) for c, frame in frames.items()}
    if not backbone.kind_spec.cached:
        raise MaskingSkipped(f"{backbone.kind} vectors do not come from the words of the text; nothing to mask.")
    for frame in frames.values():
        frame["text_sha256"] = text_sha256(frame["text"])
    wanted = pd.unique(pd.concat(frames.values())["text_sha256"])

    def missing(precision: str) -> tuple[EmbeddingCache, int]:
        cache = EmbeddingCache(vector_settings(backbone, precision), log=log)
        return cache, len(wanted) - len(cache.lookup(view, wanted)[0])

    def skip(absent: int) -> MaskingSkipped:
        return MaskingSkipped(
            f"{absent:,} of its {len(wanted):,} masked {view} texts are not in its embedding cache "
            f"(${EMBEDDING_CACHE_ENV}) and max_texts_to_embed is {max_texts_to_embed:,}: raise it to embed them "
            "(they stay cached)."
        )

    # Counted under every precision first: settling this machine's precision may calibrate it (minutes), which a
    # backbone that is skipped anyway does not need.
    gaps = {p: missing(p) for p in dict.fromkeys(("fp32", *backbone.fast_path.precisions, *GPU_PRECISIONS))}
    fewest = min(gaps.values(), key=lambda gap: gap[1])
    if fewest[1] > max_texts_to_embed:
        raise skip(fewest[1])
    placement = (embedding_device or EmbeddingDevice()).placement(backbone)
    cache, absent = gaps.get(placement.precision) or missing(placement.precision)
    if absent > max_texts_to_embed:
        raise skip(absent)

    def encode(chunk: pd.DataFrame):
        return load_encoder(backbone, placement).embed(chunk)

    return {c: GeneMatrix(index, cache.embed(frame, view, encode).matrix) for c, frame in frames.items()}


@asset(
    group_name="leaderboard",
    kinds={"scikit-learn"},
    deps=["gene_property_labels"],
    automation_condition=TERM_MASKING_CONDITION,
    check_specs=[
        AssetCheckSpec(
            "clean_views_survive_term_masking",
            asset="term_masking",
            blocking=True,
            description=f"No (task, view) pair the leakage audit calls clean, with at least min_named_labels (default "
            f"{MIN_NAMED_LABELS}) labels named in its texts, loses more than max_drop (default {MAX_DROP}) of its "
            "primary metric, as the median over those labels, when the task's term names are masked instead of as "
            "many random words.",
        )
    ],
)
def term_masking(
    context: AssetExecutionContext,
    config: TermMaskingConfig,
    gene_texts: pd.DataFrame,
    gene_universes: pd.DataFrame,
    data_directory: DataDirectory,
    embedding_device: EmbeddingDevice,
    io_manager: ResourceParam[ParquetIOManager],
):
    """Per (task, view, backbone) for the tasks whose labels are annotation terms that some text view contains (the
    leakage audit's mapping), in every view gene_texts holds: every text with the words of the task's term names masked, and with as many random
    words masked; both embedded and scored on the task's primary metric over the results assets' folds; the labels
    named in the view's texts and the median drop (random-masked − term-masked) over them (labels of a multilabel
    task; folds otherwise), the median over every replicate, and the verdict (verdicts). Without stored
    gene_property_labels (a state that scored none of the term tasks) every row is skipped with that reason."""
    started = time.perf_counter()
    labels_stored = io_manager.stored_path(["gene_property_labels"]).exists()
    gene_property_labels = io_manager.load(["gene_property_labels"]) if labels_stored else None
    protocol = Protocol.named("published", n_splits=config.n_splits, seed=config.seed)
    audited = masked_pairs(VIEWS)
    rows = []
    for task_name, pairs in audited[audited["view"].isin(gene_texts["view"].unique())].groupby("task", sort=True):
        if gene_property_labels is None:
            rows += [
                {**pair, "task": task_name, "universe": config.universe, "backbone": backbone, "status": "skipped"}
                | {"labels_named": 0, "genes_masked": 0, "words_masked": 0, "words": 0}
                | {"reason": "gene_property_labels is not materialized: no term task is scored."}
                for pair in pairs[["view", "shared_source", "leaks"]].to_dict("records")
                for backbone in config.backbones
            ]
            continue
        task = TERM_TASKS[task_name]
        labels = labels_of(task, gene_property_labels)
        gmt = data_directory.file(GENE_SET_FILES[task_name]) if task_name in GENE_SET_FILES else None
        inside = scoring_labels(task, labels, set(gene_universes.loc[gene_universes[config.universe], "entrez_id"]))
        scored = scored_labels(task, inside)
        terms = label_terms(task_name, labels, gmt).reindex(scored).dropna()
        matcher = TermMatcher(terms)
        genes = set(inside["entrez_id"])
        for pair in pairs.to_dict("records"):
            texts = gene_texts[(gene_texts["view"] == pair["view"]) & gene_texts["entrez_id"].isin(genes)]
            texts = texts.reset_index(drop=True)
            masked = mask_texts(texts, matcher, config.seed)
            named = named_labels(texts["text"], terms)
            base = {
                "task": task_name,
                "view": pair["view"],
                "universe": config.universe,
                "shared_source": pair["shared_source"],
                "leaks": pair["leaks"],
                "labels_named": len(named),
                "genes_masked": int((masked["n_masked"] > 0).sum()),
                "words_masked": int(masked["n_masked"].sum()),
                "words": int(masked["n_words"].sum()),
            }
            for backbone in config.backbones:
                try:
                    if not base["words_masked"]:
                        raise MaskingSkipped(f"no {task_name} term name occurs in the {pair['view']} texts.")
                    vectors = masked_vectors(
                        get_backbone(backbone),
                        pair["view"],
                        masked,
                        embedding_device,
                        config.max_texts_to_embed,
                        context.log,
                    )
                    scores = masking_scores(
                        task, inside, vectors["term_masked"], vectors["random_masked"], protocol, named
                    )
                    rows.append({**base, "backbone": backbone, "status": "scored", "reason": "", **scores})
                except (MaskingSkipped, TaskLabelError) as skipped:
                    rows.append({**base, "backbone": backbone, "status": "skipped", "reason": str(skipped)})
                outcome = rows[-1]
                context.log.info(
                    f"term masking {task_name} / {pair['view']} / {backbone}: "
                    + (
                        f"{outcome['labels_named']} labels named, median drop over them {outcome['named_drop']:+.3f}, "
                        f"over all {outcome['median_drop']:+.3f}"
                        if outcome["status"] == "scored"
                        else outcome["reason"]
                    )
                )
    table = pd.DataFrame(rows)
    table = table.reindex(columns=[*table.columns, *(c for c in SCORE_COLUMNS if c not in table.columns)])
    if len(table):
        table["verdict"] = verdicts(table, config.max_drop, config.min_named_labels)
    flagged = table[table["verdict"] == "LEAK"] if len(table) else table
    yield Output(
        table,
        metadata={
            "term_masking": MetadataValue.md(
                markdown_table(term_masking_table(table), "no term task shares a view's source")
            ),
            "pairs_scored": int((table["status"] == "scored").sum()) if len(table) else 0,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    yield AssetCheckResult(
        check_name="clean_views_survive_term_masking",
        passed=flagged.empty,
        metadata={
            "max_drop": config.max_drop,
            "min_named_labels": config.min_named_labels,
            "cannot_judge": int((table["verdict"] == "cannot judge").sum()) if len(table) else 0,
            "clean_pairs_scored": int(((table["status"] == "scored") & ~table["leaks"]).sum()) if len(table) else 0,
            "flagged": MetadataValue.md(markdown_table(term_masking_table(flagged), "none")),
        },
    )
