"""The benchmark history: each comparison's rows as a committed CSV per day and CPU class, with the machine line."""

import re

import pandas as pd

from benchmarks.harness import HISTORY_COLUMNS, Row, cpu_class, write_history


def test_history_file_per_comparison_day_and_cpu_class(tmp_path):
    rows = [
        Row("multilabel_probe", "omim_disease, 1,000 genes", "s", 6.96, 5.06, 1.38, "mean AUC 0.748928 vs 0.748894"),
        Row("multilabel_probe", "omim_disease, first fold", "s", 1.5, 1.0, 1.5),
    ]
    machine = "CPU: AMD EPYC; flags: none\n\nchosen CPU precision: bag-of-words fp32"
    path = write_history("multilabel_probe", rows, machine, tmp_path, day="2026-12-07")
    assert path == tmp_path / "multilabel_probe" / f"2026-12-07-{cpu_class()}.csv"
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", cpu_class())
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table.columns) == ["comparison", "case", "unit", "baseline", "project", "speedup", "detail"] + list(
        HISTORY_COLUMNS
    )
    assert table["baseline"].tolist() == [6.96, 1.5] and table["detail"].tolist() == [rows[0].detail, ""]
    assert (table["date"] == "2026-12-07").all() and re.fullmatch(r"[0-9a-f]{40}(\+changes)?", table["commit"][0])
    assert (table["machine"] == "CPU: AMD EPYC; flags: none chosen CPU precision: bag-of-words fp32").all()
    write_history("multilabel_probe", rows[:1], machine, tmp_path, day="2026-12-07")
    assert len(pd.read_csv(path)) == 1 and not [p for p in path.parent.iterdir() if p != path]
