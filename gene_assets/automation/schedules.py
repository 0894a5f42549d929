"""The weekly refresh: the sources job re-reads every input; unchanged texts change nothing downstream (gene_texts'
data version is a digest of its content), changed ones re-embed and re-score the existing partitions."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from ..settings import REFRESH_CRON_ENV, cron_setting

WEEKLY = "0 3 * * 1"
"""Mondays 03:00 (the schedule's time zone: UTC)."""


def weekly_refresh(sources_job, running: bool) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="weekly_refresh",
        job=sources_job,
        cron_schedule=cron_setting(REFRESH_CRON_ENV, WEEKLY),
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED,
        description="Rebuild the catalog, texts and labels; automation re-embeds and re-scores what changed.",
    )
