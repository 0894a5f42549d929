"""What the leaderboard reads: every results asset (gene task families, cell types, perturbation tasks) and their specs."""

from ..cells.assets import CELL_RESULT_ASSETS
from ..perturbation.mean_shift import MEAN_SHIFT_PREFIX, mean_shift_task
from ..perturbation.signatures import REPLOGLE_TASKS
from ..tasks.assets import RESULT_ASSETS, TASKS
from ..tasks.spec import GeneTask

PERTURBATION_RESULT_ASSETS = ["perturbation_results", "mean_shift_results"]
LEADERBOARD_INPUTS = [*RESULT_ASSETS, *CELL_RESULT_ASSETS, *PERTURBATION_RESULT_ASSETS]
KNOWN_TASKS = {**TASKS, **{task.name: task for task in REPLOGLE_TASKS.values()}}


def task_spec(name: str) -> GeneTask:
    """A gene task, a Replogle task, or a mean-shift task (named after its expression file)."""
    if name in KNOWN_TASKS:
        return KNOWN_TASKS[name]
    if name.startswith(MEAN_SHIFT_PREFIX):
        return mean_shift_task(name.removeprefix(MEAN_SHIFT_PREFIX))
    raise KeyError(f"Results name an unknown task {name!r}; register it in tasks/ or perturbation/.")
