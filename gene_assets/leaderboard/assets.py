"""leaderboard: aggregates every available partition of every task family, with its blocking checks."""

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    Config,
    MetadataValue,
    Output,
    TableRecord,
    asset,
)
from pydantic import Field

from ..automation.conditions import LEADERBOARD_CONDITION
from ..fine_tuning.report import fine_tuning_table
from ..perturbation.evaluation import BASELINE
from ..tasks.evaluation import PROTOCOLS
from ..tasks.figures import png_markdown
from .inputs import LEADERBOARD_INPUTS, RESULT_ASSETS
from .report import KEYS, random_band_at_chance, random_near_mean_signature, summarize
from .sections import build_sections


class LeaderboardConfig(Config):
    protocol: str = Field(
        default="published",
        description=f"The evaluation protocol whose gene-task results are compared, one of {', '.join(PROTOCOLS)}; "
        "results of another protocol are left out (cell and perturbation tasks have one protocol).",
    )


def protocol_frames(results: dict[str, dict[str, pd.DataFrame]], protocol: str) -> tuple[list[pd.DataFrame], list[str]]:
    """Every non-empty results frame of the protocol (cell and perturbation results belong to every protocol), and
    the gene-task partitions left out because another protocol, or none (results from before protocols were named),
    computed them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown evaluation protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}.")
    frames, left_out = [], []
    for name in sorted(results):
        for partition in sorted(results[name]):
            frame = results[name][partition]
            if not len(frame):
                continue
            if (
                name in RESULT_ASSETS
                and (frame["protocol"] if "protocol" in frame else pd.Series([None])).ne(protocol).any()
            ):
                left_out.append(f"{name}[{partition}]")
                continue
            frames.append(frame)
    return frames, left_out


@asset(
    group_name="leaderboard",
    ins={**{name: AssetIn(name) for name in LEADERBOARD_INPUTS}, "fine_tuning_results": AssetIn()},
    kinds={"pandas"},
    automation_condition=LEADERBOARD_CONDITION,
    check_specs=[
        AssetCheckSpec(
            "random_band_at_chance",
            asset="leaderboard",
            blocking=True,
            description="The random control's band mean is 0.45–0.55 AUC on every binary task with ≥ 100 genes.",
        ),
        AssetCheckSpec(
            "random_near_mean_signature",
            asset="leaderboard",
            blocking=True,
            description="On every perturbation task with ≥ 100 perturbations, the random control's band mean "
            "(primary metric) is within 0.02 of the mean-signature baseline.",
        ),
    ],
)
def leaderboard(
    context: AssetExecutionContext,
    config: LeaderboardConfig,
    fine_tuning_results: dict[str, pd.DataFrame],
    **results: dict[str, pd.DataFrame],
):
    """Backbones × tasks of one evaluation protocol on one gene universe per comparison: estimates, 95% CIs, paired significance against
    the best, per-family summaries, rank intervals per task and overall (P(first), indistinguishable groups), a heatmap, the leakage audit and the GO-vs-summary ablation; the
    cell-type section (cell embeddings × datasets, gains over the PCA and random baselines); the perturbation tasks
    in their own table beside the mean-signature baseline; study bias (each gene task on its least-studied third of
    genes) and content overlap (the gene-pair task without pairs whose texts name each other); fine-tuned vs frozen
    embedding where fine_tuning_results is materialized."""
    frames, left_out = protocol_frames(results, config.protocol)
    if not frames:
        raise ValueError(
            f"No task results of the {config.protocol!r} protocol are materialized yet: materialize at least "
            "one backbone partition with it first."
        )
    if left_out:
        context.log.warning(
            f"Left out, computed under another protocol than {config.protocol!r} (re-materialize them "
            f"with it): {', '.join(left_out)}"
        )
    summary = summarize(combine_results(frames)).assign(protocol=config.protocol)
    sections = build_sections(summary)
    leaks, ablation, table = sections.leaks, sections.go_minus_summary, sections.leaderboard
    band = random_band_at_chance(summary)
    near = random_near_mean_signature(summary)
    metadata = {
        "protocol": config.protocol,
        "left_out_other_protocol": MetadataValue.json(left_out),
        "partitions": summary.loc[summary["backbone"] != BASELINE, ["backbone", "view"]].drop_duplicates().shape[0],
        "leakage": MetadataValue.md(
            leaks[leaks["leaks"]].drop(columns="leaks").to_markdown(index=False) or "no shared sources"
        ),
        "go_minus_summary": MetadataValue.md(
            ablation.round(3).to_markdown(index=False) if len(ablation) else "needs the go and summary views"
        ),
        "comparisons": len(sections.comparisons),
        "rank_intervals": MetadataValue.md(markdown_table(sections.ranks_table, "needs two backbones on one task")),
        "universes": MetadataValue.json(
            summary[summary["primary"]].groupby(["universe", "task"])["n_genes"].max().unstack(0).to_dict()
        ),
        "cell_types_macro_f1": MetadataValue.md(markdown_table(sections.cell_types, "no cell-type results yet")),
        "cell_gains_macro_f1": MetadataValue.md(
            markdown_table(sections.cell_gains_table, "needs the PCA and random-gaussian baselines")
        ),
        "cell_gains_ari": MetadataValue.md(
            markdown_table(sections.cell_gains_ari_table, "needs the PCA and random-gaussian baselines")
        ),
        "cell_clustering_ari_ami_asw": MetadataValue.md(
            markdown_table(sections.cell_clustering, "no cell-type results yet")
        ),
        "batch_effect": MetadataValue.md(
            markdown_table(sections.batch_effect, "needs batch_effect_results (cell embeddings of both studies)")
        ),
        "tuning_gain_roc_auc": MetadataValue.md(
            markdown_table(sections.tuning.round(3), "needs the full protocol (logistic_regression_cv)")
        ),
        "perturbation": MetadataValue.md(markdown_table(sections.perturbation, "no perturbation results yet")),
        "study_bias": MetadataValue.md(
            markdown_table(sections.study_bias_table, "no gene-task results on a least-studied third yet")
        ),
        "content_overlap": MetadataValue.md(
            markdown_table(sections.content_overlap_table, "no gene-pair results without named pairs yet")
        ),
        "fine_tuning": MetadataValue.md(
            markdown_table(fine_tuning_table(fine_tuning_results).round(3), "fine_tuning_results is not materialized")
        ),
    }
    if len(table):
        metadata.update(
            {
                "leaderboard": MetadataValue.md(table.to_markdown(index=False)),
                "leaderboard_with_summary_only": MetadataValue.md(
                    sections.leaderboard_with_summary_only.to_markdown(index=False)
                ),
                "families": MetadataValue.md(sections.families.to_markdown(index=False)),
                "heatmap": MetadataValue.md(png_markdown(sections.heatmap)),
                "table": MetadataValue.table(
                    records=[TableRecord({k: str(v) for k, v in r.items()}) for r in table.to_dict("records")]
                ),
            }
        )
    yield Output(summary, metadata=metadata)
    yield AssetCheckResult(
        check_name="random_band_at_chance",
        passed=bool(band["at_chance"].all()),
        metadata={
            "tasks_checked": len(band),
            "off_chance": MetadataValue.md(band[~band["at_chance"]].round(3).to_markdown(index=False) or "none"),
        },
    )
    yield AssetCheckResult(
        check_name="random_near_mean_signature",
        passed=bool(near["near"].all()),
        metadata={
            "rows_checked": len(near),
            "checked": MetadataValue.md(near.round(3).to_markdown(index=False) or "none"),
        },
    )


def combine_results(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """All result rows; the mean-signature baseline, which every partition of a view scores identically, once."""
    combined = pd.concat(frames, ignore_index=True)
    return combined.drop_duplicates(subset=[*KEYS, "draw", "genes_digest"]).reset_index(drop=True)


def markdown_table(table: pd.DataFrame, empty: str) -> str:
    return table.to_markdown(index=False) if len(table) else empty
