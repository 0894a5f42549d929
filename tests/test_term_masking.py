"""Term masking on real data: 1,500 genes' GO and summary texts (org.Hs.eg.db, RefSeq) against the GO-BP task."""

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, build_output_context, materialize

from gene_assets.cli import print_term_masking
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.registry import BACKBONES
from gene_assets.leakage.assets import MaskingSkipped, masked_vectors
from gene_assets.leakage.masking import (
    MASK_TOKEN,
    MAX_DROP,
    MIN_NAMED_LABELS,
    TERM_TASKS,
    WORD,
    TermMatcher,
    mask_texts,
    masked_pairs,
    masking_scores,
    named_labels,
    phrase,
    scored_labels,
    scoring_labels,
    verdicts,
)
from gene_assets.resources import temporary_resources
from gene_assets.sources.bioconductor import AnnotationDatabases
from gene_assets.tasks.evaluation import Protocol
from gene_assets.tasks.gene_properties import read_gmt, term_names
from gene_assets.texts.assets import read_go_terms
from gene_assets.texts.views import VIEWS, build_view

TASK = TERM_TASKS["go_bp_experimental"]
BAG_OF_256_WORDS = dataclasses.replace(BACKBONES["bag-of-words"], name="bag-of-256-words", dims=256)
"""Bag-of-words on fewer words, for time (the ridge probe solves a system of the embedding's width per fold)."""
N_GENES = 1500
LEAKED_SHARE = 0.25
"""The share of (gene, named label) pairs whose label name the planted summaries add to the gene's text."""


@pytest.fixture(scope="module")
def world(data_dir, annotation_cache):
    """1,500 protein-coding genes with a RefSeq summary and experimental GO-BP labels (seeded draw): their go and
    summary texts, the task's labels and term names."""
    gmt = read_gmt(data_dir / "gene_tasks/other/ylab_gmt/hsa_EXP_ALL_BP_propagated.gmt.gz")
    catalog = pd.read_parquet(
        data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet",
        columns=["entrez_id", "symbol", "full_name", "gene_type_ncbi", "refseq_summary"],
    )
    catalog = catalog[(catalog["gene_type_ncbi"] == "protein-coding") & catalog["refseq_summary"].notna()]
    labelled = catalog[catalog["entrez_id"].isin(gmt["entrez_id"])]
    genes = labelled.sample(N_GENES, random_state=0).rename(columns={"refseq_summary": "summary"})
    genes = genes.merge(read_go_terms(AnnotationDatabases(cache_dir=str(annotation_cache))), on="entrez_id", how="left")
    texts = pd.concat([build_view(genes, view) for view in ("go", "summary")], ignore_index=True)
    labels = gmt[gmt["entrez_id"].isin(genes["entrez_id"])].astype({"entrez_id": "int64"})
    labels = labels[["entrez_id", "label"]].drop_duplicates().assign(task=TASK.name)
    return {"texts": texts, "labels": labels, "terms": term_names(gmt), "genes": set(genes["entrez_id"])}


def view_texts(world, view):
    return world["texts"][world["texts"]["view"] == view].reset_index(drop=True)


def scored_terms(world) -> tuple[pd.DataFrame, pd.Series]:
    """The task's labels on the world's genes, and label → term name of the labels it scores."""
    labels = scoring_labels(TASK, world["labels"], world["genes"])
    return labels, world["terms"].reindex(scored_labels(TASK, labels)).dropna()


def test_masks_hide_exactly_the_term_words_and_as_many_random_words(world):
    matcher = TermMatcher(
        [
            "mitochondrial translation",
            "translation",
            "regulation of cell-cell adhesion",
            "cell adhesion molecule binding",
        ]
    )
    text = "Biological process: Mitochondrial translation; translational control; regulation of cell–cell adhesion."
    masked = mask_texts(pd.DataFrame({"entrez_id": [1], "text": [text]}), matcher, seed=0).iloc[0]
    assert masked["term_masked"] == (
        "Biological process: [MASK] [MASK]; translational control; [MASK] [MASK] [MASK]–[MASK] [MASK]."
    )
    assert masked["n_masked"] == 7 and masked["random_masked"].count(MASK_TOKEN) == 7
    # A longer term sharing the first word and the end of the text is not matched past the end of it.
    assert matcher.positions(["cell", "adhesion"]) == [] and matcher.positions(["translation"]) == [0]
    # On real texts: the term mask hides the words of the labels' term names, the random mask as many words, and
    # every other word stays where it was.
    matcher = TermMatcher(scored_terms(world)[1])
    texts = view_texts(world, "go")
    masked = mask_texts(texts, matcher, seed=0)
    assert (masked["n_masked"] > 0).mean() > 0.5
    for original, row in zip(texts["text"], masked.itertuples()):
        words = WORD.findall(original)
        hidden = set(matcher.positions(words))
        for column in ("term_masked", "random_masked"):
            kept = WORD.findall(getattr(row, column).replace(MASK_TOKEN, " "))
            assert getattr(row, column).count(MASK_TOKEN) == row.n_masked == len(hidden)
            assert len(kept) == len(words) - row.n_masked
        assert WORD.findall(row.term_masked.replace(MASK_TOKEN, " ")) == [
            w for i, w in enumerate(words) if i not in hidden
        ]
    again = mask_texts(texts, matcher, seed=0)
    assert again.equals(masked) and not mask_texts(texts, matcher, seed=1)["random_masked"].equals(
        masked["random_masked"]
    )


def test_a_label_is_named_when_its_whole_name_occurs_in_some_text_of_the_view(world):
    """A name counts whole (case and punctuation between words ignored), inside a longer name too, never as part of
    a longer word; on the real summaries exactly the labels whose phrase is a run of some text's words are named."""
    terms = pd.Series(["translation", "mitochondrial translation", "cell-cell adhesion"], index=["a", "b", "c"])
    texts = ["Mitochondrial Translation is impaired.", "Translational control of cell–cell adhesion."]
    assert list(named_labels(texts, terms)) == ["a", "b", "c"]
    assert list(named_labels(["translational control"], terms)) == []
    _, terms = scored_terms(world)
    summaries = [[w.casefold() for w in WORD.findall(text)] for text in view_texts(world, "summary")["text"]]
    runs = {tuple(words[i : i + n]) for words in summaries for n in range(1, 13) for i in range(len(words) - n + 1)}
    named = named_labels(view_texts(world, "summary")["text"], terms)
    assert list(named) == sorted(label for label, term in terms.items() if phrase(term) in runs)
    assert MIN_NAMED_LABELS <= len(named) < len(terms) / 2


@pytest.fixture(scope="module")
def planted(world):
    """Real summary texts followed by the names of their gene's GO-BP labels, for the labels named in the real
    summaries only (a minority of the scored labels): a view the audit calls clean whose named labels leak, as if
    its summaries had been written from GO where they already name a term."""
    _, terms = scored_terms(world)
    summary = view_texts(world, "summary")
    named = named_labels(summary["text"], terms)
    leaked = world["labels"][world["labels"]["label"].isin(named)].sample(frac=LEAKED_SHARE, random_state=0)
    names = leaked.assign(term=leaked["label"].map(terms)).groupby("entrez_id")["term"]
    planted = summary["entrez_id"].map(names.agg(lambda t: "; ".join(sorted(t))))
    summary["text"] = summary["text"] + " Involved in " + planted.fillna("") + "."
    summary["text_sha256"] = [hashlib.sha256(t.encode()).hexdigest() for t in summary["text"]]
    return summary


@pytest.fixture(scope="module")
def planted_scores(world, planted):
    """masking_scores of bag-of-256-words on the planted and on the real summaries (3 folds), with the labels named
    in each."""
    labels, terms = scored_terms(world)
    matcher = TermMatcher(terms)
    protocol = Protocol.named("published", n_splits=3)  # fewer folds than the leaderboard's 5, for time
    scores = {}
    for name, texts in (("planted", planted), ("summary", view_texts(world, "summary"))):
        named = named_labels(texts["text"], terms)
        vectors = masked_vectors(BAG_OF_256_WORDS, "summary", mask_texts(texts, matcher, seed=0))
        scores[name] = masking_scores(TASK, labels, vectors["term_masked"], vectors["random_masked"], protocol, named)
        scores[name] |= {"labels_named": len(named), "leaks": False, "status": "scored"}
    return scores


def test_median_over_named_labels_flags_a_leak_the_median_over_all_labels_misses(world, planted_scores):
    """The leak planted in the named labels' texts costs those labels more than MAX_DROP under the term mask, while
    the median over all scored labels (most named nowhere, their drop zero but for noise) stays under it; the real
    summaries pass on both."""
    pairs = masked_pairs(VIEWS).set_index(["task", "view"])
    assert pairs.loc[(TASK.name, "go"), "leaks"] and not pairs.loc[(TASK.name, "summary"), "leaks"]
    planted, summary = planted_scores["planted"], planted_scores["summary"]
    assert planted["replicate"] == "label" and planted["labels_named"] == summary["labels_named"]
    assert planted["labels_named"] < planted["n_replicates"] / 2
    assert planted["named_drop"] > MAX_DROP >= planted["median_drop"], (
        f"planted: median drop over the {planted['labels_named']} named labels {planted['named_drop']:+.4f}, "
        f"over all {planted['n_replicates']} labels {planted['median_drop']:+.4f}"
    )
    assert summary["named_drop"] <= MAX_DROP and summary["median_drop"] <= MAX_DROP, summary
    table = pd.DataFrame([planted, summary])
    assert list(verdicts(table)) == ["LEAK", "passes"]
    assert list(verdicts(table.assign(leaks=True))) == ["⚠ by source", "⚠ by source"]


def test_too_few_named_labels_cannot_judge_and_do_not_block(world, planted):
    """On 600 of the genes fewer than MIN_NAMED_LABELS scored labels are named in the summaries: the planted leak
    there is reported as 'cannot judge', not clean and not LEAK."""
    genes = set(sorted(world["genes"])[:600])
    labels = scoring_labels(TASK, world["labels"], genes)
    terms = world["terms"].reindex(scored_labels(TASK, labels)).dropna()
    texts = planted[planted["entrez_id"].isin(genes)].reset_index(drop=True)
    named = named_labels(texts["text"], terms)
    assert 0 < len(named) < MIN_NAMED_LABELS
    vectors = masked_vectors(BAG_OF_256_WORDS, "summary", mask_texts(texts, TermMatcher(terms), seed=0))
    protocol = Protocol.named("published", n_splits=3)
    scores = masking_scores(TASK, labels, vectors["term_masked"], vectors["random_masked"], protocol, named)
    row = pd.DataFrame([{**scores, "labels_named": len(named), "leaks": False, "status": "scored"}])
    assert list(verdicts(row)) == ["cannot judge"], scores


def store(io_manager, name: str, frame: pd.DataFrame) -> None:
    io_manager.handle_output(build_output_context(asset_key=AssetKey(name)), frame)


def test_planted_leak_in_a_clean_view_blocks_the_release(
    world, planted, tmp_path, release_repo, annotation_cache, capsys
):
    """The blocking check names the planted (task, view, backbone) by its median drop over the named labels, which
    the median over all labels would have let through, the release is not made, and `gene-assets leaderboard`'s
    term-masking section shows the verdict beside both medians."""
    resources = temporary_resources(tmp_path, release_repo, tmp_path / "remote", annotation_cache)
    store(resources["io_manager"], "gene_texts", planted)
    store(
        resources["io_manager"],
        "gene_universes",
        pd.DataFrame({"entrez_id": sorted(world["genes"]), "all_genes": True}),
    )
    store(resources["io_manager"], "gene_property_labels", world["labels"][["task", "entrez_id", "label"]])
    result = materialize(
        [*all_assets, *all_asset_checks],
        selection=["term_masking", "embeddings_release"],
        resources=resources,
        run_config={"ops": {"term_masking": {"config": {"backbones": ["bag-of-words"], "n_splits": 2}}}},
        raise_on_error=False,
    )
    assert not result.success
    table = result.output_for_node("term_masking")
    row = table.set_index(["task", "view", "backbone"]).loc[(TASK.name, "summary", "bag-of-words")]
    assert row["status"] == "scored" and not row["leaks"] and row["verdict"] == "LEAK"
    assert row["labels_named"] >= MIN_NAMED_LABELS and row["named_drop"] > MAX_DROP >= row["median_drop"], (
        f"median drop over the {row['labels_named']} named labels {row['named_drop']:+.4f}, over all "
        f"{row['n_replicates']} labels {row['median_drop']:+.4f}"
    )
    check = [e for e in result.get_asset_check_evaluations() if e.check_name == "clean_views_survive_term_masking"]
    assert len(check) == 1 and not check[0].passed and "summary" in check[0].metadata["flagged"].value
    assert not [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "embeddings_release"]
    assert np.isfinite(table[["named_drop", "median_drop"]]).all().all()
    print_term_masking(resources["io_manager"])
    printed = [line.split("|") for line in capsys.readouterr().out.splitlines() if "| summary " in line]
    assert len(printed) == 1 and [cell.strip() for cell in printed[0][8:11]] == [
        str(row["labels_named"]),
        f"{row['named_drop']:.3f}".rstrip("0"),
        f"{row['median_drop']:.3f}".rstrip("0"),
    ]
    assert printed[0][-3].strip() == "LEAK"


def test_a_neural_backbone_is_skipped_when_its_cache_lacks_the_masked_texts(world):
    """MiniLM's masked texts are not in the (empty, per-session) embedding cache: skipped with their count, without
    loading the model or calibrating its precision."""
    texts = view_texts(world, "summary").head(20)
    matcher = TermMatcher(world["terms"].dropna())
    with pytest.raises(MaskingSkipped, match=r"(\d+) of its \1 masked summary texts are not in its embedding cache"):
        masked_vectors(BACKBONES["all-MiniLM-L6-v2"], "summary", mask_texts(texts, matcher, seed=0))
    with pytest.raises(MaskingSkipped, match="do not come from the words"):
        masked_vectors(BACKBONES["random-gaussian"], "summary", mask_texts(texts, matcher, seed=0))
