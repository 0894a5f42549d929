"""All gene_assets definitions: sources → catalog → texts → embeddings → tasks and perturbation → leaderboard → release."""

from dagster import AssetSelection, Definitions, define_asset_job, load_asset_checks_from_modules, load_assets_from_modules

from .catalog import assets as catalog_assets
from .embeddings import assets as embedding_assets
from .embeddings.partitions import backbone_view_partitions
from .leaderboard import assets as leaderboard_assets
from .perturbation import assets as perturbation_assets
from .release import assets as release_assets
from .resources import resources_for_environment
from .tasks import assets as task_assets
from .tasks.assets import RESULT_ASSETS
from .texts import assets as text_assets

MODULES = [catalog_assets, text_assets, embedding_assets, task_assets, perturbation_assets, leaderboard_assets, release_assets]

all_assets = load_assets_from_modules(MODULES)
all_asset_checks = load_asset_checks_from_modules(MODULES)

sources_job = define_asset_job(
    "sources_job",
    selection=AssetSelection.assets(
        "gene_catalog", "gene_summaries", "gene_texts", "gene_universes",
        "geneformer_labels", "gene_type_labels", "gene_property_labels", "gene_interaction_pairs",
        "perturbation_signatures",
    ),
    description="Gene catalog, summaries, text views, gene universes, task labels and perturbation signatures.",
)
backbone_job = define_asset_job(
    "backbone_job",
    selection=AssetSelection.assets("gene_embeddings", *RESULT_ASSETS, "perturbation_results"),
    partitions_def=backbone_view_partitions,
    description="Embed one (backbone, view) partition and score it on every gene task family and the Replogle "
                "unseen-perturbation task.",
)
release_job = define_asset_job(
    "release_job",
    selection=AssetSelection.assets("leaderboard", "embeddings_release"),
    description="Aggregate every available partition into the leaderboard and publish a DVC release.",
)

defs = Definitions(
    assets=all_assets,
    asset_checks=all_asset_checks,
    jobs=[sources_job, backbone_job, release_job],
    resources=resources_for_environment(),
)
