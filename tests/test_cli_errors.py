"""Misuse of the command line gets one line naming the thing and what to do, exit status 2, and changes nothing:
unknown partition keys, config typos, out-of-range numbers, an unusable GENE_ASSETS_HOME, a malformed MANIFEST.json."""

import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from gene_assets.embeddings.partitions import backbone_partitions
from gene_assets.settings import DISCOVERED_REGISTRY_ENV as REGISTRY_ENV

BIN = Path(sys.executable).parent


@pytest.fixture
def cli_env(tmp_path, monkeypatch) -> Path:
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("GENE_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "discovered.json"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.txt").write_text("G1 1 2 3\n")
    return tmp_path


CASES = {
    "partition_not_a_key": (
        ["materialize", "gene_embeddings", "--partition", "bogus"],
        r"partition 'bogus' is not a backbone \| view key: give BACKBONE\|VIEW, e\.g\. 'bag-of-words\|summary'",
    ),
    "partition_unknown_view": (
        ["materialize", "gene_embeddings", "--partition", "bag-of-words|sumary"],
        r"'sumary' is not a text view; views: symbol, summary, card, go\.",
    ),
    "partition_unknown_backbone": (
        ["materialize", "gene_embeddings", "--partition", "nope|summary"],
        r"Unknown backbone 'nope'\. Registered backbones: all-MiniLM-L6-v2",
    ),
    "config_typo": (
        ["materialize", "gene_texts", "--config-json", '{"ops": {"gene_texts": {"config": {"viewz": ["go"]}}}}'],
        r"--config-json: gene_texts has no config field 'viewz'; its fields: views, gene_types, symbols\.",
    ),
    "config_out_of_range": (
        [
            "materialize",
            "cell_datasets",
            "--dataset",
            "pbmc3k",
            "--config-json",
            '{"ops": {"cell_datasets": {"config": {"max_cells": 0}}}}',
        ],
        r"--config-json: cell_datasets config max_cells: Input should be greater than or equal to 1 \(got 0\)",
    ),
    "config_not_an_asset": (
        ["materialize", "gene_texts", "--config-json", '{"ops": {"gene_textz": {"config": {}}}}'],
        r"--config-json configures 'gene_textz', which is not an asset; assets: batch_effect_results, cell_baseline_results",
    ),
    "dims_zero": (
        ["add-backbone", "x", "--kind", "precomputed", "--dims", "0", "--source-path", "v.txt"],
        r"gene-assets add-backbone: argument --dims: expected a whole number of 1 or more, got 0 \(see",
    ),
    "max_length_negative": (
        [
            "add-backbone",
            "x",
            "--kind",
            "sentence_transformers",
            "--dims",
            "3",
            "--model-id",
            "a/b",
            "--max-length",
            "-1",
        ],
        r"argument --max-length: expected a whole number of 1 or more, got -1",
    ),
    "max_cells_zero": (
        ["run", "--max-cells", "0"],
        r"gene-assets run: argument --max-cells: expected a whole number of 1",
    ),
    "cell_h5ad_missing": (
        ["run", "--cell-h5ad", "mine", "missing.h5ad", "cell_type"],
        r"gene-assets: run: --cell-h5ad mine: .*missing\.h5ad does not exist; give the path of an \.h5ad",
    ),
    "cell_h5ad_bad_name": (
        ["run", "--cell-h5ad", "my/cells", "v.txt", "cell_type"],
        r"gene-assets: run: --cell-h5ad name 'my/cells' is not a valid dataset name",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_misuse_is_one_line_exit_2_and_registers_nothing(cli_env, capsys, case):
    import re

    from gene_assets.cli import main

    args, message = CASES[case]
    try:
        status = main(args)
    except SystemExit as exc:  # argparse, when the argument is given
        status = exc.code
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and error.startswith("gene-assets"), error
    assert re.search(message, error), error
    assert not (cli_env / "discovered.json").exists() and not (cli_env / "home" / "storage").exists()
    with DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions(backbone_partitions.name) == []
        assert not instance.get_runs()


def test_a_backbone_entry_with_out_of_range_numbers_is_refused():
    from gene_assets.embeddings.backbone import Backbone, InvalidBackboneError

    for fields in ({"dims": 0}, {"dims": 3, "max_length": 0}, {"dims": -2}):
        with pytest.raises(
            InvalidBackboneError, match=r"Backbone 'x': (dims|max_length) must be a whole number of 1 or more"
        ):
            Backbone(name="x", kind="random", **fields)


@pytest.mark.parametrize("home", ["a_file", "under_a_file"])
def test_an_unusable_gene_assets_home_is_one_line_before_anything_runs(tmp_path, home):
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "a_file").write_text("not a directory\n")
    path = tmp_path / "a_file" if home == "a_file" else tmp_path / "a_file" / "home"
    env = {
        "PATH": str(BIN),
        "HOME": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "GENE_ASSETS_HOME": str(path),
        REGISTRY_ENV: str(tmp_path / "discovered.json"),
    }
    result = subprocess.run(
        [str(BIN / "gene-assets"), "leaderboard"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    problem = "is not a directory" if home == "a_file" else r"cannot be used \(Not a directory\)"
    import re

    assert re.search(
        rf"gene-assets: GENE_ASSETS_HOME={path} {problem}: it holds the caches .* Point GENE_ASSETS_HOME at a "
        "writable directory",
        result.stderr,
    ), result.stderr
    assert (tmp_path / "a_file").read_text() == "not a directory\n" and not list((tmp_path / "dagster_home").iterdir())


@pytest.mark.slow
def test_a_view_whose_texts_are_not_stored_is_refused_with_the_command_that_adds_it(tmp_path):
    """The docs' `materialize gene_embeddings geneformer_results --backbone bag-of-words --view go` after a run
    that built only the summary view: refused before any run, with the command that adds the view."""
    import json
    import re

    from dagster import Definitions

    from gene_assets.orchestration.materialize import require_view_texts
    from gene_assets.storage import ParquetIOManager

    from .conftest import planted_inputs

    planted_inputs(tmp_path / "home" / "storage")
    (tmp_path / "dagster_home").mkdir()
    env = {
        "PATH": str(BIN),
        "HOME": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "GENE_ASSETS_HOME": str(tmp_path / "home"),
        REGISTRY_ENV: str(tmp_path / "discovered.json"),
    }
    result = subprocess.run(
        [
            str(BIN / "gene-assets"),
            "materialize",
            "gene_embeddings",
            "geneformer_results",
            "--backbone",
            "bag-of-words",
            "--view",
            "go",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    match = re.search(
        r"gene-assets: materialize: the stored gene_texts holds the views summary, not 'go'\. Add it "
        r"first: gene-assets materialize gene_texts --config-json '(.*)'$",
        result.stderr.strip(),
    )
    assert match, result.stderr
    assert json.loads(match.group(1)) == {"ops": {"gene_texts": {"config": {"views": ["summary", "go"]}}}}
    assert not (tmp_path / "home" / "storage" / "gene_embeddings").exists()
    defs = Definitions(resources={"io_manager": ParquetIOManager(base_dir=str(tmp_path / "home" / "storage"))})
    with DagsterInstance.ephemeral() as instance:
        require_view_texts(defs, instance, "summary")  # a stored view goes ahead
