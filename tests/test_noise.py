"""Warnings the project has handled are silenced where they arise; the embedding time-left estimate follows the
work (characters, which tokens follow), not the count of texts."""

import warnings

import numpy as np
import pandas as pd
import pytest


@pytest.mark.slow
def test_umap_warnings_the_project_handles_are_not_shown_and_the_figure_is_drawn():
    from gene_assets.cells.evaluation import umap_png

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    labels = pd.Series(np.where(np.arange(60) % 2, "a", "b"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = umap_png(X, labels, "test", seed=0)
    assert png.startswith(b"\x89PNG")
    shown = [str(w.message) for w in caught]
    assert not [
        m for m in shown if "using precomputed metric" in m or "overridden to 1 by setting random_state" in m
    ], shown


def test_loky_worker_replacement_warning_is_silenced_and_other_warnings_are_not():
    from gene_assets.parallel import run_units

    assert [value for value, _ in run_units(pow, [(2, 3), (3, 2)], workers=2, threads=1)] == [8, 9]  # on the pool
    module = "joblib.externals.loky.process_executor"
    with warnings.catch_warnings(record=True) as caught:
        for message in (
            "A worker stopped while some jobs were given to the executor. This can be caused by a too "
            "short worker timeout or by a memory leak.",
            "something else from loky",
        ):
            warnings.warn_explicit(message, UserWarning, "process_executor.py", 788, module=module)
    assert [str(w.message) for w in caught] == ["something else from loky"]


class Log:
    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(line)


def test_time_left_follows_the_characters_embedded_not_the_texts(monkeypatch):
    """Texts are embedded longest first: after the longest quarter of the texts, holding 70% of the characters, took
    70 s, about 30 s are left (not 210 s, as three more quarters at the same rate would say)."""
    from gene_assets import progress as progress_module

    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: clock[0])
    log = Log()
    progress = progress_module.ProgressLog(log, "m/summary", "texts embedded", every_seconds=0)
    progress.expect(400, work=100_000)
    report = progress.part()
    clock[0] += 70
    report(100, 400, 70_000)
    assert log.lines[-1].endswith("about 30s left")
    plain = progress_module.ProgressLog(Log(), "m/summary", "texts embedded", total=400, every_seconds=0)
    plain.log = log
    clock[0] += 70
    plain.update(100)
    assert log.lines[-1].endswith("about 3m30s left")  # without a work measure: by texts, as before
