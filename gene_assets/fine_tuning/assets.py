"""fine_tuning_results: an opt-in asset (its own job; not in `gene-assets run` nor in the automation) that fine-tunes
a sentence-transformers backbone with a classification head on the four Geneformer tasks of Gan & Li and compares
it with logistic regression on the frozen embedding, per backbone × view partition."""

import contextlib
import time
from dataclasses import replace

import numpy as np
import pandas as pd
from dagster import AssetCheckSpec, AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from pydantic import Field

from ..embeddings.device import GPU_TOKEN_BUDGET, EmbeddingDevice, Placement, k8s_gpu_tags
from ..embeddings.encoders import SentenceTransformerEncoder, idle_cores, torch_threads
from ..embeddings.partitions import backbone_view_partitions
from ..embeddings.registry import get_backbone
from ..results import UNIVERSES, metrics_finite
from ..roles import REQUESTED_FINE_TUNING, role_tags
from ..tasks.assets import labels_of, restrict
from ..tasks.geneformer import GENEFORMER_TASKS
from .report import fine_tuning_table
from .training import CPU_REDUCED, PUBLISHED, Classifier, FineTuningSettings, fine_tuning_rows, settings_record

FINE_TUNING_TASKS = (
    "dosage_sensitive_tfs",
    "bivalent_vs_no_methylation",
    "bivalent_vs_lys4_only",
    "tf_range_geneformer",
)
"""Gan & Li's four Geneformer tasks (GenePT's): dosage-sensitive TFs, bivalent vs unmethylated and bivalent vs
Lys4-only promoters (the 171-gene list, not the genome-wide one), long- vs short-range TFs (Geneformer's labels)."""


class FineTuningConfig(Config):
    tasks: list[str] = Field(
        default=list(FINE_TUNING_TASKS),
        description="Geneformer binary tasks to fine-tune on (default: Gan & Li's four).",
    )
    universe: str = Field(
        default="all_genes",
        description=f"Gene universe the task genes are taken from, one of {', '.join(UNIVERSES)}.",
    )
    preset: str = Field(
        default="auto",
        description="published: ten 90/10 repeats, learning rate from (1e-5, 2e-5, 5e-5) and up to 10 epochs chosen "
        "on an 80/10/10 split, the backbone's full length; cpu: 3 repeats, learning rate 5e-5, up to 2 epochs, "
        "128 tokens; auto: published on a GPU, cpu on the CPU.",
    )
    repeats: int | None = Field(default=None, description="90/10 repeats (None: the preset's).")
    max_epochs: int | None = Field(
        default=None, description="Epochs the 80/10/10 selection trains for, the most a repeat gets (None: preset)."
    )
    learning_rates: list[float] | None = Field(
        default=None, description="Encoder learning rates the selection chooses from (None: the preset's)."
    )
    max_length: int | None = Field(
        default=None,
        description="Tokens per text for fine-tuning and the frozen embedding (None: the preset's, at most the "
        "backbone's).",
    )
    genes_per_task: int | None = Field(
        default=None,
        description="Fine-tune on a stratified sample of this many genes per task (None: every gene; for quick checks).",
    )
    seed: int = Field(default=0, description="Seed of the splits, the head, dropout, batch order and the bootstrap.")
    n_bootstrap: int = Field(default=1000, description="Bootstrap resamples of the test tenths behind each 95% CI.")

    def settings(self, device: str, backbone_max_length: int | None) -> FineTuningSettings:
        presets = {"published": PUBLISHED, "cpu": CPU_REDUCED, "auto": PUBLISHED if device == "cuda" else CPU_REDUCED}
        if self.preset not in presets:
            raise ValueError(f"fine_tuning_results: unknown preset {self.preset!r}; choose auto, published or cpu.")
        base = presets[self.preset]
        overrides = {
            "repeats": self.repeats,
            "max_epochs": self.max_epochs,
            "learning_rates": tuple(self.learning_rates) if self.learning_rates else None,
            "max_length": self.max_length,
        }
        settings = replace(
            base, seed=self.seed, n_bootstrap=self.n_bootstrap, **{k: v for k, v in overrides.items() if v}
        )
        return replace(settings, max_length=min(settings.max_length, backbone_max_length or settings.max_length))


def sample_genes(labels: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A stratified sample of n genes (all when n is None or the task is smaller), in entrez_id order."""
    if n is None or n >= len(labels):
        return labels
    from sklearn.model_selection import train_test_split

    kept, _ = train_test_split(labels, train_size=n, stratify=labels["label"], random_state=seed)
    return kept.sort_values("entrez_id").reset_index(drop=True)


def reductions(settings: FineTuningSettings) -> dict:
    """How the settings differ from the published ones: {setting: [published, used]}."""
    used, published = settings_record(settings), settings_record(PUBLISHED)
    return {
        name: [published[name], used[name]]
        for name in ("repeats", "max_epochs", "learning_rates", "max_length")
        if used[name] != published[name]
    }


@asset(
    group_name="fine_tuning",
    partitions_def=backbone_view_partitions,
    ins={"gene_texts": AssetIn(), "universes": AssetIn("gene_universes"), "labels": AssetIn("geneformer_labels")},
    kinds={"torch"},
    tags=role_tags(REQUESTED_FINE_TUNING),
    op_tags=k8s_gpu_tags(),
    check_specs=[
        AssetCheckSpec(
            "metrics_finite",
            asset="fine_tuning_results",
            blocking=True,
            description="Every metric and repeat value is finite.",
        )
    ],
)
def fine_tuning_results(
    context: AssetExecutionContext,
    config: FineTuningConfig,
    embedding_device: EmbeddingDevice,
    gene_texts: pd.DataFrame,
    universes: pd.DataFrame,
    labels: pd.DataFrame,
):
    """Gan & Li's fine-tuning: the backbone with a linear classification head, learning rate and epochs chosen on an
    80/10/10 split, then mean test ROC-AUC over 90/10 repeats; beside it, logistic regression on the frozen
    embedding over the same splits, and the paired gap. On CPU a reduced preset (see the config and the metadata)."""
    keys = context.partition_key.keys_by_dimension
    backbone, view = get_backbone(keys["backbone"]), keys["view"]
    if backbone.kind != "sentence_transformers":
        raise ValueError(
            f"fine_tuning_results: backbone {backbone.name!r} is a {backbone.kind} backbone; only sentence_transformers "
            "backbones can be fine-tuned."
        )
    unknown = sorted(set(config.tasks) - set(FINE_TUNING_TASKS))
    if unknown:
        raise ValueError(f"fine_tuning_results: unknown task(s) {unknown}; choose from {', '.join(FINE_TUNING_TASKS)}.")
    if config.universe not in UNIVERSES:
        raise ValueError(f"fine_tuning_results: unknown universe {config.universe!r}; one of {', '.join(UNIVERSES)}.")
    device = embedding_device.torch_device()
    settings = config.settings(device, backbone.max_length)
    texts = gene_texts[gene_texts["view"] == view].set_index("entrez_id")
    if texts.empty:
        raise ValueError(f"gene_texts has no texts for view {view!r}: materialize gene_texts with this view enabled.")
    genes = set(universes.loc[universes[config.universe], "entrez_id"]) & set(texts.index)
    tasks = {task.name: task for task in GENEFORMER_TASKS if task.name in config.tasks}
    chosen = {
        name: sample_genes(restrict(task, labels_of(task, labels), genes)[0], config.genes_per_task, settings.seed)
        for name, task in tasks.items()
    }
    started = time.perf_counter()
    encoder = SentenceTransformerEncoder(
        replace(backbone, max_length=settings.max_length),
        Placement(device, "fp32", GPU_TOKEN_BUDGET if device == "cuda" else backbone.fast_path.token_budget),
    )
    threads = idle_cores() if device == "cpu" else None
    context.log.info(
        f"Fine-tuning {backbone.name}/{view} on {device}"
        + (f" ({threads} torch threads)" if threads else "")
        + f": {settings_record(settings)}"
    )
    rows = []
    with torch_threads(threads) if threads else contextlib.nullcontext():
        all_genes = np.unique(np.concatenate([c["entrez_id"].to_numpy() for c in chosen.values()]))
        frozen = pd.DataFrame(
            encoder.embed(texts.loc[all_genes].reset_index(), threads=threads), index=pd.Index(all_genes)
        )
        classifier = Classifier(encoder.model, backbone.prompt)
        for name, task_labels in chosen.items():
            task_started = time.perf_counter()
            ids = task_labels["entrez_id"].to_numpy()
            task_rows = fine_tuning_rows(
                tasks[name],
                classifier,
                texts.loc[ids, "text"].tolist(),
                frozen.loc[ids].to_numpy(),
                task_labels["label"],
                settings,
                context.log.info,
            )
            rows += [dict(r, seconds=round(time.perf_counter() - task_started, 1)) for r in task_rows]
    results = pd.DataFrame(rows).assign(
        backbone=backbone.name, view=view, universe=config.universe, device=device, preset=config.preset
    )
    table = fine_tuning_table({"": results})
    yield Output(
        results,
        metadata={
            "device": device,
            "settings": MetadataValue.json(settings_record(settings)),
            "reduced_from_published": MetadataValue.json(reductions(settings)),
            "seconds": round(time.perf_counter() - started, 1),
            "gaps": MetadataValue.md(table.round(3).to_markdown(index=False)),
        },
    )
    yield metrics_finite(results)
