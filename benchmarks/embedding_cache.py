"""Embedding cache: gene_embeddings re-materialized cold (empty cache), unchanged (warm) and with 1% of texts changed."""

from __future__ import annotations

import hashlib
import os
import tempfile
from unittest import mock

import pandas as pd
from dagster import DagsterInstance, build_asset_context

from gene_assets.embeddings.assets import GeneEmbeddingsConfig, gene_embeddings
from gene_assets.embeddings.calibration import summary_texts
from gene_assets.embeddings.device import EmbeddingDevice
from gene_assets.embeddings.encoders import load_encoder
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.embeddings.registry import get_backbone
from gene_assets.settings import EMBEDDING_CACHE_ENV as CACHE_DIR_ENV

from .harness import Row, median, stopwatch

BACKBONE = "all-MiniLM-L6-v2"
TEXTS = 2000
CHANGED = TEXTS // 100
REPEATS = 3


def with_changed_texts(texts: pd.DataFrame, count: int) -> pd.DataFrame:
    changed = texts.copy()
    rows = changed.sample(count, random_state=1).index
    changed.loc[rows, "text"] = changed.loc[rows, "text"] + " This summary was revised."
    changed.loc[rows, "text_sha256"] = [
        hashlib.sha256(t.encode("utf-8")).hexdigest() for t in changed.loc[rows, "text"]
    ]
    return changed


def embedding_cache() -> list[Row]:
    texts = summary_texts(TEXTS)
    changed = with_changed_texts(texts, CHANGED)
    device = EmbeddingDevice(device="cpu")
    backbone = get_backbone(BACKBONE)
    load_encoder(backbone, device.placement(backbone))  # loaded (and calibrated) outside the timings
    embedded: dict[str, int] = {}

    with DagsterInstance.ephemeral() as instance, tempfile.TemporaryDirectory() as scratch:
        instance.add_dynamic_partitions("backbone", [BACKBONE])

        def materialize(name: str, gene_texts: pd.DataFrame):
            def run():
                context = build_asset_context(
                    partition_key=backbone_view_key(BACKBONE, "summary"),
                    instance=instance,
                    resources={"embedding_device": device},
                )
                output, _check = list(
                    gene_embeddings(
                        context, config=GeneEmbeddingsConfig(), gene_texts=gene_texts, gene_catalog=pd.DataFrame()
                    )
                )
                embedded[name] = output.metadata["texts_embedded"].value

            return run

        seconds: dict[str, list[float]] = {"cold": [], "unchanged": [], "changed": []}
        for repeat in range(REPEATS):  # each repeat: a fresh cache, filled cold, then re-read, then 1% changed
            with mock.patch.dict(os.environ, {CACHE_DIR_ENV: os.path.join(scratch, f"cache{repeat}")}):
                for name, gene_texts in (("cold", texts), ("unchanged", texts), ("changed", changed)):
                    seconds[name].append(stopwatch(materialize(name, gene_texts)))

    cold = median(seconds["cold"])
    comparison = f"gene_embeddings re-materialization, {TEXTS:,} summaries, {BACKBONE}"
    rows = []
    for name, case in (
        ("unchanged", "unchanged texts (warm cache) vs empty cache"),
        ("changed", f"{CHANGED} texts (1%) changed vs empty cache"),
    ):
        value = median(seconds[name])
        rows.append(
            Row(
                comparison=comparison,
                case=case,
                unit="seconds",
                baseline=cold,
                project=value,
                speedup=cold / value,
                detail=f"{value / cold:.1%} of cold time; texts embedded {embedded[name]} (cold {embedded['cold']}); "
                f"model loaded before timing; median of {REPEATS}",
            )
        )
    return rows
