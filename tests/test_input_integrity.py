"""Inputs that used to be silently wrong: stale files called up to date, identifiers that map to nothing."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, Definitions

from gene_assets.embeddings.discovered import REGISTRY_ENV, DiscoveredRegistry
from gene_assets.embeddings.registry import Backbone

from .conftest import planted_inputs


@pytest.fixture
def registry(tmp_path, monkeypatch) -> DiscoveredRegistry:
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "discovered.json"))
    return DiscoveredRegistry()


def word2vec(path: Path, symbols: list[str], offset: float) -> None:
    path.write_text("".join(f"{s} {offset + i} {offset + 1.5} {offset + 2.25}\n" for i, s in enumerate(symbols)))


def edit_in_place_keeping_size_and_mtime(path: Path, content: str) -> None:
    stat = path.stat()
    assert len(content.encode()) == stat.st_size
    path.write_text(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_backbone_file_edited_in_place_is_not_up_to_date(tmp_path, registry):
    """A precomputed file rewritten with the same size and its old mtime: the next run embeds again and stores the
    new vectors. A local model directory's files count the same way."""
    from gene_assets.automation.sensors import embedding_job
    from gene_assets.cli import register_backbones
    from gene_assets.definitions import all_asset_checks, all_assets
    from gene_assets.resources import local_resources
    from gene_assets.runs import fingerprint
    from gene_assets.runs import PipelineRunner
    from gene_assets.storage import ParquetIOManager

    planted_inputs(tmp_path / "storage")
    source = tmp_path / "published.txt"
    symbols = [f"G{i}" for i in range(1, 241)]
    word2vec(source, symbols, 1.0)
    model_dir = tmp_path / "local-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"hidden_size": 3}')
    registry.add([Backbone(name="published", kind="precomputed", dims=3, source_path=str(source), origin="manual"),
                  Backbone(name="local-model", kind="sentence_transformers", dims=3, model_id=str(model_dir), origin="manual")])
    resources = {**local_resources(), "io_manager": ParquetIOManager(base_dir=str(tmp_path / "storage"))}
    defs = Definitions(assets=all_assets, asset_checks=all_asset_checks, jobs=[embedding_job], resources=resources)
    stored = tmp_path / "storage" / "gene_embeddings" / "backbone=published" / "view=summary.parquet"
    with DagsterInstance.ephemeral() as instance:
        register_backbones(instance, ["published", "local-model"])
        runner = PipelineRunner(defs, instance)
        assert runner.execute("embedding_job", "published|summary") and runner.launched == 1
        assert runner.execute("embedding_job", "published|summary") and runner.skipped == ["embedding_job published|summary"]
        first = np.stack(pd.read_parquet(stored)["embedding"])
        edited = source.read_text().replace("2.5 3.25\n", "2.7 3.05\n")
        edit_in_place_keeping_size_and_mtime(source, edited)
        assert runner.execute("embedding_job", "published|summary") and runner.launched == 2
        second = np.stack(pd.read_parquet(stored)["embedding"])
        assert first.shape == second.shape and not np.array_equal(first, second)
        assert np.allclose(second[:, 1:], [2.7, 3.05])

        graph = defs.resolve_asset_graph()
        keys = set(defs.resolve_job_def("embedding_job").asset_layer.executable_asset_keys)

        def digest():
            return fingerprint(instance, graph, keys, "local-model|summary", None, [], resources)

        before = digest()
        edit_in_place_keeping_size_and_mtime(model_dir / "config.json", '{"hidden_size": 4}')
        assert digest() != before
