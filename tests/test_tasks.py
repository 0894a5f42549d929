"""Task label mapping on the real label files, the evaluation engine, and its statistics."""

import gzip

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    matthews_corrcoef,
    roc_auc_score,
)
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from gene_assets.catalog.assets import read_ncbi_gene_info
from gene_assets.catalog.resolver import GeneResolver
from gene_assets.embeddings.encoders import BagOfWordsEncoder
from gene_assets.embeddings.registry import get_backbone
from gene_assets.leaderboard.report import summarize, tuning_gains
from gene_assets.tasks.evaluation import (
    TUNED_CLASSIFIER,
    TUNED_CS,
    Protocol,
    column_aucs,
    evaluate_binary,
    evaluate_multiclass,
    evaluate_multilabel,
    evaluate_pairs,
)
from gene_assets.tasks.gene_properties import (
    GENE_PROPERTY_TASKS,
    chromosome_labels,
    hgnc_group_labels,
    read_gmt,
    tf_labels,
)
from gene_assets.tasks.geneformer import (
    GENEFORMER_TASKS,
    map_chen2020_labels,
    map_geneformer_labels,
)
from gene_assets.tasks.interaction import GGI_TASK, read_pair_split
from gene_assets.tasks.linear_probes import (
    NestedLogisticRegression,
    PairLogisticRegression,
    label_logistic_fold_probabilities,
    logistic_fold_probabilities,
    ridge_fold_predictions,
)
from gene_assets.tasks.spec import GeneTask, TaskLabelError
from gene_assets.tasks.statistics import (
    classification_metrics,
    holm,
    paired_p_value,
    stratified_counts,
    weighted_auc,
    weighted_confusions,
)

BINARY = GeneTask("toy_binary", "toy", "binary", ("literature",), "toy", positive="yes")
MULTICLASS = GeneTask("toy_multiclass", "toy", "multiclass", ("literature",), "toy")
MULTILABEL = GeneTask("toy_multilabel", "toy", "multilabel", ("GO",), "toy")
FAST = Protocol(n_bootstrap=200)


@pytest.fixture(scope="module")
def resolver(data_dir):
    return GeneResolver(read_ncbi_gene_info(data_dir / "gene_annotation/ncbi_Homo_sapiens.gene_info.2022-11.gz"))


def test_geneformer_tasks_map_with_counts_and_no_conflicting_genes(data_dir, resolver):
    table = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv", dtype=str)
    labels, counts = map_geneformer_labels(table, resolver)
    assert set(labels["task"]) == {t.name for t in GENEFORMER_TASKS} - {"tf_range_chen2020"}
    dosage = labels[labels["task"] == "dosage_sensitive_tfs"]["label"].value_counts()
    assert dosage["Dosage-sensitive TFs"] >= 115 and dosage["Dosage-insensitive TFs"] >= 350
    assert (
        1
        <= counts["bivalent_vs_lys4_only"]["n_conflicting"] + counts["bivalent_vs_no_methylation"]["n_conflicting"]
        <= 3
    )
    assert not labels.duplicated(["task", "entrez_id"]).any()
    for task, c in counts.items():
        assert c["n_mapped"] + c["n_unmapped"] == c["n_source"], task


def test_chen2020_list_is_kept_separately_and_disagrees_with_geneformer(data_dir, resolver):
    chen, counts = map_chen2020_labels(
        pd.read_csv(data_dir / "gene_tasks/geneformer/chen2020_natcommun_41467_2020_16106_MOESM4_ESM.csv", dtype=str),
        resolver,
    )
    assert counts["tf_range_chen2020"]["n_source"] == 60 and len(chen) >= 58
    geneformer, _ = map_geneformer_labels(
        pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv", dtype=str), resolver
    )
    ranges = geneformer[geneformer["task"] == "tf_range_geneformer"].set_index("entrez_id")["label"]
    long_in_chen = chen[chen["label"] == "long-range TF"]["entrez_id"]
    assert (ranges.reindex(long_in_chen).dropna() == "short_range").sum() >= 10


def test_gene_property_labels_from_real_files(data_dir, resolver):
    tfs, _ = tf_labels(
        pd.read_csv(data_dir / "gene_tasks/other/lambert2018_humantfs_DatabaseExtract_v_1.01.txt", sep="\t", dtype=str),
        resolver,
    )
    assert 1600 <= (tfs["label"] == "TF").sum() <= 1639 and 1100 <= (tfs["label"] == "non_TF").sum() <= 1126
    groups, _ = hgnc_group_labels(
        pd.read_csv(data_dir / "gene_annotation/hgnc_gene_groups_long.2019-01.csv.gz", dtype=str), resolver
    )
    multiclass = groups[groups["task"] == "hgnc_group"]
    assert not multiclass["entrez_id"].duplicated().any() and multiclass["label"].value_counts().min() >= 50
    assert (
        groups[groups["task"] == "hgnc_groups"]["entrez_id"].duplicated().any()
    )  # multilabel: genes in several groups
    kegg = read_gmt(data_dir / "gene_tasks/other/ylab_gmt/KEGG_CPDB.gmt.gz")
    assert kegg["label"].nunique() == 333 and kegg["entrez_id"].notna().all()
    chromosomes, _ = chromosome_labels(resolver.catalog)
    assert set(chromosomes["label"]) <= {str(i) for i in range(1, 23)} | {"X", "Y"} and len(chromosomes) > 19000
    assert {t.kind for t in GENE_PROPERTY_TASKS} == {"binary", "multiclass", "multilabel"}


def test_corrupt_gmt_and_misaligned_pairs_are_named(tmp_path):
    broken = tmp_path / "broken.gmt.gz"
    broken.write_bytes(gzip.compress(b"GO:1\tname\t1\t2\n")[:-6])
    with pytest.raises(TaskLabelError, match="broken.gmt.gz"):
        read_gmt(broken)
    (tmp_path / "pairs.txt").write_text("TP53 MDM2\nBRCA1 BARD1\n")
    (tmp_path / "labels.txt").write_text("1\n")
    with pytest.raises(TaskLabelError, match="2 pairs but .*labels.txt has 1"):
        read_pair_split(tmp_path / "pairs.txt", tmp_path / "labels.txt", "train")


def test_weighted_auc_and_confusion_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    score = np.round(rng.normal(size=300) + y, 1)  # rounding makes ties
    weights = rng.integers(0, 3, size=(4, 300)).astype(float)
    for w in weights:
        assert weighted_auc(y, score, w)[0] == pytest.approx(roc_auc_score(y, score, sample_weight=w))
    true, pred = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    pred[:200] = true[:200]
    metrics = classification_metrics(weighted_confusions(true, pred, 4, np.ones(500)))
    assert metrics["balanced_accuracy"][0] == pytest.approx(balanced_accuracy_score(true, pred))
    assert metrics["macro_f1"][0] == pytest.approx(f1_score(true, pred, average="macro"))
    assert metrics["mcc"][0] == pytest.approx(matthews_corrcoef(true, pred))


def test_resamples_keep_class_sizes_and_paired_tests_behave():
    y = np.array([0] * 30 + [1] * 10)
    counts = stratified_counts(y, 50, np.random.default_rng(0))
    assert (counts[:, :30].sum(1) == 30).all() and (counts[:, 30:].sum(1) == 10).all()
    rng = np.random.default_rng(1)
    a = rng.normal(0.8, 0.01, 1000)
    assert paired_p_value(a, a - 0.05) == pytest.approx(0.001)
    assert paired_p_value(a, a + rng.normal(0, 0.01, 1000)) > 0.2
    assert holm(np.array([0.01, 0.04, 0.03])).tolist() == pytest.approx([0.03, 0.06, 0.06])


def planted(n=300, dims=16, signal=3.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, dims))
    X[:, 0] += signal * y
    return X, pd.Series(np.where(y == 1, "yes", "no"))


def test_binary_engine_finds_signal_and_random_features_score_chance():
    X, labels = planted()
    rows = evaluate_binary(BINARY, X, labels, FAST)
    assert {r["classifier"] for r in rows} == {"logistic_regression", "random_forest"}
    for row in rows:
        assert row["estimate"] > 0.9 and len(row["fold_values"]) == 5 and len(row["bootstrap"]) == 200
        assert np.percentile(row["bootstrap"], 2.5) <= row["estimate"] <= np.percentile(row["bootstrap"], 97.5)
    noise = evaluate_binary(BINARY, np.random.default_rng(5).normal(size=X.shape), labels, FAST)
    assert all(0.35 < r["estimate"] < 0.65 for r in noise)
    assert evaluate_binary(BINARY, X, labels, FAST)[0] == rows[0]  # fixed seeds: identical


def test_bootstrap_replicates_are_paired_across_backbones():
    X, labels = planted()
    weak, _ = planted(signal=0.5)
    strong_rows = evaluate_binary(BINARY, X, labels, FAST, forest=False)
    weak_rows = evaluate_binary(BINARY, weak, labels, FAST, forest=False)
    assert paired_p_value(strong_rows[0]["bootstrap"], weak_rows[0]["bootstrap"]) < 0.01
    same = evaluate_binary(BINARY, X * 2.0, labels, FAST, forest=False)  # a rescaled copy of the same features
    assert paired_p_value(strong_rows[0]["bootstrap"], same[0]["bootstrap"]) > 0.05


def test_binary_task_with_too_few_genes_per_class_is_an_error():
    X, labels = planted(n=40)
    labels.iloc[:] = "no"
    labels.iloc[:3] = "yes"
    with pytest.raises(TaskLabelError, match="toy_binary.*at least 5 genes"):
        evaluate_binary(BINARY, X, labels, FAST)


def test_multiclass_engine_reports_three_metrics_and_confusion():
    rng = np.random.default_rng(2)
    classes = rng.integers(0, 3, 300)
    X = rng.normal(size=(300, 8)) + np.eye(3, 8)[classes] * 4
    rows, confusion = evaluate_multiclass(MULTICLASS, X, pd.Series(np.array(["a", "b", "c"])[classes]), FAST)
    assert {r["metric"] for r in rows} == {"balanced_accuracy", "macro_f1", "mcc"}
    assert all(r["estimate"] > 0.9 for r in rows)
    assert confusion.to_numpy().sum() == 300 and list(confusion.index) == ["a", "b", "c"]


def test_multilabel_engine_scores_every_label_and_bootstraps_over_labels():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 10))
    Y = np.column_stack([X[:, i] + rng.normal(scale=0.5, size=400) > 1 for i in range(6)] + [rng.random(400) < 0.2])
    rows = evaluate_multilabel(MULTILABEL, X, Y, FAST)
    assert rows[0]["n_classes"] == 7 and 0.8 < rows[0]["estimate"] < 0.97
    assert len(rows[0]["bootstrap"]) == 200


def test_pair_engine_learns_pairs_from_summed_embeddings():
    rng = np.random.default_rng(4)
    genes = rng.normal(size=(200, 8))
    module = genes[:, 0] > 0
    a, b = rng.integers(0, 200, 3000), rng.integers(0, 200, 3000)
    y = (module[a] & module[b]).astype(int)
    rows, scores = evaluate_pairs(GGI_TASK, genes, (a[:2000], b[:2000]), y[:2000], (a[2000:], b[2000:]), y[2000:], FAST)
    assert all(r["estimate"] > 0.85 for r in rows) and set(scores) == {"logistic_regression", "random_forest"}


def test_pair_logistic_regression_matches_scikit_learn_on_real_gene_pairs(data_dir):
    """The factorized fit reaches scikit-learn's optimum on real Gene2vec pairs and bag-of-words summary vectors."""
    pairs = read_pair_split(
        data_dir / "ggi/gene2vec_predictionData/train_text.txt",
        data_dir / "ggi/gene2vec_predictionData/train_label.txt",
        "train",
    )
    pairs = pairs.sample(6000, random_state=0)
    summaries = (
        pd.read_parquet(
            data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet", columns=["symbol", "refseq_summary"]
        )
        .dropna()
        .drop_duplicates("symbol")
        .set_index("symbol")
    )
    pairs = pairs[pairs["symbol_a"].isin(summaries.index) & pairs["symbol_b"].isin(summaries.index)]
    symbols = pd.Index(pd.unique(pairs[["symbol_a", "symbol_b"]].to_numpy().ravel()))
    texts = pd.DataFrame({"text": summaries.loc[symbols, "refseq_summary"].to_numpy()})
    Z = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(texts)[:, :256].astype(np.float64)
    a, b, y = symbols.get_indexer(pairs["symbol_a"]), symbols.get_indexer(pairs["symbol_b"]), pairs["label"].to_numpy()
    train, test = slice(0, 4000), slice(4000, None)
    reference = LogisticRegression(tol=1e-8, max_iter=20000).fit(Z[a[train]] + Z[b[train]], y[train])
    fast = PairLogisticRegression().fit(Z, a[train], b[train], y[train])
    assert (
        np.abs(fast.coef_ - reference.coef_[0]).max() < 1e-4 and abs(fast.intercept_ - reference.intercept_[0]) < 1e-4
    )
    expected = reference.predict_proba(Z[a[test]] + Z[b[test]])[:, 1]
    assert np.abs(fast.predict_proba(Z, a[test], b[test]) - expected).max() < 1e-5
    assert roc_auc_score(y[test], expected) > 0.6


def test_fold_ridge_matches_scikit_learn_pipelines_on_real_summary_vectors(data_dir):
    """Ridge from shared fold statistics equals StandardScaler + Ridge fitted per training fold (float64) on
    bag-of-words vectors of real RefSeq summaries, whose sparse counts include features constant within a fold;
    the engine's multiclass rows equal those of scikit-learn's RidgeClassifier pipeline."""
    genes = (
        pd.read_parquet(
            data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet", columns=["symbol", "refseq_summary"]
        )
        .dropna()
        .drop_duplicates("symbol")
        .head(300)
    )
    X = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(genes.rename(columns={"refseq_summary": "text"}))
    words = genes["refseq_summary"].str.lower()
    Y = np.column_stack([words.str.contains(w).to_numpy() for w in ("kinase", "membrane", "zinc finger")]).astype(float)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    assert any((X[train].min(0) == X[train].max(0)).any() for train, _ in folds)
    fast = ridge_fold_predictions(X, Y, folds)
    for (train, test), predicted in zip(folds, fast):
        reference = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X[train].astype(float), Y[train])
        assert np.abs(predicted - reference.predict(X[test].astype(float))).max() < 1e-8

    labels = pd.Series(np.select([Y[:, 0] > 0, Y[:, 1] > 0], ["kinase", "membrane"], "other"))
    rows, _ = evaluate_multiclass(
        MULTICLASS, X.astype(float), labels, Protocol(n_bootstrap=10, multiclass_probes=("ridge",))
    )
    names, y = np.unique(labels, return_inverse=True)
    stratified = StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)
    expected = []
    for train, test in stratified:
        model = make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0)).fit(X[train].astype(float), y[train])
        expected.append(balanced_accuracy_score(y[test], model.predict(X[test].astype(float))))
    assert rows[0]["classifier"] == "ridge" and rows[0]["metric"] == "balanced_accuracy"
    assert np.allclose(rows[0]["fold_values"], expected)


@pytest.fixture(scope="module")
def gene_type_vectors(data_dir):
    """Bag-of-words vectors (first 256 words) of real RefSeq summaries (symbol and full name where a gene has none)
    for up to 80 genes of each of the 15 gene types of GenePT's gene functionality task, and their type codes."""
    info = pd.read_csv(
        data_dir / "gene_tasks/genept_geneformer_gene_info_table.csv.gz", usecols=["ensembl_id", "gene_type"]
    )
    texts = pd.read_parquet(
        data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet",
        columns=["ensembl_id", "symbol", "full_name", "refseq_summary"],
    ).dropna(subset=["ensembl_id"])
    genes = info.merge(texts.drop_duplicates("ensembl_id"), on="ensembl_id").drop_duplicates("ensembl_id")
    sizes = genes["gene_type"].value_counts()
    genes = genes[genes["gene_type"].isin(sizes[sizes > 75].index[:15])].groupby("gene_type").head(80)
    text = genes["refseq_summary"].fillna(genes["symbol"] + " " + genes["full_name"].fillna(""))
    X = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(pd.DataFrame({"text": text.to_numpy()}))[:, :256]
    names, y = np.unique(genes["gene_type"], return_inverse=True)
    return X, y, names


def test_multinomial_probe_matches_scikit_learn_on_real_gene_types(gene_type_vectors):
    """The engine's multiclass probe (warm-started across folds) predicts what scikit-learn's LogisticRegression
    fitted afresh on each fold predicts, on the real gene-type task; its rows are that probe's."""
    X, y, names = gene_type_vectors
    assert len(names) == 15 and len(y) > 900
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    with threadpool_limits(1):  # as on a worker process; a second BLAS thread on a busy shared core is 10x slower
        warm = logistic_fold_probabilities(X, y, folds)
        cold = [
            LogisticRegression(max_iter=5000).fit(X[train], y[train]).predict_proba(X[test]) for train, test in folds
        ]
        rows, confusion = evaluate_multiclass(MULTICLASS, X, pd.Series(names[y]), Protocol(n_bootstrap=10))
    expected = []
    for (_, test), fast, plain in zip(folds, warm, cold):
        assert (fast.argmax(1) == plain.argmax(1)).mean() >= 0.98
        assert np.abs(fast - plain).max() < 0.1  # both stop at scikit-learn's tolerance (1e-4), from other starts
        expected.append(balanced_accuracy_score(y[test], plain.argmax(1)))
    assert {r["classifier"] for r in rows} == {"logistic_regression"} and confusion.to_numpy().sum() == len(y)
    assert (
        np.abs(np.array(rows[0]["fold_values"]) - expected).max() < 0.02 and rows[0]["estimate"] > 0.3
    )  # chance: 1/15


def test_ridge_is_scored_only_when_named_and_shares_folds_and_resamples(gene_type_vectors):
    X, y, names = gene_type_vectors
    labels = pd.Series(names[y])
    with threadpool_limits(1):
        both, _ = evaluate_multiclass(
            MULTICLASS, X, labels, Protocol(n_bootstrap=20, multiclass_probes=("logistic_regression", "ridge"))
        )
        alone, _ = evaluate_multiclass(MULTICLASS, X, labels, Protocol(n_bootstrap=20, multiclass_probes=("ridge",)))
    assert [r["classifier"] for r in both] == ["logistic_regression"] * 3 + ["ridge"] * 3
    assert both[3:] == alone
    with pytest.raises(ValueError, match="Unknown multiclass probe.*ridge_classifier"):
        Protocol.named("published", multiclass_probes=("ridge_classifier",))


@pytest.fixture(scope="module")
def pathway_vectors(data_dir):
    """Bag-of-words vectors (first 256 words) of the real RefSeq summaries of the first 400 KEGG pathway genes (by
    Entrez id) that have one, and their membership in each pathway with 20 or more of them."""
    gene_sets = read_gmt(data_dir / "gene_tasks/other/ylab_gmt/KEGG_CPDB.gmt.gz").dropna()
    summaries = pd.read_parquet(
        data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet", columns=["entrez_id", "refseq_summary"]
    ).dropna()
    summaries = summaries.drop_duplicates("entrez_id").set_index("entrez_id")["refseq_summary"]
    genes = np.intersect1d(gene_sets["entrez_id"].unique(), summaries.index)[:400]
    members = gene_sets[gene_sets["entrez_id"].isin(genes)]
    sizes = members["label"].value_counts()
    Y = pd.crosstab(members["entrez_id"], members["label"]).reindex(index=genes, columns=sizes[sizes >= 20].index)
    text = pd.DataFrame({"text": summaries.loc[genes].to_numpy()})
    vectors = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(text)[:, :256].astype(np.float64)
    return vectors, Y.fillna(0).to_numpy() > 0


def test_multilabel_probe_is_scikit_learn_logistic_regression_per_label_on_real_pathways(pathway_vectors):
    """The engine's multilabel probe (every label's own L-BFGS in lockstep, warm-started across folds) reaches the
    optimum of scikit-learn's LogisticRegression fitted per label and fold, on real KEGG pathways: the same test-fold
    probabilities and AUCs, and its row is their mean per-label AUC. (At its default tol, 1e-4, scikit-learn stops
    up to 1e-2 short of that optimum on raw word counts, so the reference is converged to tol 1e-10.)"""
    X, Y = pathway_vectors
    assert 10 <= Y.shape[1] <= 40 and len(Y) == 400
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    with threadpool_limits(1):
        joint, steps = label_logistic_fold_probabilities(X, Y, folds)
        reference = [
            np.column_stack(
                [
                    LogisticRegression(max_iter=5000, tol=1e-10).fit(X[train], Y[train, j]).predict_proba(X[test])[:, 1]
                    for j in range(Y.shape[1])
                ]
            )
            for train, test in folds
        ]
        rows = evaluate_multilabel(MULTILABEL, X, Y, Protocol(n_bootstrap=20))
    per_fold = []
    for (_, test), fast, plain in zip(folds, joint, reference):
        assert np.abs(fast - plain).max() < 1e-4
        aucs = [
            roc_auc_score(Y[test, j], plain[:, j]) if 0 < Y[test, j].sum() < len(test) else np.nan
            for j in range(Y.shape[1])
        ]
        assert np.allclose(column_aucs(Y[test], fast), aucs, atol=1e-6, equal_nan=True)
        per_fold.append(aucs)
    assert [r["classifier"] for r in rows] == ["logistic_regression"] and len(steps) == 5
    assert rows[0]["estimate"] == pytest.approx(np.nanmean(np.nanmean(per_fold, axis=0)), abs=1e-6)
    assert rows[0]["estimate"] > 0.6


def test_multilabel_ridge_is_scored_only_when_named_and_one_class_folds_are_left_out(pathway_vectors):
    """Ridge rows come only when named, on the same folds; a label with one gene has one class in some training
    fold or test fold of every fold, so logistic regression scores none of it (scikit-learn cannot fit it)."""
    X, Y = pathway_vectors
    Y = np.column_stack([Y, np.arange(len(Y)) == 7])
    with threadpool_limits(1):
        both = evaluate_multilabel(
            MULTILABEL, X, Y, Protocol(n_bootstrap=20, multilabel_probes=("logistic_regression", "ridge"))
        )
        alone = evaluate_multilabel(MULTILABEL, X, Y, Protocol(n_bootstrap=20, multilabel_probes=("ridge",)))
    assert [r["classifier"] for r in both] == ["logistic_regression", "ridge"] and both[1:] == alone
    assert both[0]["n_classes"] == Y.shape[1] - 1 and alone[0]["n_classes"] == Y.shape[1]
    with pytest.raises(ValueError, match="Unknown multilabel probe.*ridge_regression"):
        Protocol.named("full", multilabel_probes=("ridge_regression",))


def test_named_protocols_choose_where_forests_are_fitted():
    published, full = Protocol.named("published"), Protocol.named("full")
    assert published.forests("all_genes", 0) and published.forests("all_genes", 4)
    assert not published.forests("all_genes", 5) and not published.forests("with_summary", 0)
    assert all(full.forests(u, d) for u in ("all_genes", "with_summary") for d in range(20))
    assert published.multiclass_probes == full.multiclass_probes == ("logistic_regression",)
    assert published.multilabel_probes == full.multilabel_probes == ("logistic_regression",)
    assert full.tuned_logistic and not published.tuned_logistic
    with pytest.raises(ValueError, match="Unknown evaluation protocol 'fast'.*published, full"):
        Protocol.named("fast")


def test_engine_forests_are_the_plain_forests_on_real_summary_vectors(data_dir):
    """Column-major training features and single-threaded prediction change nothing: every fold's AUC equals that of
    a default scikit-learn forest fitted and applied the plain way."""
    genes = (
        pd.read_parquet(
            data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet", columns=["symbol", "refseq_summary"]
        )
        .dropna()
        .drop_duplicates("symbol")
        .head(600)
    )
    X = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(genes.rename(columns={"refseq_summary": "text"}))
    labels = pd.Series(np.where(genes["refseq_summary"].str.contains("membrane").to_numpy(), "yes", "no"))
    rows = evaluate_binary(BINARY, X, labels, FAST)
    y = (labels == "yes").to_numpy().astype(int)
    expected = [
        roc_auc_score(
            y[test], RandomForestClassifier(random_state=0).fit(X[train], y[train]).predict_proba(X[test])[:, 1]
        )
        for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)
    ]
    forest = next(r for r in rows if r["classifier"] == "random_forest")
    assert forest["fold_values"] == expected and forest["estimate"] > 0.6


@pytest.mark.slow
def test_tuned_logistic_regression_is_nested_cross_validation_on_real_summary_vectors(data_dir):
    """`full` adds logistic regression whose C each outer training fold chooses by inner stratified 5-fold ROC-AUC:
    every fold's AUC equals that of the same nested cross-validation written out with plain LogisticRegression;
    `published`, and draws without forests, fit only the default."""
    genes = (
        pd.read_parquet(
            data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet", columns=["symbol", "refseq_summary"]
        )
        .dropna()
        .drop_duplicates("symbol")
        .head(300)
    )
    X = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(genes.rename(columns={"refseq_summary": "text"}))
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-9)
    labels = pd.Series(np.where(genes["refseq_summary"].str.contains("membrane").to_numpy(), "yes", "no"))
    full = Protocol.named("full", n_bootstrap=200)
    rows = {r["classifier"]: r for r in evaluate_binary(BINARY, X, labels, full)}
    assert set(rows) == {"logistic_regression", "random_forest", TUNED_CLASSIFIER}
    assert TUNED_CLASSIFIER not in {r["classifier"] for r in evaluate_binary(BINARY, X, labels, full, forest=False)}
    assert TUNED_CLASSIFIER not in {r["classifier"] for r in evaluate_binary(BINARY, X, labels, FAST)}

    y = (labels == "yes").to_numpy().astype(int)
    expected = []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        tuned = NestedLogisticRegression(TUNED_CS, 5, 0).fit(X[train], y[train])
        inner = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X[train], y[train]))
        cold = [  # every candidate fitted from scratch, the plain nested cross-validation
            np.mean(
                [
                    roc_auc_score(
                        y[train][i_test],
                        LogisticRegression(C=c, max_iter=5000)
                        .fit(X[train][i_train], y[train][i_train])
                        .decision_function(X[train][i_test]),
                    )
                    for i_train, i_test in inner
                ]
            )
            for c in TUNED_CS
        ]
        np.testing.assert_allclose(tuned.inner_scores_, cold, atol=5e-3)  # warm starts: the solver's tolerance
        top, second = np.sort(cold)[::-1][:2]
        assert tuned.C_ == TUNED_CS[int(np.argmax(cold))] or top - second < 1e-2
        refit = LogisticRegression(C=tuned.C_, max_iter=5000).fit(X[train], y[train])
        expected.append(roc_auc_score(y[test], refit.predict_proba(X[test])[:, 1]))
    assert rows[TUNED_CLASSIFIER]["fold_values"] == expected
    assert rows[TUNED_CLASSIFIER]["estimate"] > 0.6

    results = pd.DataFrame(list(rows.values())).assign(
        backbone="bag-of-words", view="summary", universe="all_genes", draw=0, genes_digest="d", n_excluded=0, dims=1
    )
    gains = tuning_gains(summarize(results))
    assert len(gains) == 1
    gain = gains.iloc[0]
    assert gain["gain"] == pytest.approx(rows[TUNED_CLASSIFIER]["estimate"] - rows["logistic_regression"]["estimate"])
    assert gain["ci_low"] <= gain["gain"] <= gain["ci_high"] and 0 <= gain["p_holm"] <= 1


def test_pca_to_a_matched_dimension_is_fitted_inside_each_training_fold():
    X, labels = planted(dims=16)
    rows = evaluate_binary(BINARY, X, labels, Protocol(n_bootstrap=50, pca_dims=4), forest=False)
    assert rows[0]["estimate"] > 0.85
    from gene_assets.tasks.evaluation import with_pca

    assert type(with_pca(object(), Protocol(pca_dims=128), 384)).__name__ == "Pipeline"
    assert with_pca(marker := object(), Protocol(pca_dims=128), 64) is marker  # already small enough


def test_forest_scores_are_identical_from_run_to_run():
    """Count-like features with repeated rows (as bag-of-words vectors of fallback texts have) give impure leaves;
    a forest's threaded predict_proba would sum their fractions in a different order on every call."""
    rng = np.random.default_rng(5)
    genes = rng.integers(0, 3, size=(300, 6)).astype(np.float32)
    a, b = rng.integers(0, 300, 40000), rng.integers(0, 300, 40000)
    y = (genes[a, 0] + genes[b, 0] + rng.normal(size=40000) > 2).astype(int)
    runs = [
        evaluate_pairs(GGI_TASK, genes, (a[:4000], b[:4000]), y[:4000], (a[4000:], b[4000:]), y[4000:], FAST)
        for _ in range(3)
    ]
    forest_scores = [scores["random_forest"] for _, scores in runs]
    assert all(np.array_equal(forest_scores[0], other) for other in forest_scores[1:])
    assert all(rows == runs[0][0] for rows, _ in runs[1:])


def test_units_on_worker_processes_equal_units_in_this_process(data_dir, resolver):
    """The random control's band on the real Geneformer tasks (three draws, forests included): scored on two worker
    processes with one thread each, every row equals the row scored here on every core."""
    from gene_assets.embeddings.encoders import random_gene_vectors
    from gene_assets.embeddings.table import GeneEmbeddings
    from gene_assets.parallel import run_units
    from gene_assets.results import FeatureDraws
    from gene_assets.tasks.assets import in_band, restrict, score_task, task_genes

    table = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv", dtype=str)
    labels, _ = map_geneformer_labels(table, resolver)
    ids = np.sort(labels["entrez_id"].unique())
    embeddings = GeneEmbeddings(
        pd.DataFrame({"entrez_id": ids, "symbol": ids.astype(str)}),
        random_gene_vectors(ids, 64, seed=0),
        attrs={"kind": "random"},
    )
    features, protocol = FeatureDraws(embeddings, draws=3), Protocol(n_bootstrap=100)
    units = []
    for draw in features.draws:
        for task in GENEFORMER_TASKS[:3]:
            inside, _ = restrict(task, labels[labels["task"] == task.name], set(ids))
            if draw == 0 or in_band(task, inside, protocol):
                units.append((task, inside, features.genes(draw, task_genes(task, inside)), protocol, draw > 0))
    here = [rows for (rows, _), _ in run_units(score_task, units, workers=1, threads=2)]
    pooled = [rows for (rows, _), _ in run_units(score_task, units, workers=2, threads=1)]
    assert len(here) == len(units) and sum(map(len, here)) >= 12
    assert pooled == here
    assert {row["classifier"] for rows in here for row in rows} == {"logistic_regression", "random_forest"}
