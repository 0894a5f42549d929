"""Everything the project did not write in this run is checked where it crosses in: settings, precomputed files,
local state files, stored outputs, git history, names, consumers' directories and re-read input files. Each case
asserts the one-line message, the exit status (or the project's error type) and that nothing was lost or changed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gene_assets.release.dvc_repository import DvcReleaseRepository
from gene_assets.settings import DISCOVERED_REGISTRY_ENV, DVC_REMOTE_ENV, resolve_settings

from .conftest import git

BIN = Path(sys.executable).parent


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_relative_dvc_remote_is_taken_from_the_starting_directory(release_repo, tmp_path, monkeypatch):
    """GENE_ASSETS_DVC_REMOTE=remote, started in `work`: the release checks and pushes to work/remote, never to a
    `remote` inside the release repository."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(DVC_REMOTE_ENV, "remote")
    (work / "remote").mkdir()
    resolve_settings()
    assert os.environ[DVC_REMOTE_ENV] == str(work / "remote")
    from gene_assets.resources import local_resources

    repository = local_resources()["release_repository"].model_copy(update={"repo_dir": str(release_repo)})
    release = repository.publish({"a.csv": b"1"}, {})
    assert release.remote_url == str(work / "remote") and list((work / "remote").rglob("*"))
    assert not (release_repo / "remote").exists()
    assert DvcReleaseRepository(repo_dir=str(release_repo)).push_remote()[1] == str(work / "remote")
    assert git(release_repo, "status", "--porcelain").strip() == ""


def test_a_remembered_precision_the_evidence_excludes_is_recalibrated(tmp_path, capsys):
    """The decisions file edited to int8 (its task evidence moves a metric by 0.0174) or fp16 (not allowed): neither
    is used; the backbone is decided again, saying why, and the file holds the new decision. A file of the wrong
    shape is one error naming it."""
    import dataclasses
    import json

    from gene_assets.embeddings.calibration import DecisionsFileError, DecisionStore, machine_fingerprint
    from gene_assets.embeddings.device import EmbeddingDevice
    from gene_assets.embeddings.registry import get_backbone

    minilm = get_backbone("all-MiniLM-L6-v2")
    backbone = dataclasses.replace(minilm, fast_path=dataclasses.replace(minilm.fast_path, precisions=("fp32", "int8")))
    path = tmp_path / "decisions.json"
    device = EmbeddingDevice(device="cpu", decisions_path=str(path))
    assert device.placement(backbone).precision == "fp32"
    key = DecisionStore.key(machine_fingerprint(), backbone)
    honest = json.loads(path.read_text())
    assert list(honest) == [key] and honest[key]["precision"] == "fp32"
    capsys.readouterr()
    for edited, why in (
        ("int8", r"int8 is excluded: gene-task primary metrics move by 0\.0174 > 0\.005"),
        ("fp16", r"'fp16' is not one of its allowed precisions fp32, int8"),
    ):
        path.write_text(json.dumps({key: {**honest[key], "precision": edited}}))
        placement = device.placement(backbone)
        assert placement.precision == "fp32" and placement.decision["remembered"] is False
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.fullmatch(
            rf"{path}: the remembered precision decision for all-MiniLM-L6-v2 is not used \({why}\); calibrating "
            r"again\.\n",
            err,
        ), err
        assert json.loads(path.read_text())[key]["precision"] == "fp32"
    path.write_text("[]")
    with pytest.raises(DecisionsFileError, match=rf"{path} holds a JSON list, not a precision-decisions file"):
        device.placement(backbone)
    assert path.read_text() == "[]"


@pytest.mark.slow
def test_a_quantized_model_without_a_readable_checksum_list_is_rebuilt(tmp_path, monkeypatch, capsys):
    """A quantized model directory whose sha256.json is not JSON: built again in place, saying so, and verified; no
    manual `rm` needed. (A missing sha256.json, an interrupted build, takes the same branch: readable_record is None;
    each case costs a quantization, so one is built here.)"""
    import shutil

    from gene_assets.embeddings.openvino_int8 import RECORD, quantized_model_dir, quantized_model_record
    from gene_assets.embeddings.registry import get_backbone
    from gene_assets.embeddings.weights import model_cache_dir
    from gene_assets.settings import HOME_ENV
    from gene_assets.storage import sha256_file

    minilm = get_backbone("all-MiniLM-L6-v2")
    quantized_model_record(minilm)  # built once per machine in the project home, with the fp32 weights it needs
    source = model_cache_dir() / minilm.name
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    shutil.copytree(source, model_cache_dir() / minilm.name)
    target = quantized_model_dir(minilm)
    (target / RECORD).write_text('{"sha256": ')
    capsys.readouterr()
    rebuilt = quantized_model_record(minilm)
    assert capsys.readouterr().err.startswith(f"{target}: the quantized model of all-MiniLM-L6-v2 has no readable")
    assert rebuilt["sha256"] == {name: sha256_file(target / name) for name in ("model.xml", "model.bin")}
    assert quantized_model_record(minilm) == rebuilt and not list(target.parent.glob(".*"))


@pytest.mark.slow
def test_a_release_never_drops_a_released_file_unless_named_and_an_unchecked_output_is_refused(release_repo, tmp_path):
    """One table of the release is gone: the release is refused before anything changes and names the file and the
    flag; with `drop` naming it, it is left out. A stored output whose sha256 was deleted is refused on read; the
    command the message gives re-hashes it."""
    import pandas as pd
    from dagster import build_input_context, build_output_context

    from gene_assets.release.dvc_repository import ReleaseError
    from gene_assets.storage import ParquetIOManager, StoredOutputError

    repository = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"))
    full = {"embeddings/a__summary.parquet": b"a", "embeddings/b__summary.parquet": b"b", "leaderboard.csv": b"x\n"}
    repository.publish(full, {})
    before = (files_under(release_repo / "data"), git(release_repo, "rev-parse", "HEAD"), repository.versions())
    fewer = {name: content for name, content in full.items() if name != "embeddings/b__summary.parquet"}
    with pytest.raises(
        ReleaseError,
        match=r"^This release would drop 1 files of embeddings-v1 \(embeddings/b__summary\.parquet\): .* "
        r"`gene-assets release --drop embeddings/b__summary\.parquet`\. Nothing was changed\.$",
    ):
        repository.publish(fewer, {})
    assert (files_under(release_repo / "data"), git(release_repo, "rev-parse", "HEAD"), repository.versions()) == before
    with pytest.raises(ReleaseError, match=r"--drop leaderboard\.csv: not a file embeddings-v1 has"):
        repository.publish(fewer, {}, drop=("embeddings/b__summary.parquet", "leaderboard.csv"))
    assert repository.publish(fewer, {}, drop=("embeddings/b__summary.parquet",)).version == "embeddings-v2"
    assert not (release_repo / "data" / "embeddings" / "b__summary.parquet").exists()

    manager = ParquetIOManager(base_dir=str(tmp_path / "storage"))
    frame = pd.DataFrame({"entrez_id": [1, 2], "symbol": ["A1BG", "A2M"]})
    manager.handle_output(build_output_context(asset_key="gene_catalog"), frame)
    stored = tmp_path / "storage" / "gene_catalog.parquet"
    Path(f"{stored}.sha256").unlink()
    with pytest.raises(StoredOutputError) as refused:
        manager.load_input(build_input_context(asset_key="gene_catalog"))
    message = str(refused.value)
    assert re.match(rf"Stored output of gene_catalog \({stored}\) has no sha256 beside it .* nothing was read", message)
    assert f"rm -f {stored} {stored}.sha256 && gene-assets materialize gene_catalog" in message
    rehash = re.search(r"Or, if you trust it: (cd .*)$", message).group(1)
    subprocess.run(["bash", "-c", rehash], check=True)
    assert manager.load_input(build_input_context(asset_key="gene_catalog")).equals(frame)


@pytest.mark.slow
def test_a_reverted_or_reset_release_keeps_its_number_and_every_other_version_readable(release_repo, tmp_path):
    """Release v1 and v2, `git revert` v2 and delete its tag, release new content: it is v3 (v2 is never handed out
    again). Then `git reset --hard` v3 away with its tag: the next is v4; amend its commit: v1 and v4 still list,
    pull and verify. An index edited by hand is refused before anything changes, saying how to restore it."""
    from gene_assets.release.dvc_repository import ReleaseError, ReleaseHistory, pull_release, verify_release

    remote = tmp_path / "remote"
    repository = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(remote))
    repository.publish({"a.csv": b"1"}, {})
    repository.publish({"a.csv": b"2"}, {})
    git(release_repo, "revert", "--no-edit", "HEAD")
    git(release_repo, "tag", "-d", "embeddings-v2")
    assert repository.publish({"a.csv": b"3"}, {}).version == "embeddings-v3"
    git(release_repo, "reset", "--hard", "HEAD~1")
    git(release_repo, "tag", "-d", "embeddings-v3")
    assert repository.publish({"a.csv": b"4"}, {}).version == "embeddings-v4"
    git(release_repo, "commit", "--amend", "-qm", "Release gene embeddings embeddings-v4, reworded")
    with ReleaseHistory.of(str(release_repo)) as history:
        assert [r.version for r in history.records()] == ["embeddings-v1", "embeddings-v4"]
    for version, content in (("embeddings-v1", "1"), ("embeddings-v4", "4")):
        out, manifest, _ = pull_release(str(release_repo), version, tmp_path / version, remote=str(remote))
        assert manifest["version"] == version and (out / "a.csv").read_text() == content
    assert verify_release(release_repo / "data", str(release_repo))["version"] == "embeddings-v4"

    index = (release_repo / "releases.json").read_text()
    (release_repo / "releases.json").write_text(index.replace('"data_md5": "', '"data_md5": "0', 1))
    git(release_repo, "commit", "-qam", "edit the index")
    before = (files_under(release_repo / "data"), git(release_repo, "rev-parse", "HEAD"), repository.versions())
    with pytest.raises(
        ReleaseError,
        match=r"the release index lists embeddings-v1 with data\.dvc md5 0.*edited by hand\. Nothing was changed: "
        r"restore releases\.json from the last release commit",
    ):
        repository.publish({"a.csv": b"5"}, {})
    assert (files_under(release_repo / "data"), git(release_repo, "rev-parse", "HEAD"), repository.versions()) == before


def test_names_are_matched_whole_and_a_release_refuses_symlinks_and_empty_directories(
    release_repo, tmp_path, monkeypatch, capsys
):
    """A backbone or dataset name with a trailing newline or a tab is refused (one line, exit 2, nothing
    registered); a listed release file replaced by a symlink to an identical copy, or an empty directory of the
    user's in data/, is refused by the next release (and kept), and `verify` refuses the symlink."""
    import shutil

    from gene_assets.cli import main
    from gene_assets.embeddings.backbone import Backbone, InvalidBackboneError
    from gene_assets.release.dvc_repository import ReleaseError, verify_release

    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("GENE_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(DISCOVERED_REGISTRY_ENV, str(tmp_path / "discovered.json"))
    (tmp_path / "v.txt").write_text("TP53 1 2 3\n")
    for args, message in (
        (
            [
                "add-backbone",
                "mine\n",
                "--kind",
                "precomputed",
                "--dims",
                "3",
                "--source-path",
                str(tmp_path / "v.txt"),
            ],
            r"Backbone name 'mine\\n' is not a valid partition key",
        ),
        (["materialize", "cell_datasets", "--dataset", "pbmc3k\n"], r"'pbmc3k\\n' is not a valid cell_dataset name"),
        (["run", "--cell-h5ad", "mine\n", str(tmp_path / "v.txt"), "cell_type"], r"name 'mine\\n' is not a valid"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err), err
    with pytest.raises(InvalidBackboneError):
        Backbone(name="x\n", kind="random", dims=3)
    assert not (tmp_path / "discovered.json").exists() and not (tmp_path / "home" / "storage").exists()

    repository = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"))
    repository.publish({"a.csv": b"1", "b.csv": b"2"}, {})
    data = release_repo / "data"
    shutil.copy(data / "a.csv", tmp_path / "my_copy.csv")
    (data / "a.csv").unlink()
    (data / "a.csv").symlink_to(tmp_path / "my_copy.csv")
    (data / "mine").mkdir()
    with pytest.raises(ReleaseError, match=r"holds 2 files that are not part of release embeddings-v1: a\.csv@, mine/"):
        repository.publish({"a.csv": b"1", "b.csv": b"3"}, {})
    assert (data / "a.csv").is_symlink() and (data / "mine").is_dir() and repository.versions() == ["embeddings-v1"]
    with pytest.raises(ReleaseError, match=r"1 entries are symlinks \(a\.csv\); a release holds only regular files"):
        verify_release(data, str(release_repo))


def test_consumers_leave_nothing_in_their_directory_and_the_committed_dvc_config_has_no_relative_path(
    release_repo, tmp_path, monkeypatch
):
    """`gene-assets pull`, `dvc get` and `dvc.api.read` of a release, run in a consumer's directory that holds the
    release repository: nothing appears there but what was asked for, and later pulls still work."""
    import dvc.api

    from gene_assets.release.dvc_repository import dvc_remotes, pull_release
    from gene_assets.settings import PROJECT_ROOT

    consumer = tmp_path
    remote = tmp_path.parent / f"{tmp_path.name}-remote"
    DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(remote)).publish({"a.csv": b"1"}, {})
    committed = git(release_repo, "show", "embeddings-v1:.dvc/config")
    assert "site_cache_dir" not in committed and dvc_remotes(committed)[1] == {}
    assert "site_cache_dir" not in (PROJECT_ROOT / ".dvc" / "config").read_text()
    monkeypatch.chdir(consumer)
    monkeypatch.setenv(DVC_REMOTE_ENV, str(remote))
    before = sorted(p.name for p in consumer.iterdir())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dvc",
            "get",
            str(release_repo),
            "data/a.csv",
            "--rev",
            "embeddings-v1",
            "-o",
            "got.csv",
            "--config",
            str(release_repo / ".dvc" / "config.local"),
        ],
        check=True,
        capture_output=True,
    )
    assert (
        dvc.api.read("data/a.csv", repo=str(release_repo), rev="embeddings-v1", remote_config={"url": str(remote)})
        == "1"
    )
    for attempt in ("first", "second"):
        out, manifest, _ = pull_release(str(release_repo), "embeddings-v1", consumer / attempt)
        assert (out / "a.csv").read_text() == "1"
    assert sorted(p.name for p in consumer.iterdir()) == sorted([*before, "got.csv", "first", "second"])


@pytest.mark.slow
def test_a_cell_dataset_file_replaced_after_cell_datasets_ran_is_refused_where_it_is_re_read(tmp_path):
    """The h5ad replaced at the same path by the same cells in another order: `gene-assets materialize` of the step
    that takes its rows by the stored positions (the expression baseline) fails, its last line naming the file and
    the command that re-reads it, and stores nothing; once the file is read again the step runs."""
    import anndata
    from dagster import DagsterInstance

    from gene_assets.settings import PROJECT_ROOT

    from .conftest import planted_inputs
    from .test_bad_input import run, stored_files, write_cells

    storage, h5ad = tmp_path / "home" / "storage", tmp_path / "cells.h5ad"
    planted_inputs(storage)
    write_cells(h5ad)
    config = {"h5ad_path": str(h5ad), "label_key": "my_type", "min_class_cells": 5}
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("cell_dataset", ["toy"])
        run(storage, "cell_datasets", instance=instance, partition_key="toy", config=config)
    anndata.read_h5ad(h5ad)[::-1].copy().write_h5ad(h5ad)
    before = stored_files(storage)
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("")
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "GENE_ASSETS_HOME": str(tmp_path / "home"),
    }
    refused = subprocess.run(
        [str(BIN / "gene-assets"), "materialize", "cell_baseline_results", "--dataset", "toy"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 1 and re.fullmatch(
        rf"gene-assets: materialize failed: Cell dataset 'toy': {h5ad} is not the file cell_datasets read \(recorded "
        r"sha256 \w{12}…, the file now has \w{12}…\); its stored cells are row positions in that file, so nothing was "
        r"computed from it\. Re-read it first: gene-assets materialize cell_datasets --dataset toy --config-json "
        r"'\{\"ops\": \{\"cell_datasets\": \{\"config\": \{\"h5ad_path\": \".*cells\.h5ad\", \"label_key\": \"my_type\"\}\}\}\}'",
        last,
    ), refused.stderr[-3000:]
    assert stored_files(storage) == before
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("cell_dataset", ["toy"])
        run(storage, "cell_datasets", instance=instance, partition_key="toy", config=config)
        assert run(storage, "cell_baseline_results", instance=instance, partition_key="toy").success


def committed_index(repo: Path, text: str) -> Path:
    """A release repository whose committed releases.json holds `text`."""
    (repo / "releases.json").write_text(text)
    git(repo, "add", "releases.json")
    git(repo, "commit", "-qm", "index")
    return repo


def released(repo: Path) -> Path:
    """A release repository with release embeddings-v1, and a regular file `a_file` beside it."""
    DvcReleaseRepository(repo_dir=str(repo), remote_url=str(repo.parent / "remote")).publish({"a.csv": b"1"}, {})
    (repo.parent / "a_file").write_text("not a directory\n")
    return repo


def indexed_csv(work: Path) -> Path:
    import pandas as pd

    pd.DataFrame({"symbol": ["TP53", "MYC", "EGFR"], "d0": [1.0, 2, 3], "d1": [4.0, 5, 6]}).to_csv(work / "v.csv")
    return work / "v.csv"


CLI_CASES = {
    "storage_url_one_slash": (
        {"GENE_ASSETS_STORAGE": "s3:/bucket/x"},
        ["materialize", "gene_catalog"],
        None,
        r"GENE_ASSETS_STORAGE='s3:/bucket/x' is not a well-formed URL .* it would be read as a local directory named "
        r"'s3:'",
    ),
    "storage_unknown_scheme": (
        {"GENE_ASSETS_STORAGE": "s4://bucket/x"},
        ["leaderboard"],
        None,
        r"GENE_ASSETS_STORAGE='s4://bucket/x': unknown URL scheme 's4'",
    ),
    "remote_without_slashes": (
        {"GENE_ASSETS_DVC_REMOTE": "s3:bucket/releases"},
        ["release"],
        None,
        r"GENE_ASSETS_DVC_REMOTE='s3:bucket/releases' is not a well-formed URL",
    ),
    "storage_unreachable": (
        {
            "GENE_ASSETS_STORAGE": "s3://bucket/storage",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
        },
        ["leaderboard"],
        None,
        r"GENE_ASSETS_STORAGE=s3://bucket/storage cannot be reached \(EndpointConnectionError: Could not connect",
    ),
    "gpus_not_a_number": ({"GENE_ASSETS_K8S_GPUS": "two"}, ["leaderboard"], None, r"GENE_ASSETS_K8S_GPUS='two' is not"),
    "cron_four_fields": (
        {"GENE_ASSETS_REFRESH_CRON": "0 3 * *"},
        ["leaderboard"],
        None,
        r"GENE_ASSETS_REFRESH_CRON='0 3 \* \*' is not a cron schedule",
    ),
    "unknown_profile": ({"GENE_ASSETS_ENV": "prod"}, ["backbones"], None, r"GENE_ASSETS_ENV='prod' is not one of"),
    "index_not_json": (
        {},
        ["releases", "--repo", "{repo}"],
        lambda repo: committed_index(repo, "{not json"),
        r"releases\.json of .* is not valid JSON .* Restore it from the last release commit",
    ),
    "index_a_list": (
        {},
        ["releases", "--repo", "{repo}"],
        lambda repo: committed_index(repo, "[]"),
        r"releases\.json of .* holds a JSON list, not an object",
    ),
    "pull_out_below_a_file": (
        {},
        ["pull", "embeddings-v1", "--repo", "{repo}", "--out", "{repo}/../a_file/out"],
        released,
        r"--out .*a_file/out: .*a_file is a file, not a directory",
    ),
    "precomputed_with_its_index": (
        {},
        ["add-backbone", "mine", "--kind", "precomputed", "--dims", "3", "--source-path", "{work}/v.csv"],
        lambda repo: indexed_csv(repo.parent),
        r"v\.csv: its first value column 'Unnamed: 0' counts the rows",
    ),
    "hub_model_without_revision": (
        {},
        ["add-backbone", "mine", "--kind", "sentence_transformers", "--dims", "384", "--model-id", "org/model"],
        None,
        r"add-backbone mine: --model-id org/model is a Hub model and no --revision pins it",
    ),
    "cell_h5ad_missing": (
        {},
        ["run", "--cell-h5ad", "mine", "missing.h5ad", "cell_type"],
        None,
        r"run: --cell-h5ad mine: .*missing\.h5ad does not exist",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_CASES)
def test_no_command_prints_a_traceback_for_a_bad_input_setting_or_state_file(tmp_path, release_repo, case):
    """Each bad setting, state file or input through the real `gene-assets` command: exit status 2, one line naming
    the cause, no Python traceback, and nothing created in the directory it ran in."""
    from gene_assets.settings import PROJECT_ROOT

    settings, args, prepare, message = CLI_CASES[case]
    if prepare:
        prepare(release_repo)
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("")
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(PROJECT_ROOT),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "GENE_ASSETS_HOME": str(tmp_path / "home"),
        "GENE_ASSETS_DATA_DIR": os.environ.get("GENE_ASSETS_DATA_DIR", str(PROJECT_ROOT.parent / "shared" / "data")),
        DISCOVERED_REGISTRY_ENV: str(tmp_path / "discovered.json"),
        "DVC_NO_ANALYTICS": "1",
        **settings,
    }
    args = [a.format(repo=release_repo, work=tmp_path) for a in args]
    result = subprocess.run(
        [str(BIN / "gene-assets"), *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gene-assets"), result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert list(work.iterdir()) == [] and not (tmp_path / "discovered.json").exists()


KILLED_PUBLISH = """
import sys
from gene_assets.release.dvc_repository import DvcReleaseRepository
DvcReleaseRepository(repo_dir=sys.argv[1], remote_url=sys.argv[2]).publish({"a.csv": b"2"}, {})
"""


def command_line(process) -> list[str]:
    """A process's command line; empty for one that already ended (a short-lived git or a zombie)."""
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:
        return []


@pytest.mark.slow
def test_a_release_killed_inside_its_dvc_push_is_recovered_by_the_next_release(release_repo, tmp_path, capsys):
    """SIGKILL to a real release process (and its `dvc push`) by PID: the next release says what the interrupted one
    left, restores it, and publishes; no `.data.*` directory stays and the new version verifies."""
    import signal
    import time

    import psutil

    from gene_assets.release.dvc_repository import verify_release

    remote = tmp_path / "remote"
    repository = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(remote))
    repository.publish({"a.csv": b"1"}, {})
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_PUBLISH, str(release_repo), str(remote)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        start_new_session=True,
    )
    deadline, push = time.time() + 120, None
    while push is None:
        assert process.poll() is None and time.time() < deadline, "the release ended before its dvc push was seen"
        children = psutil.Process(process.pid).children(recursive=True)
        push = next((c for c in children if "push" in command_line(c)), None)
        time.sleep(0.01)
    for pid in (process.pid, push.pid):
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert [p.name.split("-")[0] for p in release_repo.glob(".data.*")] == [".data.previous"]
    assert "data.dvc" in git(release_repo, "status", "--porcelain")
    capsys.readouterr()
    release = repository.publish({"a.csv": b"2"}, {})
    err = capsys.readouterr().err
    assert re.fullmatch(
        rf"{release_repo}: an interrupted release left \.data\.previous-\w+ and uncommitted data\.dvc(, \S+)*; "
        r"restored data/ and those files to the last commit before releasing\.\n",
        err,
    ), err
    assert release.version == "embeddings-v2" and not list(release_repo.glob(".data.*"))
    assert verify_release(release_repo / "data", str(release_repo))["version"] == "embeddings-v2"
    assert git(release_repo, "status", "--porcelain").strip() == ""


def test_a_ragged_csv_and_a_renamed_parquet_column_name_the_file_in_one_line(tmp_path):
    import pandas as pd

    from gene_assets.sources.data_directory import DataFileError, read_data_csv, read_data_parquet

    (tmp_path / "labels.csv").write_text("gene_name,label\nTP53,a\nMYC,b,extra\n")
    with pytest.raises(DataFileError) as ragged:
        read_data_csv(tmp_path / "labels.csv", dtype=str)
    assert re.fullmatch(
        rf"{tmp_path / 'labels.csv'} cannot be parsed \(Error tokenizing data\. C error: Expected 2 fields in line 3, "
        r"saw 3\): restore it from its source .*",
        str(ragged.value),
    ), str(ragged.value)
    pd.DataFrame({"entrez_id": [7157], "summary": ["A tumor suppressor."]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(DataFileError) as renamed:
        read_data_parquet(tmp_path / "s.parquet", columns=["entrez_id", "refseq_summary"])
    message = str(renamed.value)
    assert "\n" not in message and message.startswith(
        f"{tmp_path / 's.parquet'} has no column refseq_summary (its columns: entrez_id, summary): it is not the "
        "expected file, or a column was renamed;"
    ), message


def test_a_failing_dvc_step_reports_its_error_line(release_repo, tmp_path):
    from gene_assets.release.dvc_repository import ReleaseError

    repository = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"))
    repository.dvc("init", "--quiet")
    with pytest.raises(ReleaseError) as failed:
        repository.dvc("push", "--remote", "nowhere")
    assert str(failed.value) == (
        f"dvc push --remote nowhere failed in {release_repo}: failed to push data to the cloud - config file error: "
        "remote 'nowhere' doesn't exist"
    )
