"""Study bias (least-studied thirds) and content overlap (gene pairs whose texts name each other) on real genes."""

import io
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from sklearn.metrics import roc_auc_score

from gene_assets.catalog.assets import read_ncbi_gene_info
from gene_assets.cli import print_sections as print_subset_tables
from gene_assets.cli import register_backbones
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.encoders import BagOfWordsEncoder
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.embeddings.registry import get_backbone
from gene_assets.leaderboard.report import summarize
from gene_assets.leaderboard.subsets import content_overlap, content_overlap_table, study_bias, study_bias_table
from gene_assets.release.assets import leaderboard_files
from gene_assets.resources import temporary_resources
from gene_assets.results import GeneMatrix
from gene_assets.sources.bioconductor import AnnotationDatabases
from gene_assets.tasks.assets import TASKS, score_task
from gene_assets.tasks.evaluation import Protocol, evaluate_binary, evaluate_multiclass, evaluate_multilabel
from gene_assets.tasks.geneformer import GENEFORMER_SOURCES
from gene_assets.tasks.interaction import GGI_TASK, read_pair_split
from gene_assets.tasks.subsets import STUDY_MEASURES, WITHOUT_MENTIONS, least_studied, mentions_other
from gene_assets.texts.assets import go_annotation_counts
from gene_assets.texts.views import build_view


@pytest.fixture(scope="module")
def catalog(data_dir) -> pd.DataFrame:
    return read_ncbi_gene_info(data_dir / "gene_annotation/ncbi_Homo_sapiens.gene_info.2022-11.gz")


@pytest.fixture(scope="module")
def summaries(data_dir) -> pd.DataFrame:
    table = pd.read_parquet(
        data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet", columns=["entrez_id", "refseq_summary"]
    )
    return table.dropna().rename(columns={"refseq_summary": "summary"}).astype({"entrez_id": "int64"})


def summary_texts(catalog, summaries, symbols) -> pd.DataFrame:
    genes = catalog[catalog["symbol"].isin(symbols)].merge(summaries, on="entrez_id", how="left")
    return build_view(genes, "summary")


def entrez(catalog, *symbols) -> list[int]:
    ids = catalog.set_index("symbol")["entrez_id"]
    return [int(ids[s]) for s in symbols]


def test_pairs_whose_real_summaries_name_each_other_are_flagged(catalog, summaries):
    """TRAF1's summary names TRAF2 and IL5's names IL13 (by symbol, either direction counts); a gene paired with
    itself, genes whose texts name neither, and an alias two genes share (AP-1: JUN's and JUNB's) are not flagged."""
    symbols = ["TRAF1", "TRAF2", "IL5", "IL13", "ACTB", "FOSL2", "JUNB", "ITGB4", "GAPDH"]
    texts = summary_texts(catalog, summaries, symbols)
    assert "TRAF2" in texts.set_index("symbol").at["TRAF1", "text"]
    assert "AP-1" in texts.set_index("symbol").at["FOSL2", "text"]
    pairs = pd.DataFrame(
        [
            entrez(catalog, "TRAF2", "TRAF1"),
            entrez(catalog, "IL5", "IL13"),
            entrez(catalog, "ACTB", "GAPDH"),
            entrez(catalog, "FOSL2", "JUNB"),
            entrez(catalog, "ITGB4", "ITGB4"),
            entrez(catalog, "TRAF1", "ACTB"),
        ],
        columns=["entrez_a", "entrez_b"],
    )
    assert mentions_other(pairs, texts, catalog).tolist() == [True, True, False, False, False, False]


def test_least_studied_third_of_real_task_genes(data_dir, catalog, summaries, annotation_cache):
    """The dosage task's genes: each subset is a third of them, by summary words every chosen gene has no more
    words than any gene left out (ties broken by GO annotations), and likewise by GO annotations."""
    long = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv")
    symbols = long.loc[long["task"] == GENEFORMER_SOURCES["dosage_sensitive_tfs"][0], "gene_name"].dropna().unique()
    genes = catalog.loc[catalog["symbol"].isin(symbols), "entrez_id"].to_numpy()
    words = summaries.set_index("entrez_id")["summary"].str.split().str.len()
    go = go_annotation_counts(AnnotationDatabases(cache_dir=str(annotation_cache)))
    study = pd.DataFrame({"summary_words": words.reindex(genes), "go_annotations": go.reindex(genes)}, index=genes)
    study = study.fillna(0)
    assert go.loc[entrez(catalog, "TP53")[0]] > 100  # a famous gene has many GO annotations
    chosen = least_studied(study, genes)
    assert set(chosen) == set(STUDY_MEASURES.values())
    for measure, subset in STUDY_MEASURES.items():
        inside = study.index.isin(list(chosen[subset]))
        assert inside.sum() == len(genes) // 3
        assert study.loc[inside, measure].max() <= study.loc[~inside, measure].min()
    assert chosen["least_studied_by_summary"] != chosen["least_studied_by_go"]


@pytest.fixture(scope="module")
def dosage(data_dir, catalog, summaries):
    """Bag-of-words vectors of the dosage task's genes (RefSeq summary view) and their study depth."""
    long = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv")
    task = TASKS["dosage_sensitive_tfs"]
    source, positive, _ = GENEFORMER_SOURCES[task.name]
    rows = long[long["task"] == source].merge(catalog, left_on="gene_name", right_on="symbol")
    rows = rows.assign(label=np.where(rows["label"] == positive, task.positive, "insensitive"))
    labels = rows.drop_duplicates("entrez_id")[["entrez_id", "label"]].sort_values("entrez_id").reset_index(drop=True)
    texts = summary_texts(catalog, summaries, rows["symbol"]).set_index("entrez_id").loc[labels["entrez_id"]]
    vectors = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(texts.reset_index()[["text"]])
    words = summaries.set_index("entrez_id")["summary"].str.split().str.len()
    study = pd.DataFrame(
        {"summary_words": words.reindex(labels["entrez_id"]).fillna(0).to_numpy(), "go_annotations": 0},
        index=labels["entrez_id"].to_numpy(),
    )
    return task, labels, GeneMatrix(pd.Index(labels["entrez_id"]), vectors), study


def test_a_subset_holding_every_gene_reproduces_the_full_figure(dosage):
    """On the real dosage genes, as a binary, a two-class multiclass and a two-label multilabel task: the subset
    of all genes gets the full row's estimate, fold values and replicates."""
    task, labels, genes, _ = dosage
    X, everything = genes.matrix[:, :256], {"all": np.ones(len(labels), bool)}
    protocol = Protocol(n_bootstrap=50, multiclass_probes=("ridge",))
    binary = evaluate_binary(task, X, labels["label"], protocol, forest=False, subsets=everything)
    multiclass, _ = evaluate_multiclass(task, X, labels["label"], protocol, subsets=everything)
    multiclass = [r for r in multiclass if r["metric"].startswith("balanced_accuracy")]
    Y = np.column_stack([labels["label"] == task.positive, labels["label"] != task.positive])
    multilabel = evaluate_multilabel(replace(task, label_size_range=(1, 10_000)), X, Y, protocol, subsets=everything)
    for full, subset in (binary, multiclass, multilabel):
        assert subset["metric"] == f"{full['metric']}@all" and subset["n_items"] == len(labels)
        assert subset["estimate"] == pytest.approx(full["estimate"])
        assert np.allclose(subset["fold_values"], full["fold_values"])
        assert np.allclose(subset["bootstrap"], full["bootstrap"])


def test_least_studied_rows_reuse_the_folds_and_resamples(dosage, capsys):
    """Scored with study depth, the dosage task gets one more row per classifier and subset; the subset figure is
    the mean over folds of the AUC on the least-studied genes of each test fold (recomputed here from the same
    folds), its replicates are paired with the full figure's, and the full rows are unchanged."""
    task, labels, genes, study = dosage
    protocol = Protocol(n_bootstrap=200)
    plain, _ = score_task(task, labels, genes, protocol, forest=False)
    rows, _ = score_task(task, labels, genes, protocol, forest=False, study=study)
    frame = pd.DataFrame(rows).set_index("metric")
    assert plain[0]["estimate"] == frame.loc["roc_auc", "estimate"]
    subset = frame.loc["roc_auc@least_studied_by_summary"]
    third = least_studied(study, labels["entrez_id"])["least_studied_by_summary"]
    assert subset["n_items"] == len(third) == len(labels) // 3
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    y = (labels["label"] == task.positive).astype(int).to_numpy()
    inside = labels["entrez_id"].isin(third).to_numpy()
    aucs = []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(genes.matrix, y):
        score = LogisticRegression(max_iter=5000).fit(genes.matrix[train], y[train]).predict_proba(genes.matrix[test])
        keep = inside[test]
        if len(np.unique(y[test][keep])) == 2:
            aucs.append(roc_auc_score(y[test][keep], score[keep, 1]))
    assert subset["estimate"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert len(subset["bootstrap"]) == len(frame.loc["roc_auc", "bootstrap"]) == 200
    summary = summarize(
        pd.DataFrame(rows).assign(backbone="bag-of-words", view="summary", universe="all_genes", draw=0)
    )
    bias = study_bias(summary)
    assert set(bias["subset"]) == set(STUDY_MEASURES.values())
    row = bias.set_index("subset").loc["least_studied_by_summary"]
    assert row["difference"] == pytest.approx(subset["estimate"] - plain[0]["estimate"])
    assert row["difference_ci_low"] <= row["difference"] <= row["difference_ci_high"]
    assert len(study_bias_table(summary)) == 1
    print_subset_tables(summary)
    assert "## Study bias (all_genes)" in capsys.readouterr().out


def test_gene_pairs_without_named_pairs_in_the_leaderboard_and_release(data_dir, catalog, summaries):
    """Real Gene2vec pairs among the genes in most pairs (150 train, 300 test), bag-of-words (first 256 words) of
    summaries: the pairs whose texts name each other are removed from the test split only, the AUC without them is the AUC of the kept pairs under the same fit,
    the shares of positive and negative pairs removed are right, and both tables are released."""
    pair_dir = data_dir / "ggi/gene2vec_predictionData"
    pairs = pd.concat(
        [read_pair_split(pair_dir / f"{s}_text.txt", pair_dir / f"{s}_label.txt", s) for s in ("train", "test")],
        ignore_index=True,
    )
    ids = catalog.drop_duplicates("symbol").set_index("symbol")["entrez_id"]
    pairs = pairs.assign(entrez_a=pairs["symbol_a"].map(ids), entrez_b=pairs["symbol_b"].map(ids)).dropna()
    pairs = pairs.astype({"entrez_a": "int64", "entrez_b": "int64"})
    chosen = set()  # the splits' genes are disjoint: the genes in most pairs of each
    for split, n in (("train", 150), ("test", 300)):
        inside = pairs[pairs["split"] == split]
        chosen |= set(pd.concat([inside["entrez_a"], inside["entrez_b"]]).value_counts().index[:n])
    pairs = pairs[pairs["entrez_a"].isin(chosen) & pairs["entrez_b"].isin(chosen)].reset_index(drop=True)
    texts = summary_texts(catalog, summaries, catalog.loc[catalog["entrez_id"].isin(chosen), "symbol"])
    pairs["mentions_summary"] = mentions_other(pairs, texts, catalog)
    test = pairs[pairs["split"] == "test"]
    assert test["mentions_summary"].any() and not test["mentions_summary"].all()
    genes = texts.sort_values("entrez_id")
    vectors = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(genes[["text"]])[:, :256]
    matrix = GeneMatrix(pd.Index(genes["entrez_id"]), vectors)
    rows, figure = score_task(
        GGI_TASK, pairs, matrix, Protocol(n_bootstrap=200, rf_max_samples=300), mentions="mentions_summary"
    )
    frame = pd.DataFrame(rows).set_index(["classifier", "metric"])
    kept = ~test["mentions_summary"].to_numpy()
    forest = frame.loc[("random_forest", f"roc_auc@{WITHOUT_MENTIONS}")]
    logistic = frame.loc[("logistic_regression", f"roc_auc@{WITHOUT_MENTIONS}")]
    y, score = figure["roc"]
    assert logistic["estimate"] == pytest.approx(roc_auc_score(y[kept], score["logistic_regression"][kept]))
    assert forest["n_items"] == kept.sum() and logistic["n_positive"] == y[kept].sum()
    summary = summarize(
        pd.DataFrame(rows).assign(backbone="bag-of-words", view="summary", universe="all_genes", draw=0)
    )
    overlap = content_overlap(summary).set_index("classifier")
    named = test["mentions_summary"]
    assert overlap.loc["logistic_regression", "share_positive_named"] == pytest.approx(named[test["label"] == 1].mean())
    assert overlap.loc["logistic_regression", "share_negative_named"] == pytest.approx(named[test["label"] == 0].mean())
    assert len(content_overlap_table(summary)) == 2
    files = leaderboard_files(summary.assign(protocol="published"))
    released = pd.read_csv(io.BytesIO(files["leaderboard_content_overlap.csv"]))
    assert len(released) == 2 and set(released["subset"]) == {WITHOUT_MENTIONS}
    assert "leaderboard_study_bias.csv" in files


@pytest.mark.slow
def test_graph_scores_least_studied_thirds_and_shows_them_in_the_leaderboard(tmp_path, task_symbols, annotation_cache):
    """The small real graph (Geneformer task genes, summary view, bag-of-words): gene_universes carries study depth
    from the real summaries and org.Hs.eg.db, geneformer_results the least-studied rows, and the leaderboard's
    study_bias metadata shows them."""
    resources = temporary_resources(tmp_path, tmp_path / "release", tmp_path / "remote", annotation_cache)
    everything = [*all_assets, *all_asset_checks]
    with DagsterInstance.ephemeral() as instance:
        register_backbones(instance, ["bag-of-words"])
        sources = materialize(
            everything,
            selection=["gene_catalog", "gene_summaries", "gene_texts", "gene_universes", "geneformer_labels"],
            instance=instance,
            resources=resources,
            run_config={"ops": {"gene_texts": {"config": {"views": ["summary"], "symbols": task_symbols}}}},
        )
        universes = sources.output_for_node("gene_universes").set_index("entrez_id")
        tp53 = int(sources.output_for_node("gene_catalog").set_index("symbol").at["TP53", "entrez_id"])
        assert universes.at[tp53, "go_annotations"] > 100 and universes.at[tp53, "summary_words"] > 50
        assert (universes.loc[~universes["with_summary"], "summary_words"] == 0).all()
        scored = materialize(
            everything,
            selection=["gene_embeddings", "geneformer_results"],
            instance=instance,
            resources=resources,
            partition_key=backbone_view_key("bag-of-words", "summary"),
            run_config={"ops": {"geneformer_results": {"config": {"n_bootstrap": 100}}}},
        )
        results = scored.output_for_node("geneformer_results")
        rows = results[(results["metric"] == "roc_auc@least_studied_by_go") & (results["universe"] == "all_genes")]
        full = results[(results["metric"] == "roc_auc") & (results["universe"] == "all_genes")]
        sizes = full.set_index(["task", "classifier"])["n_genes"] // 3
        assert set(rows["task"]) <= set(full["task"]) and len(rows) >= 4
        assert (
            rows.set_index(["task", "classifier"])["n_items"]
            == sizes.reindex(rows.set_index(["task", "classifier"]).index)
        ).all()
        board = materialize(everything, selection=["leaderboard"], instance=instance, resources=resources)
        shown = board.get_asset_materialization_events()[0].materialization.metadata["study_bias"].value
        assert "least_studied_by_go: gap" in shown and "dosage_sensitive_tfs" in shown
