"""leaderboard: aggregates every available gene_task_results partition."""


import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, TableRecord, asset

from .report import chart_png, png_markdown, summarize, wide_table


@asset(group_name="leaderboard", ins={"gene_task_results": AssetIn()}, compute_kind="pandas")
def leaderboard(context: AssetExecutionContext, gene_task_results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Backbones × tasks: mean ± SD ROC-AUC over folds, as a table and a chart."""
    if not gene_task_results:
        raise ValueError("No gene_task_results partition is materialized yet: materialize at least one backbone first.")
    summary = summarize(pd.concat(gene_task_results.values(), ignore_index=True))
    table = wide_table(summary)
    context.add_output_metadata(
        {
            "partitions": len(gene_task_results),
            "leaderboard": MetadataValue.md(table.to_markdown(index=False)),
            "chart": MetadataValue.md(png_markdown(chart_png(summary))),
            "table": MetadataValue.table(
                records=[TableRecord({k: str(v) for k, v in r.items()}) for r in table.to_dict("records")]
            ),
        }
    )
    return summary
