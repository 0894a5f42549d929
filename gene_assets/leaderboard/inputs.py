"""What the leaderboard reads: every results asset (gene task families, cell types, perturbation tasks) and their specs."""

from dagster import load_assets_from_modules

from ..catalog import assets as catalog_assets
from ..cells import assets as cell_assets
from ..embeddings import assets as embedding_assets
from ..perturbation import assets as perturbation_assets
from ..perturbation.mean_shift import MEAN_SHIFT_PREFIX, mean_shift_task
from ..perturbation.signatures import REPLOGLE_TASKS
from ..roles import GENE_TASK_RESULTS, LEADERBOARD_RESULTS, asset_names, with_role
from ..tasks import assets as task_assets
from ..tasks.assets import TASKS
from ..tasks.spec import GeneTask
from ..texts import assets as text_assets

UPSTREAM = load_assets_from_modules(
    [catalog_assets, text_assets, embedding_assets, task_assets, cell_assets, perturbation_assets]
)
"""The results assets and everything upstream of them: a complete graph for the role selections to resolve in."""
RESULT_ASSETS = asset_names(with_role(GENE_TASK_RESULTS), UPSTREAM)
"""The gene task families, scored under an evaluation protocol."""
LEADERBOARD_INPUTS = asset_names(LEADERBOARD_RESULTS, UPSTREAM)
KNOWN_TASKS = {**TASKS, **{task.name: task for task in REPLOGLE_TASKS.values()}}


def task_spec(name: str) -> GeneTask:
    """A gene task, a Replogle task, or a mean-shift task (named after its expression file)."""
    if name in KNOWN_TASKS:
        return KNOWN_TASKS[name]
    if name.startswith(MEAN_SHIFT_PREFIX):
        return mean_shift_task(name.removeprefix(MEAN_SHIFT_PREFIX))
    raise KeyError(f"Results name an unknown task {name!r}; register it in tasks/ or perturbation/.")
