"""Unseen genetic perturbation: Replogle 2022 signatures mapped once, then per backbone × view the CV results of
the Replogle task (real data) and of the mean-shift protocol on an expression file named in the run config."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from pydantic import Field

from ..automation.conditions import RESULTS_CONDITION
from ..catalog.resolver import GeneResolver
from ..embeddings.partitions import backbone_view_partitions
from ..embeddings.registry import get_backbone
from ..embeddings.table import GeneEmbeddings
from ..parallel import run_units, worker_count
from ..results import UNIVERSES, FeatureDraws, GeneMatrix, counts_metadata, result_check_specs, result_checks
from ..roles import PERTURBATION_RESULTS, REQUESTED_PERTURBATION_RESULTS, SHARED_INPUT, role_tags
from ..sources.data_directory import DataDirectory
from ..tasks.spec import TaskLabelError
from .evaluation import BASELINE, MODELS, PerturbationProtocol, evaluate_perturbations
from .mean_shift import MeanShiftSource, mean_shift_targets
from .models import MlpSettings
from .signatures import CELL_LINES, ResponseTargets, map_perturbations, read_signatures, signature_targets


@asset(group_name="perturbation", kinds={"pandas"}, tags=role_tags(SHARED_INPUT))
def perturbation_signatures(
    context: AssetExecutionContext, gene_catalog: pd.DataFrame, data_directory: DataDirectory
) -> pd.DataFrame:
    """Replogle 2022 K562 and RPE1 up-regulated signatures with each knocked-down gene's Entrez id (unmapped and
    conflicting symbols counted per cell line)."""
    path = data_directory.file("replogle_signatures")
    mapped, counts = map_perturbations(read_signatures(path), GeneResolver(gene_catalog))
    context.add_output_metadata(counts_metadata(counts, [path]))
    return mapped


class PerturbationEvaluationConfig(Config):
    n_splits: int = Field(default=9, description="Folds of held-out perturbations (K-fold over perturbations).")
    seed: int = Field(default=0, description="Seed of the folds and of every random step of the fitting and scoring.")
    n_bootstrap: int = Field(default=1000, description="Bootstrap resamples behind each 95% CI.")
    random_draws: int = Field(
        default=3,
        description=(
            "The random-gaussian control is scored with this many seeds (a band; each draw refits every fold)."
        ),
    )
    universes: list[str] = Field(
        default=list(UNIVERSES),
        description="Gene universes scored (perturbed genes outside one are excluded and counted).",
    )
    models: list[str] = Field(
        default=list(MODELS), description="Models fitted from the perturbed gene's embedding: mlp and/or ridge."
    )
    hidden_units: int = Field(default=256, description="MLP hidden layer width.")
    learning_rate: float = Field(default=3e-4, description="MLP learning rate.")
    weight_decay: float = Field(default=1e-4, description="MLP weight decay.")
    max_epochs: int = Field(default=600, description="MLP training epochs at most.")
    patience: int = Field(default=50, description="Epochs without improvement before the MLP stops early.")
    threads: int = Field(
        default=1, description="CPU threads for torch and BLAS while fitting (fixed for reproducible results)."
    )
    workers: int = Field(
        default=0,
        description=(
            "Processes scoring (target, universe, draw) units side by side (0: one per core); results do not depend "
            "on it."
        ),
    )

    def protocol(self) -> PerturbationProtocol:
        mlp = MlpSettings(
            hidden_units=self.hidden_units,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            max_epochs=self.max_epochs,
            patience=self.patience,
        )
        return PerturbationProtocol(
            n_splits=self.n_splits,
            seed=self.seed,
            n_bootstrap=self.n_bootstrap,
            models=tuple(self.models),
            mlp=mlp,
            threads=self.threads,
        )


class ReplogleEvaluationConfig(PerturbationEvaluationConfig):
    cell_lines: list[str] = Field(default=list(CELL_LINES), description="Replogle 2022 cell lines scored (K562, RPE1).")


class MeanShiftEvaluationConfig(PerturbationEvaluationConfig):
    path: str = Field(
        description="An .h5ad file: cells or pseudobulk rows × genes, with a perturbation column and control rows."
    )
    perturbation_column: str = Field(default="condition", description="obs column naming each row's perturbation.")
    control_label: str = Field(default="ctrl", description="Value of the perturbation column on control rows.")
    gene_column: str | None = Field(
        default=None, description="var column with gene symbols (GEARS: `gene_name`); None uses var_names."
    )
    dataset: str | None = Field(
        default=None,
        description="Name in the task (`mean_shift_<dataset>`); defaults to the file name without its suffix.",
    )

    def source(self) -> MeanShiftSource:
        return MeanShiftSource(
            path=self.path,
            perturbation_column=self.perturbation_column,
            control_label=self.control_label,
            gene_column=self.gene_column,
            dataset=self.dataset,
        )


def score_targets(
    targets: ResponseTargets, genes: GeneMatrix, protocol: PerturbationProtocol, first_draw: bool
) -> tuple[list[dict], list[dict]]:
    """Rows of the backbone's models on one target (one universe, one draw), and on the first draw (with bootstrap
    replicates) those of the mean-signature baseline."""
    scored = evaluate_perturbations(targets, genes.rows(targets.entrez_ids), protocol, bootstrap=first_draw)
    return scored, evaluate_perturbations(targets, None, protocol) if first_draw else []


def score_perturbations(
    context: AssetExecutionContext,
    config: PerturbationEvaluationConfig,
    embeddings: GeneEmbeddings,
    universes: pd.DataFrame,
    targets: list[ResponseTargets],
    metadata: dict | None = None,
):
    """Rows (long results schema) of this partition's backbone and of the mean-signature baseline, for every
    target and universe, then the asset's checks. A perturbation whose gene has no embedding or is outside the
    universe is excluded (and counted) for every backbone alike."""
    keys = context.partition_key.keys_by_dimension
    backbone = get_backbone(keys["backbone"])
    protocol, features = config.protocol(), FeatureDraws(embeddings, config.random_draws)
    embedded = set(features.index)
    inside = {
        (universe, target.task.name): target.restricted_to(
            set(universes.loc[universes[universe], "entrez_id"]) & embedded
        )
        for universe in config.universes
        for target in targets
    }
    units = [(draw, universe, target) for draw in features.draws for universe in config.universes for target in targets]

    def unit(draw: int, universe: str, target: ResponseTargets) -> tuple:
        restricted = inside[universe, target.task.name]
        return restricted, features.genes(draw, restricted.entrez_ids), protocol, draw == 0

    outcomes = run_units(
        score_targets,
        (unit(*u) for u in units),
        worker_count(config.workers),
        protocol.threads,
        expected=(TaskLabelError,),
    )
    rows, skipped = [], []
    for (draw, universe, target), (outcome, seconds) in zip(units, outcomes):
        if isinstance(outcome, TaskLabelError):
            if draw == 0:
                skipped.append({"task": target.task.name, "universe": universe, "reason": str(outcome)})
                context.log.warning(f"{target.task.name} on {universe}: {outcome}")
            continue
        scored, baseline = outcome
        common = dict(
            universe=universe,
            draw=draw,
            n_excluded=target.n_source - len(inside[universe, target.task.name].entrez_ids),
            view=keys["view"],
            seconds=seconds,
        )
        rows += [dict(r, **common, backbone=backbone.name, dims=embeddings.dims) for r in scored]
        rows += [dict(r, **common, backbone=BASELINE, dims=0) for r in baseline]
        context.log.info(
            f"{backbone.name}/{keys['view']}: {target.task.name} on {universe}, draw {draw}: {seconds:.1f}s"
        )
    results = pd.DataFrame(rows)
    yield Output(results, metadata={**(metadata or {}), **_metadata(results, skipped)})
    yield from result_checks(results, skipped)


def _metadata(results: pd.DataFrame, skipped: list) -> dict:
    metadata = {
        "seconds": round(float(results.drop_duplicates(["task", "universe", "draw"])["seconds"].sum()), 1)
        if len(results)
        else 0.0
    }
    if len(results):
        first = results[results["draw"] == 0]
        table = first.pivot_table(
            index=["task", "universe", "metric"], columns=["backbone", "classifier"], values="estimate"
        ).round(3)
        table.columns = [f"{backbone} {model}" for backbone, model in table.columns]
        metadata["estimates"] = MetadataValue.md(table.to_markdown())
        metadata["perturbations"] = MetadataValue.md(
            first.groupby(["task", "universe"])[["n_genes", "n_excluded", "n_classes"]]
            .first()
            .rename(columns={"n_genes": "scored", "n_excluded": "excluded", "n_classes": "measured_genes"})
            .to_markdown()
        )
    if skipped:
        metadata["skipped"] = MetadataValue.json(skipped)
    return metadata


PARTITIONED_INPUTS = {"embeddings": AssetIn("gene_embeddings"), "universes": AssetIn("gene_universes")}


@asset(
    group_name="perturbation",
    partitions_def=backbone_view_partitions,
    ins={**PARTITIONED_INPUTS, "signatures": AssetIn("perturbation_signatures")},
    kinds={"torch"},
    tags=role_tags(PERTURBATION_RESULTS),
    automation_condition=RESULTS_CONDITION,
    check_specs=result_check_specs("perturbation_results"),
)
def perturbation_results(
    context: AssetExecutionContext,
    config: ReplogleEvaluationConfig,
    embeddings: GeneEmbeddings,
    universes: pd.DataFrame,
    signatures: pd.DataFrame,
):
    """Replogle 2022 K562 / RPE1: from the knocked-down gene's embedding, rank the measured genes (MLP and ridge);
    AUROC, average precision and precision@20/50/100 of the significant up set per held-out perturbation (9-fold
    CV), beside the training-set mean signature."""
    targets = [signature_targets(signatures, cell_line) for cell_line in config.cell_lines]
    yield from score_perturbations(context, config, embeddings, universes, targets)


@asset(
    group_name="perturbation",
    partitions_def=backbone_view_partitions,
    ins={**PARTITIONED_INPUTS, "gene_catalog": AssetIn("gene_catalog")},
    kinds={"torch"},
    tags=role_tags(REQUESTED_PERTURBATION_RESULTS),
    check_specs=result_check_specs("mean_shift_results"),
)
def mean_shift_results(
    context: AssetExecutionContext,
    config: MeanShiftEvaluationConfig,
    embeddings: GeneEmbeddings,
    universes: pd.DataFrame,
    gene_catalog: pd.DataFrame,
):
    """The paper's protocol on the expression file in the run config: MLP (and ridge) from the perturbed gene's
    embedding to Δμ = μ_p − μ_ctrl; Pearson over the top-20/50/100 changed genes and relative MAE (K-fold CV)."""
    targets, counts = mean_shift_targets(config.source(), GeneResolver(gene_catalog))
    yield from score_perturbations(
        context, config, embeddings, universes, [targets], {"file": config.path, "mapping": MetadataValue.json(counts)}
    )
