"""Stopping `gene-assets run` with Ctrl-C or SIGTERM: the runs in flight are canceled, every process of the command
ends, nothing more starts, and the next run resumes from what is stored."""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from gene_assets.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


@pytest.fixture
def run_env(tmp_path, annotation_cache, data_dir) -> dict:
    """DAGSTER_HOME and GENE_ASSETS_HOME in tmp_path (the project's instance settings), sharing the verified
    annotation cache."""
    home = tmp_path / "gene_assets_home"
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "bioconductor").symlink_to(annotation_cache)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster_home" / "dagster.yaml").read_text())
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "GENE_ASSETS_HOME": str(home),
        "GENE_ASSETS_DATA_DIR": str(data_dir),
    }


def runs_by_job(env: dict) -> dict[str, Counter]:
    """{job: Counter of run statuses} on the instance of `env`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with DagsterInstance.get() as instance:
            runs = instance.get_runs()
    found: dict[str, Counter] = {}
    for run in runs:
        found.setdefault(run.job_name, Counter())[run.status] += 1
    return found


def processes_of(env: dict) -> list[psutil.Process]:
    """Live processes running with this test's DAGSTER_HOME (the command, its runs' processes and their workers)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("DAGSTER_HOME") == env["DAGSTER_HOME"] and process.status() != "zombie":
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT], ids=["ctrl_c"])
def test_a_stop_signal_cancels_the_runs_in_flight_and_the_next_run_resumes(run_env, task_symbols, tmp_path, signum):
    """A real `gene-assets run` (two backbones, a few hundred genes, scoring runs two at a time) gets the signal
    (SIGINT to its process group, as a terminal's Ctrl-C) while both scoring runs are in flight: it exits with
    128 + the signal and one line, both runs are CANCELED, none is left unfinished, no process of it survives,
    and the same command afterwards runs only the scoring again (sources and embeddings are kept)."""
    command = [
        str(BIN / "gene-assets"),
        "run",
        "--backbones",
        "bag-of-words",
        "tfidf",
        "--cell-datasets",
        "--no-release",
        "--concurrent-runs",
        "2",
        "--symbols",
        *task_symbols[::4],
    ]
    log = tmp_path / "run.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=run_env, stdout=output, stderr=output, start_new_session=True
        )
    try:
        deadline = time.time() + 600
        while runs_by_job(run_env).get("backbone_job", {}).get(DagsterRunStatus.STARTED, 0) < 2:
            assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        tree = psutil.Process(process.pid).children(recursive=True)
        assert len(tree) >= 2  # the two scoring runs' processes (and their workers)
        os.killpg(process.pid, signum)
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text()
    assert returncode == 128 + signum, text[-3000:]
    name = signal.Signals(signum).name
    assert text.rstrip().splitlines()[-1] == (
        f"gene-assets run: stopped by {name}: canceled 2 runs in flight (backbone_job bag-of-words|summary, "
        "backbone_job tfidf|summary), no further run started; run the same command again to resume from what is "
        "stored."
    ), text[-3000:]
    assert "Traceback" not in text
    runs = runs_by_job(run_env)
    assert runs["backbone_job"] == Counter({DagsterRunStatus.CANCELED: 2}), runs
    assert runs["sources_job"] == Counter({DagsterRunStatus.SUCCESS: 1})
    assert runs["embedding_job"] == Counter({DagsterRunStatus.SUCCESS: 2})
    time.sleep(1)  # the killed processes' parents reap them
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not processes_of(run_env)

    rerun = subprocess.run(command, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(
        r"Up to date, not run again \(3 runs; --force runs them\): sources_job, embedding_job", rerun.stderr
    )
    runs = runs_by_job(run_env)
    assert runs["backbone_job"] == Counter({DagsterRunStatus.CANCELED: 2, DagsterRunStatus.SUCCESS: 2}), runs
    assert runs["sources_job"] == Counter({DagsterRunStatus.SUCCESS: 1})
    assert runs["embedding_job"] == Counter({DagsterRunStatus.SUCCESS: 2})
