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

BIN = Path(sys.executable).parent


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


def run_command(symbols: list[str]) -> list[str]:
    """`gene-assets run` of two backbones on `symbols`, scoring runs two at a time, no cell datasets, no release."""
    return [
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
        *symbols,
    ]


def stop_when(env: dict, command: list[str], log: Path, job: str, in_flight: int, signum: int, group: bool):
    """Start `command` (its own process group) and send `signum` once `in_flight` runs of `job` are STARTED, to the
    group as a terminal's Ctrl-C does or to the process alone; its exit status and its descendants at that time."""
    with open(log, "w") as output:
        process = subprocess.Popen(
            command, cwd=log.parent, env=env, stdout=output, stderr=output, start_new_session=True
        )
    try:
        deadline = time.time() + 600
        while runs_by_job(env).get(job, {}).get(DagsterRunStatus.STARTED, 0) < in_flight:
            assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        tree = psutil.Process(process.pid).children(recursive=True)
        (os.killpg if group else os.kill)(process.pid, signum)
        return process.wait(timeout=60), tree
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def assert_stopped(env: dict, log: Path, returncode: int, tree: list, signum: int, canceled: str) -> None:
    """Exit status 128 + signum, the one line naming the `canceled` runs last, no traceback, no run left
    unfinished, and no process of the command alive."""
    text = log.read_text()
    assert returncode == 128 + signum, text[-3000:]
    assert text.rstrip().splitlines()[-1] == (
        f"gene-assets run: stopped by {signal.Signals(signum).name}: canceled {canceled}, no further run started; "
        "run the same command again to resume from what is stored."
    ), text[-3000:]
    assert "Traceback" not in text
    statuses = set().union(*runs_by_job(env).values())
    assert not statuses & {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}
    time.sleep(1)  # the killed processes' parents reap them
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not processes_of(env)


@pytest.mark.slow
def test_ctrl_c_cancels_the_scoring_runs_in_flight_and_the_next_run_resumes(isolated_env, task_symbols, tmp_path):
    """A real `gene-assets run` (two backbones, a few hundred genes, scoring runs two at a time) gets SIGINT on its
    process group, as from a terminal's Ctrl-C, while both scoring runs are in flight, each in its own process: it
    exits with 130 and one line, both runs are CANCELED, no process of it survives, and the same command afterwards
    runs only the scoring again (sources and embeddings are kept)."""
    command, log = run_command(task_symbols[::4]), tmp_path / "run.log"
    returncode, tree = stop_when(isolated_env, command, log, "backbone_job", 2, signal.SIGINT, group=True)
    assert len(tree) >= 2  # the two scoring runs' processes (and their workers)
    assert_stopped(
        isolated_env,
        log,
        returncode,
        tree,
        signal.SIGINT,
        "2 runs in flight (backbone_job bag-of-words|summary, backbone_job tfidf|summary)",
    )
    runs = runs_by_job(isolated_env)
    assert runs["backbone_job"] == Counter({DagsterRunStatus.CANCELED: 2}), runs
    assert runs["sources_job"] == Counter({DagsterRunStatus.SUCCESS: 1})
    assert runs["embedding_job"] == Counter({DagsterRunStatus.SUCCESS: 2})

    rerun = subprocess.run(command, cwd=tmp_path, env=isolated_env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(
        r"Up to date, not run again \(3 runs; --force runs them\): sources_job, embedding_job", rerun.stderr
    )
    runs = runs_by_job(isolated_env)
    assert runs["backbone_job"] == Counter({DagsterRunStatus.CANCELED: 2, DagsterRunStatus.SUCCESS: 2}), runs
    assert runs["sources_job"] == Counter({DagsterRunStatus.SUCCESS: 1})
    assert runs["embedding_job"] == Counter({DagsterRunStatus.SUCCESS: 2})


@pytest.mark.slow
def test_sigterm_to_the_process_alone_cancels_its_in_process_run(isolated_env, task_symbols, tmp_path):
    """SIGTERM to the `gene-assets run` process alone while its sources run executes in that process: exit 143,
    the run CANCELED (not failed as interrupted), no embedding run started, no process left."""
    log = tmp_path / "run.log"
    returncode, tree = stop_when(
        isolated_env, run_command(task_symbols[::4]), log, "sources_job", 1, signal.SIGTERM, group=False
    )
    assert_stopped(isolated_env, log, returncode, tree, signal.SIGTERM, "1 run in flight (sources_job)")
    runs = runs_by_job(isolated_env)
    assert runs["sources_job"] == Counter({DagsterRunStatus.CANCELED: 1}), runs
    assert "embedding_job" not in runs
