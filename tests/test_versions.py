"""Code and data versions: Dagster's stale status and what `gene-assets run` launches agree, on a small real state
(200 genes of the small Geneformer tasks, bag-of-words on the summary view, the Geneformer results)."""

import ast
import os
import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, AssetsDefinition, DagsterInstance, Definitions
from dagster._core.definitions.data_version import StaleStatus

from gene_assets.automation.sensors import embedding_job
from gene_assets.definitions import (
    MODULES,
    all_asset_checks,
    assets_for,
    backbone_job,
    sources_job,
)
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.orchestration.partitions import register_backbones
from gene_assets.runs import Launch, PipelineRunner
from gene_assets.settings import PROJECT_ROOT
from gene_assets.staleness import Staleness
from gene_assets.storage import ParquetIOManager
from gene_assets.versions import SourceTree, code_versions

PARTITION = backbone_view_key("bag-of-words", "summary")
SOURCES = ("gene_catalog", "gene_summaries", "gene_texts", "gene_universes", "geneformer_labels")
CHEN = "gene_tasks/geneformer/chen2020_natcommun_41467_2020_16106_MOESM4_ESM.csv"


def launches(symbols, protocol="published") -> list[Launch]:
    """The launches `gene-assets run` makes for this state: sources, the embedding, the scoring."""
    texts = {"ops": {"gene_texts": {"config": {"views": ["summary"], "symbols": symbols}}}}
    scoring = {"ops": {"geneformer_results": {"config": {"protocol": protocol, "n_bootstrap": 200}}}}
    return [
        Launch("sources_job", None, texts, SOURCES),
        Launch("embedding_job", PARTITION),
        Launch("backbone_job", PARTITION, scoring, ("geneformer_results",)),
    ]


def definitions(root: Path, source: SourceTree | None = None) -> Definitions:
    """The project's assets (versioned from `source`) on the storage and data directory under `root`."""
    from gene_assets.resources import local_resources
    from gene_assets.sources.data_directory import DataDirectory

    resources = {
        **local_resources(),
        "io_manager": ParquetIOManager(base_dir=str(root / "storage")),
        "data_directory": DataDirectory(path=str(root / "data")),
    }
    return Definitions(
        assets=assets_for("local", source),
        asset_checks=all_asset_checks,
        jobs=[sources_job, embedding_job, backbone_job],
        resources=resources,
    )


def run(defs, instance, symbols) -> PipelineRunner:
    """`gene-assets run` on this state: each launch narrowed to what is stale or missing."""
    runner = PipelineRunner(defs, instance)
    for launch in launches(symbols):
        assert runner.run(launch), launch
    return runner


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, task_symbols, data_dir):
    """Everything of `launches` materialized once, into a directory each test copies (`state`)."""
    base = tmp_path_factory.mktemp("versions")
    shutil.copytree(data_dir, base / "state" / "data", ignore=shutil.ignore_patterns("single_cell"))
    current = base / "current"
    current.symlink_to(base / "state")
    (base / "state" / "dagster_home").mkdir()
    with DagsterInstance.local_temp(str(base / "state" / "dagster_home")) as instance:
        register_backbones(instance, ["bag-of-words"])
        runner = run(definitions(current), instance, task_symbols[:200])
        assert [launch.job_name for launch in runner.launches] == ["sources_job", "embedding_job", "backbone_job"]
    return {"base": base, "current": current, "symbols": task_symbols[:200]}


@pytest.fixture
def state(baseline, tmp_path):
    """A copy of the baseline at the path the stored metadata names (data and storage hard-linked: storage replaces
    a file whole, and the tests edit a data file by writing a new one)."""
    copy, base = tmp_path / "state", baseline["base"] / "state"
    for part in ("data", "storage"):
        shutil.copytree(base / part, copy / part, copy_function=os.link)
    shutil.copytree(base / "dagster_home", copy / "dagster_home")  # sqlite writes in place: a real copy
    current = baseline["current"]
    current.unlink()
    current.symlink_to(copy)
    with DagsterInstance.local_temp(str(copy / "dagster_home")) as instance:
        yield {"root": current, "instance": instance, "symbols": baseline["symbols"]}


def statuses(defs, instance, keys=("geneformer_labels", "gene_texts", "gene_embeddings", "geneformer_results")):
    """Dagster's own stale status of each asset partition."""
    staleness = Staleness(defs, instance)
    partitioned = {"gene_embeddings", "geneformer_results"}
    return {
        name: staleness.resolver.get_status(AssetKey(name), str(PARTITION) if name in partitioned else None)
        for name in keys
    }


def states(defs, instance, symbols, protocol="published"):
    """{asset: (status, causes)} as `gene-assets run` and `gene-assets status` see them, inputs observed."""
    from gene_assets.staleness import observe_inputs

    observe_inputs(instance, defs.resources)
    staleness = Staleness(defs, instance)
    config = {launch.job_name: launch.run_config for launch in launches(symbols, protocol)}
    found = {
        name: staleness.state(AssetKey(name), str(PARTITION), config[job])
        for name, job in [
            ("geneformer_labels", "sources_job"),
            ("gene_texts", "sources_job"),
            ("gene_embeddings", "embedding_job"),
            ("geneformer_results", "backbone_job"),
        ]
    }
    return {name: (state.status, state.causes) for name, state in found.items()}


def selections(runner) -> list[tuple[str, tuple]]:
    return [(launch.job_name, launch.selection) for launch in runner.launches]


def test_nothing_changed_nothing_runs_and_touch_changes_nothing(state):
    defs, instance = definitions(state["root"]), state["instance"]
    for path in (state["root"] / "data").rglob("*"):
        path.touch()  # new mtime, same bytes
    assert set(statuses(defs, instance).values()) == {StaleStatus.FRESH}
    runner = run(defs, instance, state["symbols"])
    assert runner.launches == [] and len(runner.skipped) == 3


def test_a_code_edit_stales_that_asset_only_and_same_bytes_stop_the_cascade(state, tmp_path):
    """An edit to the Chen 2020 label mapping changes the code version of geneformer_labels (and of the leaderboard,
    which loads the asset modules whole), no other; a comment changes none. geneformer_labels is stale and runs again;
    its output is byte-identical (the code that runs did not change), so the results stay fresh."""
    source = tmp_path / "source"
    shutil.copytree(PROJECT_ROOT / "gene_assets", source / "gene_assets", ignore=shutil.ignore_patterns("__pycache__"))
    geneformer = source / "gene_assets" / "tasks" / "geneformer.py"
    code, line = geneformer.read_text(), "    symbols = table.iloc[:, 0]\n"
    assert code.count(line) == 1
    unedited = code_versions(MODULES)

    def changed(text: str) -> set[str]:
        geneformer.write_text(text)
        edited = code_versions(MODULES, SourceTree(source))
        return {key.to_user_string() for key in edited if edited[key] != unedited[key]}

    assert changed(code.replace(line, line[:-1] + "  # the first column\n")) == set()
    # the leaderboard loads the asset modules whole (leaderboard/inputs.py), so any edit to them counts for it
    assert changed(code + "\nUNUSED = 1\n") == {"leaderboard"}
    assert changed(code.replace(line, "    symbols = table.iloc[:, 0].copy()\n")) == {
        "geneformer_labels",
        "leaderboard",
    }

    defs, instance = definitions(state["root"], SourceTree(source)), state["instance"]
    assert statuses(defs, instance) == {
        "geneformer_labels": StaleStatus.STALE,
        "gene_texts": StaleStatus.FRESH,
        "gene_embeddings": StaleStatus.FRESH,
        "geneformer_results": StaleStatus.FRESH,
    }
    found = states(defs, instance, state["symbols"])
    assert found["geneformer_labels"] == ("stale", ("code changed",))
    assert {name: status for name, (status, _) in found.items() if name != "geneformer_labels"} == {
        "gene_texts": "fresh",
        "gene_embeddings": "fresh",
        "geneformer_results": "fresh",
    }
    runner = run(defs, instance, state["symbols"])
    assert selections(runner) == [("sources_job", ("geneformer_labels",))]
    assert set(statuses(defs, instance).values()) == {StaleStatus.FRESH}


def test_an_input_file_edit_stales_its_reader_and_unchanged_labels_stop_there(state):
    """A row for a symbol no gene has, added to the Chen 2020 table: geneformer_labels (its only reader) is stale and
    parses it again; its labels are the same bytes, so nothing after it runs."""
    defs, instance = definitions(state["root"]), state["instance"]
    chen = state["root"] / "data" / CHEN
    table = chen.read_text()
    edited = table + "NOT_A_GENE" + "," * table.splitlines()[0].count(",") + "long-range TF\n"
    chen.unlink()  # a new file: the baseline's hard link stays as it was
    chen.write_text(edited)
    found = states(defs, instance, state["symbols"])
    assert found["geneformer_labels"] == ("stale", ("upstream data changed: data_directory/chen2020_tf_range",))
    assert statuses(defs, instance)["geneformer_labels"] == StaleStatus.STALE
    assert {found[name][0] for name in ("gene_texts", "gene_embeddings", "geneformer_results")} == {"fresh"}
    runner = run(defs, instance, state["symbols"])
    assert selections(runner) == [("sources_job", ("geneformer_labels",))]
    assert set(statuses(defs, instance).values()) == {StaleStatus.FRESH}


def test_a_byte_identical_rematerialization_keeps_downstream_fresh_and_a_deleted_file_is_missing(state):
    defs, instance = definitions(state["root"]), state["instance"]
    forced = PipelineRunner(defs, instance, force=True)
    assert forced.run(Launch("sources_job", None, None, ("geneformer_labels",)))
    assert statuses(defs, instance)["geneformer_results"] == StaleStatus.FRESH
    assert run(defs, instance, state["symbols"]).launches == []

    stored = state["root"] / "storage" / "geneformer_results" / "backbone=bag-of-words" / "view=summary.parquet"
    stored.unlink()
    assert states(defs, instance, state["symbols"])["geneformer_results"] == (
        "missing",
        (f"stored file deleted: {stored}",),
    )
    runner = run(defs, instance, state["symbols"])
    assert selections(runner) == [("backbone_job", ("geneformer_results",))] and stored.is_file()


def test_switching_the_protocol_stales_the_gene_task_results(state):
    """The protocol is output settings, not code or data: Dagster's own status stays fresh (the UI shows no change);
    `gene-assets status` and `run` call the results stale with the changed field, and re-run them."""
    defs, instance = definitions(state["root"]), state["instance"]
    found = states(defs, instance, state["symbols"], protocol="full")
    assert found["geneformer_results"] == ("stale", ('config changed: config.protocol: "published" → "full"',))
    assert statuses(defs, instance)["geneformer_results"] == StaleStatus.FRESH
    runner = PipelineRunner(defs, instance)
    scoring = launches(state["symbols"], "full")[-1]
    assert runner.pending(scoring) == scoring  # the whole scoring run, no more
    assert [runner.pending(launch) for launch in launches(state["symbols"])[:2]] == [None, None]


def test_every_asset_that_reads_the_data_directory_depends_on_the_files_it_reads():
    """An asset given the data_directory resource is listed in DATA_FILE_READERS (so the files it reads are its
    observed dependencies), the files listed for it are named in its code, and every data file has a reader."""
    from gene_assets.definitions import all_assets
    from gene_assets.sources.data_directory import DATA_FILES
    from gene_assets.sources.observations import DATA_FILE_READERS, data_file_key
    from gene_assets.versions import asset_bindings

    readers = {
        key.to_user_string()
        for a in all_assets
        if isinstance(a, AssetsDefinition) and a.is_materializable and "data_directory" in a.required_resource_keys
        for key in a.keys
    }
    assert readers == set(DATA_FILE_READERS)
    tree, bindings = SourceTree(), asset_bindings(MODULES)
    for name, files in DATA_FILE_READERS.items():
        statements, _ = tree.needed(*bindings[AssetKey(name)])
        strings = " ".join(
            node.value
            for statement in statements.values()
            for node in ast.walk(statement)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        )
        assert all(file in strings or file.startswith("ggi_") for file in files), name
        parents = next(a for a in all_assets if hasattr(a, "op") and AssetKey(name) in a.keys).asset_deps[
            AssetKey(name)
        ]
        assert {data_file_key(file) for file in files} <= set(parents), name
    assert {file for files in DATA_FILE_READERS.values() for file in files} == set(DATA_FILES)


def test_stored_code_versions_are_read_only_for_the_exact_source_they_came_from(tmp_path):
    """A second tree on the same source reads the versions the first stored (parsing nothing) and they are the
    computed ones; an edit, or an unreadable store, makes the next tree compute again."""
    source = tmp_path / "source"
    shutil.copytree(PROJECT_ROOT / "gene_assets", source / "gene_assets", ignore=shutil.ignore_patterns("__pycache__"))
    computed = code_versions(MODULES, SourceTree(source))
    store = source / "gene_assets" / "__pycache__" / "code_versions.json"
    assert store.is_file()

    reader = SourceTree(source)
    assert code_versions(MODULES, reader) == computed and reader._parsed == {}

    geneformer = source / "gene_assets" / "tasks" / "geneformer.py"
    line = "    symbols = table.iloc[:, 0]\n"
    geneformer.write_text(geneformer.read_text().replace(line, "    symbols = table.iloc[:, 0].copy()\n"))
    edited = SourceTree(source)
    after_edit = code_versions(MODULES, edited)
    assert edited._parsed != {} and after_edit[AssetKey("geneformer_labels")] != computed[AssetKey("geneformer_labels")]
    assert after_edit[AssetKey("gene_embeddings")] == computed[AssetKey("gene_embeddings")]

    store.write_text("{not json")
    assert code_versions(MODULES, SourceTree(source)) == after_edit
