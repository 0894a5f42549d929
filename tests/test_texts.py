"""Text views: sources declared, fallbacks that never add label words, GO terms from the real databases."""

import pandas as pd

from gene_assets.sources.bioconductor import AnnotationDatabases
from gene_assets.texts.assets import read_go_terms
from gene_assets.texts.views import VIEWS, build_view

GENES = pd.DataFrame(
    {
        "entrez_id": [7157, 100302173, 26],
        "symbol": ["TP53", "MIR1307", "AOC1"],
        "full_name": ["tumor protein p53", "microRNA 1307", None],
        "gene_type": ["protein-coding", "ncRNA", "protein-coding"],
        "map_location": ["17p13.1", "10q24.33", "7q36.1"],
        "aliases": ["BCC7|LFS1|P53", None, "ABP|AOC1"],
        "summary": ["This gene encodes a tumor suppressor protein.", None, None],
        "go_mf": ["DNA binding; p53 binding", None, None],
        "go_bp": ["apoptotic process", None, None],
        "go_cc": ["nucleus", None, None],
    }
)


def test_summary_view_is_genept_style_with_fallbacks():
    view = build_view(GENES, "summary").set_index("symbol")
    assert view.loc["TP53", "text"] == "Gene TP53, tumor protein p53. This gene encodes a tumor suppressor protein."
    assert view.loc["TP53", "source"] == "refseq_summary"
    assert view.loc["MIR1307", "text"] == "Gene MIR1307, microRNA 1307."
    assert view.loc["MIR1307", "source"] == "full_name_fallback"
    assert view.loc["AOC1", "source"] == "symbol_fallback"


def test_fallback_texts_do_not_spell_out_the_gene_type():
    view = build_view(GENES, "summary")
    fallback = view[view["source"] != "refseq_summary"]
    for gene_type in ("protein-coding", "protein coding", "ncRNA"):
        assert not fallback["text"].str.contains(gene_type, case=False).any()


def test_card_view_has_names_type_location_aliases_and_summary():
    text = build_view(GENES, "card").set_index("symbol").loc["TP53", "text"]
    for part in (
        "Official full name: tumor protein p53",
        "Gene type: protein-coding",
        "Location: 17p13.1",
        "Also known as: BCC7, LFS1, P53",
        "Summary: This gene encodes",
    ):
        assert part in text


def test_go_view_falls_back_to_the_name_line_without_annotations():
    view = build_view(GENES, "go").set_index("symbol")
    assert len(view) == len(GENES)
    assert "Molecular function: DNA binding; p53 binding." in view.loc["TP53", "text"]
    assert "Cellular component: nucleus." in view.loc["TP53", "text"]
    assert view.loc["TP53", "source"] == VIEWS["go"].primary_source
    others = view.drop(index="TP53")
    assert set(others["source"]) <= {"full_name_fallback", "symbol_fallback"}
    assert not others["text"].str.contains("function|process|component").any()


def test_every_view_declares_its_sources():
    assert all(VIEWS[name].contains for name in VIEWS)
    assert "GO" in VIEWS["go"].contains and "refseq_summary" in VIEWS["summary"].contains


def test_go_terms_from_real_databases(annotation_cache):
    terms = read_go_terms(AnnotationDatabases(cache_dir=str(annotation_cache))).set_index("entrez_id")
    tp53 = terms.loc[7157]
    assert "DNA binding" in tp53["go_mf"] and "apoptotic process" in tp53["go_bp"] and "nucleus" in tp53["go_cc"]
