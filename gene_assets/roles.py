"""Asset roles: each asset says what it is for with one tag, and the jobs, `gene-assets run` and the leaderboard
select assets by role with `AssetSelection`, so a new results asset is one tag on its decorator."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable

from dagster import AssetSelection

ROLE_TAG = "gene_assets/role"

SHARED_INPUT = "shared_input"
"""Unpartitioned sources, texts, gene universes, task labels and signatures that every partition reads (sources_job)."""
GENE_TASK_RESULTS = "gene_task_results"
"""A gene task family scored under an evaluation protocol whenever its backbone × view partition is (re)embedded."""
PERTURBATION_RESULTS = "perturbation_results"
"""Perturbation tasks scored whenever their backbone × view partition is (re)embedded."""
REQUESTED_PERTURBATION_RESULTS = "requested_perturbation_results"
"""Perturbation tasks scored on request, on an expression file named in the run config."""
CELL_RESULTS = "cell_results"
"""Cell-type tasks, per cell dataset (the expression baseline) or backbone × dataset."""
REQUESTED_FINE_TUNING = "requested_fine_tuning"
"""Fine-tuning on the Geneformer tasks, on request only (fine_tuning_job): in no default run nor automation."""


def role_tags(role: str) -> dict[str, str]:
    """The tags that give an asset its role."""
    return {ROLE_TAG: role}


def with_role(*roles: str) -> AssetSelection:
    """The assets of any of the roles."""
    return functools.reduce(operator.or_, (AssetSelection.tag(ROLE_TAG, role) for role in roles))


SCORED_WHEN_EMBEDDED = with_role(GENE_TASK_RESULTS, PERTURBATION_RESULTS)
"""Results scored for each (re)embedded backbone × view partition: in backbone_job and its automation."""
LEADERBOARD_RESULTS = with_role(GENE_TASK_RESULTS, PERTURBATION_RESULTS, REQUESTED_PERTURBATION_RESULTS, CELL_RESULTS)
"""Every results asset; the leaderboard reads them all."""


def asset_names(selection: AssetSelection, assets: Iterable) -> list[str]:
    """The sorted names of the selected assets among `assets` (assets definitions or an asset graph)."""
    return sorted(key.to_user_string() for key in selection.resolve(assets))
