"""Leaderboard statistics: one universe per comparison, significance against the best, the random band,
the leakage audit, the GO-minus-summary ablation and rank intervals."""

import numpy as np
import pandas as pd
import pytest

from gene_assets.embeddings.encoders import BagOfWordsEncoder, TfidfEncoder, random_gene_vectors
from gene_assets.embeddings.registry import get_backbone
from gene_assets.leaderboard.assets import protocol_frames
from gene_assets.leaderboard.report import (
    OVERALL,
    RANK_COLUMNS,
    leakage_audit,
    pairwise_comparisons,
    random_band_at_chance,
    rank_intervals,
    rank_table,
    summarize,
    tuning_gains,
    view_ablation,
    wide_table,
)
from gene_assets.release.assets import leaderboard_files
from gene_assets.tasks.assets import TASKS
from gene_assets.tasks.evaluation import TUNED_CLASSIFIER, Protocol, evaluate_binary, genes_digest
from gene_assets.tasks.geneformer import GENEFORMER_SOURCES
from gene_assets.tasks.statistics import holm
from gene_assets.texts.views import VIEWS


def result(backbone, view, estimate, spread=0.01, draw=0, digest="same", task="dosage_sensitive_tfs", seed=0):
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(99).normal(0, spread, 500)  # the same resamples for every backbone
    return {
        "backbone": backbone,
        "view": view,
        "universe": "all_genes",
        "task": task,
        "family": "regulation",
        "kind": "binary",
        "classifier": "logistic_regression",
        "metric": "roc_auc",
        "estimate": estimate,
        "fold_values": list(estimate + rng.normal(0, 0.02, 5)),
        "bootstrap": list(estimate + shared + rng.normal(0, 0.002, 500)),
        "n_genes": 480,
        "n_classes": 2,
        "n_excluded": 0,
        "genes_digest": digest,
        "draw": draw,
        "dims": 8,
    }


def board():
    rows = [
        result("strong", "summary", 0.90),
        result("close", "summary", 0.899, seed=1),
        result("weak", "summary", 0.70, seed=2),
        result("elsewhere", "summary", 0.95, digest="other"),
        result("strong", "go", 0.93, seed=3),
    ]
    rows += [result("random-gaussian", "summary", 0.5 + d / 200, draw=d, seed=10 + d) for d in range(-10, 10)]
    for r in rows[-20:]:
        r["draw"] += 10
    return summarize(pd.DataFrame(rows))


def test_best_ties_and_different_gene_sets_are_marked():
    summary = board().set_index(["backbone", "view"])
    assert not summary.loc[("elsewhere", "summary"), "comparable"]  # highest estimate, but on other genes
    assert summary.loc[("strong", "summary"), "best"] and not summary.loc[("elsewhere", "summary"), "best"]
    assert (
        summary.loc[("close", "summary"), "tied_with_best"] and not summary.loc[("weak", "summary"), "tied_with_best"]
    )
    comparisons = pairwise_comparisons(board())
    pair = comparisons[
        (comparisons["backbone_a"] == "close") & (comparisons["backbone_b"] == "strong")
        | (comparisons["backbone_a"] == "strong") & (comparisons["backbone_b"] == "close")
    ].iloc[0]
    assert pair["p_holm"] > 0.05 and pair["ci_low"] < 0 < pair["ci_high"]
    weak = comparisons[
        comparisons[["backbone_a", "backbone_b"]].isin(["weak"]).any(axis=1)
        & comparisons[["backbone_a", "backbone_b"]].isin(["strong"]).any(axis=1)
    ].iloc[0]
    assert weak["p_holm"] < 0.05
    assert not ((comparisons["backbone_a"] == "elsewhere") | (comparisons["backbone_b"] == "elsewhere")).any()


def test_tuning_gains_are_holm_adjusted_over_the_tasks_of_one_backbone():
    """The `full` tuning table as a real run fills it (five backbones, two universes, eight binary tasks, 80 gains):
    a gain that every paired replicate shows is significant, because each backbone's tasks are one family; over the
    whole table the bootstrap p-value's floor (1 / 500 here) could never reach 0.05."""
    backbones = ["all-MiniLM-L6-v2", "bag-of-words", "tfidf", "text-availability", "random-gaussian"]
    tasks = [name for name, task in TASKS.items() if task.kind == "binary"][:8]
    rows = []
    for b, backbone in enumerate(backbones):
        for universe in ("all_genes", "with_summary"):
            for t, task in enumerate(tasks):
                gain = 0.03 if backbone == "bag-of-words" and t < 2 else 0.0
                for tuned, (classifier, estimate) in enumerate(
                    [("logistic_regression", 0.8), (TUNED_CLASSIFIER, 0.8 + gain)]
                ):
                    seed = 1000 * tuned + 100 * b + 10 * t + (universe == "with_summary")
                    row = result(backbone, "summary", estimate, task=task, seed=seed)
                    rows.append(dict(row, universe=universe, classifier=classifier))
    gains = tuning_gains(summarize(pd.DataFrame(rows)))
    assert len(gains) == 80 and gains["p_value"].min() * len(gains) > 0.05
    significant = gains[gains["p_holm"] < 0.05]
    assert set(significant["backbone"]) == {"bag-of-words"} and set(significant["task"]) == set(tasks[:2])
    assert len(significant) == 4 and np.allclose(significant["p_holm"], 8 / 500)  # the smallest p of 8, times 8
    for _, family in gains.groupby(["backbone", "view", "universe"]):
        assert len(family) == 8 and np.array_equal(family["p_holm"], holm(family["p_value"].to_numpy()))


def test_random_control_is_a_band_over_draws_and_is_checked():
    summary = board()
    random = summary[summary["backbone"] == "random-gaussian"].iloc[0]
    assert random["n_draws"] == 20 and random["band_low"] < random["estimate"] < random["band_high"]
    assert random_band_at_chance(summary)["at_chance"].all()
    table = wide_table(summary)
    assert "band" in table.set_index("backbone").loc["random-gaussian", "dosage_sensitive_tfs"]


def test_leakage_audit_flags_shared_sources():
    audit = leakage_audit(VIEWS, TASKS).set_index(["view", "task"])["leaks"]
    assert audit[("go", "gene_interaction")] and audit[("go", "go_bp_experimental")]
    assert audit[("card", "gene_type")] and audit[("card", "chromosome")]
    assert not audit[("summary", "gene_interaction")] and not audit[("summary", "dosage_sensitive_tfs")]


def test_go_minus_summary_ablation_is_paired():
    ablation = view_ablation(board())
    row = ablation[ablation["backbone"] == "strong"].iloc[0]
    assert row["gap"] == np.float64(0.93 - 0.90) or abs(row["gap"] - 0.03) < 1e-9
    assert row["ci_low"] > 0 and row["p_value"] < 0.05


def test_results_scored_with_another_number_of_replicates_are_not_paired():
    """A view scored with n_bootstrap=100 beside views with 500 replicates: its replicates are not pairs of theirs, so
    it is marked not comparable, and the ablation, the comparisons and the release tables leave it out."""
    rows = [result("strong", "summary", 0.90), result("close", "summary", 0.89, seed=1)]
    short = result("strong", "go", 0.93, seed=3)
    short["bootstrap"] = short["bootstrap"][:100]
    odd = result("odd", "summary", 0.80, seed=4)
    odd["bootstrap"] = odd["bootstrap"][:100]
    summary = summarize(pd.DataFrame([*rows, short, odd]))
    assert not summary.set_index("backbone").loc["odd", "comparable"]
    assert view_ablation(summary).empty
    assert not pairwise_comparisons(summary)[["backbone_a", "backbone_b"]].isin(["odd"]).any().any()
    assert "leaderboard_go_minus_summary.csv" in leaderboard_files(summary.assign(protocol="published"))


def test_leaderboard_compares_results_of_one_protocol_and_says_which():
    """Gene-task partitions scored under another protocol (or before protocols were named) are left out and listed;
    cell results, which have one protocol, are kept; the wide table names the protocol it shows."""
    published = pd.DataFrame([dict(result("strong", "summary", 0.9), protocol="published")])
    full = pd.DataFrame([dict(result("weak", "summary", 0.7), protocol="full")])
    unnamed = pd.DataFrame([result("old", "summary", 0.8)])
    cells = pd.DataFrame([dict(result("strong", "summary", 0.6), task="cell_type_wang", kind="cells")])
    results = {
        "geneformer_results": {"strong|summary": published, "weak|summary": full, "old|summary": unnamed},
        "cell_type_results": {"strong|wang": cells},
    }
    frames, left_out = protocol_frames(results, "published")
    assert [f["backbone"].iloc[0] for f in frames] == ["strong", "strong"]
    assert left_out == ["geneformer_results[old|summary]", "geneformer_results[weak|summary]"]
    frames, left_out = protocol_frames(results, "full")
    assert {f["backbone"].iloc[0] for f in frames} == {"weak", "strong"} and len(left_out) == 2
    table = wide_table(summarize(pd.concat(frames)).assign(protocol="full"))
    assert list(table.columns[:3]) == ["backbone", "view", "protocol"] and set(table["protocol"]) == {"full"}
    with pytest.raises(ValueError, match="Unknown evaluation protocol 'fast'"):
        protocol_frames(results, "fast")


RANKED_TASKS = ["dosage_sensitive_tfs", "bivalent_vs_lys4_only", "tf_range_geneformer"]


@pytest.fixture(scope="module")
def scored(data_dir) -> pd.DataFrame:
    """Real result rows on three Geneformer tasks (RefSeq summaries as texts, logistic regression, 200 paired
    replicates): bag-of-words, TF-IDF, "bag-of-words-copy" (the same vectors) and the random control, whose draws
    1–2 make it a band as in the results assets."""
    long = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv")
    summaries = pd.read_parquet(
        data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet",
        columns=["ensembl_id", "symbol", "refseq_summary"],
    ).dropna(subset=["ensembl_id"])
    protocol, rows = Protocol(n_bootstrap=200), []
    for task in (TASKS[name] for name in RANKED_TASKS):
        genes = (
            long[long["task"] == GENEFORMER_SOURCES[task.name][0]]
            .merge(summaries.drop_duplicates("ensembl_id"), on="ensembl_id")
            .drop_duplicates("ensembl_id")
        )
        texts = pd.DataFrame({"text": genes["refseq_summary"].fillna("Gene " + genes["symbol"]).to_numpy()})
        ids = genes["ensembl_id"].str.removeprefix("ENSG").astype(int).to_numpy()
        words = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(texts)
        vectors = {
            "bag-of-words": words,
            "bag-of-words-copy": words,
            "tfidf": TfidfEncoder(get_backbone("tfidf")).embed(texts),
        }
        vectors.update({("random-gaussian", draw): random_gene_vectors(ids, 384, seed=draw) for draw in range(3)})
        extra = {
            "universe": "all_genes",
            "view": "summary",
            "n_excluded": 0,
            "genes_digest": genes_digest(ids, (genes["label"] == task.positive).to_numpy()),
        }
        for name, X in vectors.items():
            backbone, draw = name if isinstance(name, tuple) else (name, 0)
            for row in evaluate_binary(task, X, genes["label"], protocol, bootstrap=draw == 0, forest=False):
                rows.append(dict(row, **extra, backbone=backbone, draw=draw, dims=X.shape[1]))
    return pd.DataFrame(rows)


def test_rank_intervals_on_real_results(scored):
    """Every rank lies in its 95% interval; P(first) sums to 1 per comparison; identical vectors share rank,
    interval and group; the random band is left out of ranking, and 'overall' spans the three tasks; group 1 is
    the best backbone and those not significantly worse (★, ≈)."""
    summary = summarize(scored)
    ranks = rank_intervals(summary)
    assert list(ranks.columns) == RANK_COLUMNS
    assert ((ranks["rank_low"] <= ranks["rank"]) & (ranks["rank"] <= ranks["rank_high"])).all()
    assert ((ranks["rank_low"] >= 1) & (ranks["rank_high"] <= ranks["n_ranked"])).all()
    assert np.allclose(ranks.groupby(["task", "classifier", "metric"])["p_first"].sum(), 1.0)
    assert set(ranks["task"]) == {*RANKED_TASKS, OVERALL} and "random-gaussian" not in set(ranks["backbone"])
    assert (ranks.loc[ranks["task"] == OVERALL, "n_tasks"] == 3).all()
    same = ranks.set_index(["task", "backbone"])[["rank", "rank_low", "rank_high", "p_first", "group"]]
    for task in [*RANKED_TASKS, OVERALL]:
        assert same.loc[(task, "bag-of-words")].equals(same.loc[(task, "bag-of-words-copy")])
    backbones = summarize(scored[scored["backbone"] != "random-gaussian"])
    marked = backbones[backbones["best"] | backbones["tied_with_best"]].groupby("task")["backbone"].agg(set)
    first_group = rank_intervals(backbones).query("group == 1").groupby("task")["backbone"].agg(set)
    assert marked.to_dict() == first_group.drop(OVERALL).to_dict()  # group 1 is the ★ and ≈ of the wide table
    table = rank_table(ranks)
    assert list(table.columns[:5]) == ["backbone", "view", "overall rank [95%]", "P(first)", "group"]
    assert set(RANKED_TASKS) <= set(table.columns)


def test_a_backbone_better_on_every_replicate_ranks_first_in_either_metric_direction(scored):
    """Bag-of-words against the random control's first draw on the dosage task: rank 1 [1–1], P(first) = 1, its own
    group; a lower-is-better metric (1 − AUC) ranks the same way."""
    rows = scored[
        (scored["task"] == "dosage_sensitive_tfs")
        & (scored["draw"] == 0)
        & scored["backbone"].isin(["bag-of-words", "random-gaussian"])
    ]
    words, random = rows.sort_values("backbone")["bootstrap"].map(np.asarray)
    assert words.min() > random.max()  # better on every replicate
    flipped = rows.assign(
        metric="relative_mae",
        estimate=1 - rows["estimate"],
        fold_values=[list(1 - np.asarray(v)) for v in rows["fold_values"]],
        bootstrap=[list(1 - np.asarray(b)) for b in rows["bootstrap"]],
    )
    for frame in (rows, flipped):
        ranks = rank_intervals(summarize(frame)).set_index("backbone")
        ranks = ranks[ranks["task"] != OVERALL]
        assert ranks.loc["bag-of-words", ["rank", "rank_low", "rank_high", "p_first", "group"]].tolist() == [
            1,
            1,
            1,
            1,
            1,
        ]
        assert ranks.loc["random-gaussian", ["rank", "rank_low", "rank_high", "p_first", "group"]].tolist() == [
            2,
            2,
            2,
            0,
            2,
        ]


def test_release_leaderboard_files_carry_rank_intervals(scored):
    """The release's leaderboard.csv shows overall rank intervals (not bare ranks) and leaderboard_ranks.csv holds
    every task's and the overall rank intervals."""
    import io

    summary = summarize(scored).assign(protocol="published")
    files = leaderboard_files(summary)
    wide = pd.read_csv(io.BytesIO(files["leaderboard.csv"])).set_index("backbone")
    assert wide.loc["bag-of-words", "overall rank [95%]"] == wide.loc["bag-of-words-copy", "overall rank [95%]"]
    assert wide.loc["random-gaussian", "overall rank [95%]"] == "not ranked"  # a band
    released = pd.read_csv(io.BytesIO(files["leaderboard_ranks.csv"]))
    assert list(released.columns) == RANK_COLUMNS and len(released) == len(rank_intervals(summary))
