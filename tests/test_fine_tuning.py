"""Fine-tuning MiniLM with a classification head on real Geneformer task texts, and its place outside the default
run."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit

from gene_assets.definitions import defs
from gene_assets.embeddings.device import Placement
from gene_assets.embeddings.encoders import SentenceTransformerEncoder, torch_threads
from gene_assets.embeddings.registry import get_backbone
from gene_assets.fine_tuning.report import fine_tuning_table
from gene_assets.fine_tuning.training import CPU_REDUCED, FINE_TUNED, FROZEN, Classifier, fine_tuning_rows
from gene_assets.tasks.geneformer import GENEFORMER_TASKS

TASK = next(t for t in GENEFORMER_TASKS if t.name == "bivalent_vs_lys4_only")
SETTINGS = replace(CPU_REDUCED, max_length=64, learning_rates=(5e-5,), n_bootstrap=200)


@pytest.fixture(scope="module")
def task_texts(data_dir) -> pd.DataFrame:
    """48 genes of the bivalent vs Lys4-only task (24 per class) with their RefSeq summaries."""
    labels = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv")
    labels = labels[labels["task"] == "bivalent_vs_lys4_only"]
    summaries = pd.read_parquet(
        data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet", columns=["ensembl_id", "refseq_summary"]
    ).dropna()
    genes = labels.merge(summaries, on="ensembl_id").drop_duplicates("ensembl_id").sort_values("ensembl_id")
    sample = genes.groupby("label").head(24).reset_index(drop=True)
    assert (sample["label"].value_counts() == 24).all()
    return sample


@pytest.fixture
def minilm():
    """MiniLM at 64 tokens, loaded for each test (fine-tuning changes its weights)."""
    backbone = replace(get_backbone("all-MiniLM-L6-v2"), max_length=SETTINGS.max_length)
    return SentenceTransformerEncoder(backbone, Placement("cpu", "fp32", backbone.fast_path.token_budget))


@pytest.mark.slow
def test_classification_head_learns_on_real_texts_and_a_rerun_is_identical(task_texts, minilm):
    """Two epochs: the training loss falls and the training-set AUC is far above chance; a one-epoch rerun repeats
    the first epoch's loss and scores exactly."""
    texts = task_texts["refseq_summary"].tolist()
    y = (task_texts["label"] == TASK.positive).to_numpy(int)
    after_first = []

    def score_after_first(epoch):
        if epoch == 1:
            after_first.append(classifier.scores(texts))

    with torch_threads(1):
        classifier = Classifier(minilm.model, None)
        losses = classifier.fit(texts, y, replace(SETTINGS, max_epochs=2), 0, score_after_first)
        scores = classifier.scores(texts)
        rerun_losses = classifier.fit(texts, y, replace(SETTINGS, max_epochs=1), 0)
        rerun_scores = classifier.scores(texts)
    assert losses[1] < losses[0]
    assert roc_auc_score(y, scores) > 0.75
    assert rerun_losses == losses[:1]
    assert np.array_equal(rerun_scores, after_first[0])


@pytest.mark.slow
def test_fine_tuned_and_frozen_rows_share_splits_and_resamples(task_texts, minilm):
    texts = task_texts["refseq_summary"].tolist()
    with torch_threads(1):
        frozen = minilm.embed(task_texts.rename(columns={"refseq_summary": "text"}), threads=1)
        settings = replace(SETTINGS, max_epochs=1, repeats=2)
        rows = fine_tuning_rows(TASK, Classifier(minilm.model, None), texts, frozen, task_texts["label"], settings)
    results = pd.DataFrame(rows).assign(backbone="all-MiniLM-L6-v2", view="summary", device="cpu")
    assert list(results["classifier"]) == [FINE_TUNED, FROZEN]
    assert (results["repeats"] == 2).all() and len(results["fold_values"].iloc[0]) == 2
    assert results.loc[0, "epochs"] == 1 and results.loc[0, "learning_rate"] == 5e-5
    y = (task_texts["label"] == TASK.positive).to_numpy(int)
    splits = StratifiedShuffleSplit(2, test_size=0.1, random_state=SETTINGS.seed).split(frozen, y)
    expected = [
        roc_auc_score(
            y[test], LogisticRegression(max_iter=5000).fit(frozen[train], y[train]).decision_function(frozen[test])
        )
        for train, test in splits
    ]
    assert results.loc[1, "fold_values"] == pytest.approx(expected)  # the frozen probe saw the same 90/10 splits
    table = fine_tuning_table({"all-MiniLM-L6-v2|summary": results})
    row = table.iloc[0]
    assert row["gap"] == pytest.approx(row["fine_tuned"] - row["frozen"])
    assert row["gap_low"] <= row["gap_high"] and 0 < row["p_value"] <= 1


def test_default_run_and_automation_leave_fine_tuning_out():
    """Only fine_tuning_job selects the asset (not the jobs `gene-assets run` launches), and no automation does."""
    key = AssetKey("fine_tuning_results")
    selecting = sorted(
        job.name
        for job in defs.resolve_all_job_defs()
        if not job.name.startswith("__") and key in job.asset_layer.selected_asset_keys
    )
    assert selecting == ["fine_tuning_job"]
    assert defs.resolve_asset_graph().get(key).automation_condition is None
