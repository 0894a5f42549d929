"""Declarative automation: after new or changed partitions, the task results of exactly those partitions, then the
leaderboard, then a release. Each asset names its condition on its decorator (`automation_condition=`)."""

from __future__ import annotations

from dagster import AssetSelection, AutomationCondition


def when_handled(trigger: AutomationCondition) -> AutomationCondition:
    """`trigger` happened since this asset (partition) was last requested or updated, and nothing it needs or it
    itself is running."""
    return (
        trigger.since_last_handled() & ~AutomationCondition.any_deps_in_progress() & ~AutomationCondition.in_progress()
    )


EMBEDDINGS_CONDITION = (
    when_handled(
        AutomationCondition.any_deps_match(AutomationCondition.data_version_changed()).ignore(
            AssetSelection.assets("gene_catalog")
        )
        | AutomationCondition.code_version_changed()
    )
    & ~AutomationCondition.missing()
).with_label("re-embed when the texts changed")
"""Existing partitions re-embed when gene_texts or the backbone's inputs have new content (their data versions are
content digests) or the embedding code changed; new partitions are requested by the discovery sensor for the
configured views only."""

RESULTS_CONDITION = (
    when_handled(
        AutomationCondition.any_deps_match(AutomationCondition.data_version_changed()).allow(
            AssetSelection.assets("gene_embeddings")
        )
        | (AutomationCondition.code_version_changed() & ~AutomationCondition.missing())
    )
    & ~AutomationCondition.any_deps_missing()
).with_label("score a new or changed partition")
"""Score exactly the partitions whose embeddings have new content (a re-embedding that writes the same vectors keeps
their data version), and every scored partition again when the results' code version changed."""

LEADERBOARD_CONDITION = (
    when_handled(
        AutomationCondition.any_deps_match(AutomationCondition.data_version_changed())
        | AutomationCondition.code_version_changed()
    )
    & ~AutomationCondition.any_deps_match(AutomationCondition.any_deps_in_progress())
).with_label("aggregate new results")
"""Re-aggregate after results with new content (or a new leaderboard code version), once no partition is still being
embedded or scored. Partitions that failed (e.g. weights not available here) are never materialized and do not hold
it back."""

TERM_MASKING_CONDITION = (
    when_handled(
        AutomationCondition.newly_missing()
        | AutomationCondition.any_deps_match(AutomationCondition.data_version_changed())
        | AutomationCondition.code_version_changed()
    )
    & ~AutomationCondition.any_deps_missing()
).with_label("mask terms when texts or labels changed")
"""Term masking (leakage/) runs once, then again when the texts, the task labels or the gene-set files have new
content, or its code changed."""

RELEASE_CONDITION = (
    when_handled(
        AutomationCondition.any_deps_match(
            AutomationCondition.data_version_changed() | AutomationCondition.will_be_requested()
        ).allow(AssetSelection.assets("leaderboard"))
    )
    & AutomationCondition.all_deps_blocking_checks_passed().allow(AssetSelection.assets("leaderboard", "term_masking"))
    & ~AutomationCondition.any_deps_missing().allow(AssetSelection.assets("term_masking"))
).with_label("publish a new leaderboard")
"""Publish after a leaderboard with new content (or in the leaderboard's own run) whose blocking checks, and term
masking's, passed (cell-embedding partitions that were never materialized do not hold it back)."""
