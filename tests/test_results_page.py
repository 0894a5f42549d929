"""The results page generated from a release, and the published reference rows of the board."""

import io
import re

import numpy as np
import pandas as pd
import pytest

from gene_assets.cli import main, print_sections
from gene_assets.embeddings.encoders import BagOfWordsEncoder, TfidfEncoder, random_gene_vectors
from gene_assets.embeddings.registry import get_backbone
from gene_assets.leaderboard.published import (
    BOARD,
    NOT_SCORED,
    PUBLISHED_FIGURES,
    published_comparison,
    verdict,
)
from gene_assets.leaderboard.report import summarize
from gene_assets.release.assets import leaderboard_files
from gene_assets.release.dvc_repository import DvcReleaseRepository
from gene_assets.release.results_page import as_text
from gene_assets.tasks.assets import TASKS
from gene_assets.tasks.evaluation import Protocol, evaluate_binary, genes_digest
from gene_assets.tasks.geneformer import GENEFORMER_SOURCES
from gene_assets.tasks.subsets import gene_subset_masks

from .conftest import git

TASKS_SCORED = ("bivalent_vs_lys4_only", "dosage_sensitive_tfs")
"""Two Geneformer tasks GenePT publishes figures for."""
TUNED = ("tfidf", "bivalent_vs_lys4_only")
"""The backbone and task also scored with the `full` protocol's tuned logistic regression (seconds, not minutes)."""


@pytest.fixture(scope="module")
def scored(data_dir) -> pd.DataFrame:
    """Real result rows: bag-of-words and TF-IDF of RefSeq summaries (logistic regression and forests; TF-IDF on
    the smaller task also the tuned logistic regression; each probe also on the third of genes with the shortest
    summaries), and the random control as a band of three draws; 200 paired replicates."""
    long = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv")
    summaries = pd.read_parquet(
        data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet",
        columns=["ensembl_id", "symbol", "refseq_summary"],
    ).dropna(subset=["ensembl_id"])
    rows = []
    for task in (TASKS[name] for name in TASKS_SCORED):
        genes = (
            long[long["task"] == GENEFORMER_SOURCES[task.name][0]]
            .merge(summaries.drop_duplicates("ensembl_id"), on="ensembl_id")
            .drop_duplicates("ensembl_id")
        )
        texts = pd.DataFrame({"text": genes["refseq_summary"].fillna("Gene " + genes["symbol"]).to_numpy()})
        ids = genes["ensembl_id"].str.removeprefix("ENSG").astype(int).to_numpy()
        words = genes["refseq_summary"].fillna("").str.split().str.len().to_numpy()
        study = pd.DataFrame({"summary_words": words, "go_annotations": 0}, index=ids)
        subsets = {k: v for k, v in gene_subset_masks(study, ids).items() if k == "least_studied_by_summary"}
        vectors = {  # 256 columns keep the forests to seconds
            "bag-of-words": BagOfWordsEncoder(get_backbone("bag-of-words")).embed(texts)[:, :256],
            "tfidf": TfidfEncoder(get_backbone("tfidf")).embed(texts)[:, :256],
        }
        vectors.update({("random-gaussian", draw): random_gene_vectors(ids, 64, seed=draw) for draw in range(3)})
        extra = {
            "universe": "all_genes",
            "view": "summary",
            "n_excluded": 0,
            "genes_digest": genes_digest(ids, (genes["label"] == task.positive).to_numpy()),
        }
        for key, X in vectors.items():
            backbone, draw = key if isinstance(key, tuple) else (key, 0)
            protocol = Protocol.named("full" if (backbone, task.name) == TUNED else "published", n_bootstrap=200)
            for row in evaluate_binary(
                task, X, genes["label"], protocol, bootstrap=draw == 0, forest=draw == 0, subsets=subsets
            ):
                rows.append(dict(row, **extra, backbone=backbone, draw=draw, dims=X.shape[1]))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def release(scored, tmp_path_factory):
    """A real release of the leaderboard files of `scored` in a temporary repository: (repo, files)."""
    from .conftest import make_release_repo

    root = tmp_path_factory.mktemp("results_page")
    repo = make_release_repo(root / "release_repo")
    files = leaderboard_files(summarize(scored).assign(protocol="full"))
    DvcReleaseRepository(repo_dir=str(repo), remote_url=str(root / "remote")).publish(
        files, {"code": {"commit": "0" * 40, "uncommitted_changes": False}, "protocol": "full", "models": []}
    )
    return repo, {name: data for name, data in files.items() if name.endswith(".csv")}


def page_tables(page: str) -> list[tuple[str, list[str], list[dict]]]:
    """Every pipe table of the page: (its source line, or '' for none since the last heading; header; rows)."""
    tables, source, lines = [], "", page.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            source = ""
        elif line.startswith("Source: "):
            source = line
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", lines[i])[1:-1]])
                i += 1
            header, body = block[0], block[2:]
            tables.append((source, header, [dict(zip(header, row)) for row in body]))
            continue
        i += 1
    return tables


NUMBER = re.compile(r"[-+]?\d+\.\d+|[-+]?\d+")


def same_value(shown: str, released: str) -> bool:
    """A page cell shows a released cell: the same text, or the same number to the precision the page shows."""
    if shown == released:
        return True
    try:
        value = float(released)
    except ValueError:
        return False
    if re.fullmatch(r"[-+]?\d+", shown):
        return value == int(shown)
    if not re.fullmatch(r"[-+]?\d+\.\d+(e[-+]?\d+)?", shown):
        return False
    mantissa = shown.split("e")[0]
    decimals = len(mantissa.split(".")[1])
    exponent = int(shown.split("e")[1]) if "e" in shown else 0
    return abs(float(shown) - value) <= 0.5 * 10.0 ** (exponent - decimals) * (1 + 1e-9)


def numbers(text: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(text)]


@pytest.mark.slow
def test_every_number_on_the_page_is_the_released_value(release, tmp_path, capsys):
    """`gene-assets report` pulls the release, names it (version, commit, date, data.dvc md5, protocol), and every
    table row is a row of the released file it names (each number that file's value at the shown precision); the
    board's cells are leaderboard_long.csv's estimates and CIs; the quoted rows are the published figures; every
    reference row's estimate is leaderboard_long.csv's and its verdict follows from its CI; absent sections say so."""
    repo, files = release
    out = tmp_path / "docs" / "results.md"
    assert main(["report", "--release", "embeddings-v1", "--repo", str(repo), "--out", str(out)]) == 0
    assert "results of release embeddings-v1" in capsys.readouterr().out
    assert main(["report", "--release", "embeddings-v9", "--repo", str(repo)]) == 2
    assert "has no release 'embeddings-v9'; it has embeddings-v1" in capsys.readouterr().err
    assert main(["report", "--repo", str(repo), "--out", str(out / "page.md")]) == 2  # out is a file
    assert re.fullmatch(
        r"gene-assets: report: cannot write .*page\.md \(.*\); choose another --out\.\n", capsys.readouterr().err
    )
    page = out.read_text()
    revision = git(repo, "rev-parse", "embeddings-v1^{commit}").strip()
    md5 = re.search(r"md5: (\S+)", git(repo, "show", f"{revision}:data.dvc")).group(1)
    assert "release **embeddings-v1**" in page and revision in page and md5 in page
    assert "**full** evaluation protocol" in page and "0" * 40 in page and str(repo) not in page

    released = {name: as_text(data.decode()) for name, data in files.items()}
    long = pd.read_csv(io.BytesIO(files["leaderboard_long.csv"]))
    primary = long[long["primary"] & (long["universe"] == "all_genes")].set_index(["backbone", "view", "task"])
    tables = page_tables(page)
    checked = set()
    for source, header, rows in tables:
        names = re.findall(r"`([^`]+\.csv)`", source)
        if names == ["leaderboard.csv"]:
            board = released["leaderboard.csv"]
            ours = [r for r in rows if not r["backbone"].startswith("“")]
            quoted = [r for r in rows if r["backbone"].startswith("“")]
            assert len(ours) == len(board) and quoted
            for row in ours:
                assert any(all(same_value(row[c], b[c]) for c in header) for b in board.to_dict("records")), row
                for task in set(header) & set(primary.index.get_level_values("task")):
                    if not row[task]:
                        continue
                    value = primary.loc[(row["backbone"], row["view"], task)]
                    if "band" in row[task]:
                        expected = [value["estimate"], value["band_low"], value["band_high"]]
                        assert numbers(row[task]) == pytest.approx(expected, abs=0.005)
                    else:
                        expected = [value["estimate"], value["ci_low"], value["ci_high"]]
                        assert numbers(row[task]) == pytest.approx(expected, abs=0.0005)
            for row in quoted:
                model = row["backbone"].split("”")[0].lstrip("“")
                for task in header[2:]:
                    if row[task]:
                        figure = next(
                            f
                            for f in PUBLISHED_FIGURES
                            if (f.model, f.task, f.classifier, f.evaluation)
                            == (model, task, "logistic_regression", BOARD)
                        )
                        assert numbers(row[task]) == [figure.value]
        elif names and names[0] == "leaderboard_long.csv":
            figures = {(f.source, f.model, f.task, f.classifier): f for f in PUBLISHED_FIGURES}
            assert len({(r["source"], r["model"], r["task"], r["classifier"]) for r in rows}) == len(figures)
            for row in rows:
                figure = figures[(row["source"], row["model"], row["task"], row["classifier"])]
                assert float(row["published"]) == figure.value
                if row["verdict"] == NOT_SCORED:
                    assert not row["backbone"] and not row["ours [95% CI]"]
                    continue
                value = long.set_index(["backbone", "view", "universe", "task", "classifier", "metric"]).loc[
                    (row["backbone"], row["view"], "all_genes", row["task"], row["classifier"], row["metric"])
                ]
                assert numbers(row["ours [95% CI]"]) == pytest.approx(
                    [value["estimate"], value["ci_low"], value["ci_high"]], abs=0.0005
                )
                low, high = figure.value - 0.5 * 10.0**-figure.decimals, figure.value + 0.5 * 10.0**-figure.decimals
                expected = "above" if value["ci_low"] > high else "below" if value["ci_high"] < low else "around"
                assert row["verdict"] == expected
        elif names:
            (name,) = names
            candidates = released[name].to_dict("records")
            for row in rows:
                assert any(all(same_value(row[c], r[c]) for c in header) for r in candidates), (name, row)
        checked.update(names)
    assert {
        "leaderboard.csv",
        "leaderboard_long.csv",
        "leaderboard_ranks.csv",
        "leaderboard_study_bias.csv",
        "leaderboard_tuning.csv",
    } <= checked
    for absent in ("leaderboard_term_masking.csv", "leaderboard_fine_tuning.csv"):
        assert f"Not in this release (`{absent}` is missing or has no rows)." in page


def test_reference_verdicts_on_real_rows(scored, capsys):
    """On real rows the random control's first draw lies below every GenePT figure of its task; a CI whose low end
    clears a figure only by less than its rounding is 'around'; figures this leaderboard lacks are 'not scored';
    `gene-assets leaderboard` output carries the quoted rows and the comparison."""
    single = summarize(scored[scored["draw"] == 0]).assign(protocol="full")
    comparison = published_comparison(single)
    random = comparison[(comparison["backbone"] == "random-gaussian") & (comparison["source"] == "GenePT")]
    assert len(random) == 4 and (random["verdict"] == "below").all()  # 2 tasks × LR, RF
    words = comparison[(comparison["backbone"] == "bag-of-words") & (comparison["source"] == "GenePT")]
    assert set(words["task"]) == set(TASKS_SCORED) and set(words["verdict"]) <= {"above", "around", "below"}
    assert set(comparison.loc[comparison["verdict"] == NOT_SCORED, "task"]) == {
        "gene_interaction",
        "tf_range_chen2020",
        "tf_range_geneformer",
        "dosage_sensitive_tfs",
        "bivalent_vs_lys4_only",
        "bivalent_vs_no_methylation",
    }  # gene pairs, Chen's TF range and the no-methylation task are not scored here, nor Gan & Li's repeats
    dosage = next(f for f in PUBLISHED_FIGURES if f.model == "ada-002" and f.task == "dosage_sensitive_tfs")
    row = words[(words["task"] == "dosage_sensitive_tfs") & (words["classifier"] == "logistic_regression")].iloc[0]
    width = row["ci_high"] - row["ci_low"]
    assert verdict(dosage, 0.8925, 0.8925 + width) == "around"  # 0.89 stands for values up to 0.895
    assert verdict(dosage, 0.8951, 0.8951 + width) == "above"
    assert verdict(dosage, 0.8849 - width, 0.8849) == "below"
    print_sections(single)
    out = capsys.readouterr().out
    assert "“ada-002” (GenePT, published)" in out and "## Published reference rows" in out
    assert np.isin(["above", "around", "below"], out.split()).any()
