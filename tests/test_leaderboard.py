"""Leaderboard statistics: one universe per comparison, significance against the best, the random band,
the leakage audit and the GO-minus-summary ablation."""

import numpy as np
import pandas as pd
import pytest

from gene_assets.leaderboard.assets import protocol_frames
from gene_assets.leaderboard.report import (
    leakage_audit,
    pairwise_comparisons,
    random_band_at_chance,
    summarize,
    view_ablation,
    wide_table,
)
from gene_assets.tasks.assets import TASKS
from gene_assets.texts.views import VIEWS


def result(backbone, view, estimate, spread=0.01, draw=0, digest="same", task="dosage_sensitive_tfs", seed=0):
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(99).normal(0, spread, 500)  # the same resamples for every backbone
    return {"backbone": backbone, "view": view, "universe": "all_genes", "task": task, "family": "regulation",
            "kind": "binary", "classifier": "logistic_regression", "metric": "roc_auc", "estimate": estimate,
            "fold_values": list(estimate + rng.normal(0, 0.02, 5)), "bootstrap": list(estimate + shared + rng.normal(0, 0.002, 500)),
            "n_genes": 480, "n_classes": 2, "n_excluded": 0, "genes_digest": digest, "draw": draw, "dims": 8}


def board():
    rows = [result("strong", "summary", 0.90), result("close", "summary", 0.899, seed=1),
            result("weak", "summary", 0.70, seed=2), result("elsewhere", "summary", 0.95, digest="other"),
            result("strong", "go", 0.93, seed=3)]
    rows += [result("random-gaussian", "summary", 0.5 + d / 200, draw=d, seed=10 + d) for d in range(-10, 10)]
    for r in rows[-20:]:
        r["draw"] += 10
    return summarize(pd.DataFrame(rows))


def test_best_ties_and_different_gene_sets_are_marked():
    summary = board().set_index(["backbone", "view"])
    assert not summary.loc[("elsewhere", "summary"), "comparable"]  # highest estimate, but on other genes
    assert summary.loc[("strong", "summary"), "best"] and not summary.loc[("elsewhere", "summary"), "best"]
    assert summary.loc[("close", "summary"), "tied_with_best"] and not summary.loc[("weak", "summary"), "tied_with_best"]
    comparisons = pairwise_comparisons(board())
    pair = comparisons[(comparisons["backbone_a"] == "close") & (comparisons["backbone_b"] == "strong")
                       | (comparisons["backbone_a"] == "strong") & (comparisons["backbone_b"] == "close")].iloc[0]
    assert pair["p_holm"] > 0.05 and pair["ci_low"] < 0 < pair["ci_high"]
    weak = comparisons[comparisons[["backbone_a", "backbone_b"]].isin(["weak"]).any(axis=1)
                       & comparisons[["backbone_a", "backbone_b"]].isin(["strong"]).any(axis=1)].iloc[0]
    assert weak["p_holm"] < 0.05
    assert not ((comparisons["backbone_a"] == "elsewhere") | (comparisons["backbone_b"] == "elsewhere")).any()


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


def test_leaderboard_compares_results_of_one_protocol_and_says_which():
    """Gene-task partitions scored under another protocol (or before protocols were named) are left out and listed;
    cell results, which have one protocol, are kept; the wide table names the protocol it shows."""
    published = pd.DataFrame([dict(result("strong", "summary", 0.9), protocol="published")])
    full = pd.DataFrame([dict(result("weak", "summary", 0.7), protocol="full")])
    unnamed = pd.DataFrame([result("old", "summary", 0.8)])
    cells = pd.DataFrame([dict(result("strong", "summary", 0.6), task="cell_type_wang", kind="cells")])
    results = {"geneformer_results": {"strong|summary": published, "weak|summary": full, "old|summary": unnamed},
               "cell_type_results": {"strong|wang": cells}}
    frames, left_out = protocol_frames(results, "published")
    assert [f["backbone"].iloc[0] for f in frames] == ["strong", "strong"]
    assert left_out == ["geneformer_results[old|summary]", "geneformer_results[weak|summary]"]
    frames, left_out = protocol_frames(results, "full")
    assert {f["backbone"].iloc[0] for f in frames} == {"weak", "strong"} and len(left_out) == 2
    table = wide_table(summarize(pd.concat(frames)).assign(protocol="full"))
    assert list(table.columns[:3]) == ["backbone", "view", "protocol"] and set(table["protocol"]) == {"full"}
    with pytest.raises(ValueError, match="Unknown evaluation protocol 'fast'"):
        protocol_frames(results, "fast")
