"""The real gene catalog and identifier resolution."""

import pandas as pd
import pytest

from gene_assets.catalog.assets import build_catalog, read_ncbi_gene_info, read_org_hs_genes
from gene_assets.catalog.resolver import GeneResolver
from gene_assets.sources.bioconductor import AnnotationDatabases
from gene_assets.sources.data_directory import DataDirectory


@pytest.fixture(scope="module")
def catalog(annotation_cache, data_dir):
    org_hs = read_org_hs_genes(AnnotationDatabases(cache_dir=str(annotation_cache)))
    gene_info = read_ncbi_gene_info(DataDirectory(path=str(data_dir)).file("ncbi_gene_info"))
    return build_catalog(org_hs, gene_info)


def test_catalog_has_one_row_per_gene(catalog):
    assert catalog["entrez_id"].is_unique
    assert len(catalog) > 77_000
    tp53 = catalog.set_index("entrez_id").loc[7157]
    assert tp53["symbol"] == "TP53" and tp53["gene_type"] == "protein-coding" and tp53["chromosome"] == "17"
    assert "ENSG00000141510" in tp53["ensembl_ids"].split("|")
    assert "P53" in tp53["aliases"].split("|")


def test_resolver_symbols_aliases_and_ensembl(catalog):
    resolver = GeneResolver(catalog)
    resolved = resolver.symbols(["TP53", "tp53", "HER2", "C10orf2", "NOT_A_GENE", None])
    assert resolved.entrez_ids.tolist()[:3] == [7157, 7157, 2064]
    # C10orf2 was a name of both TWNK and CHMP1B: ambiguous, so left unmapped
    assert resolved.methods.tolist() == ["symbol", "symbol", "alias", "unmapped", "unmapped", "unmapped"]
    assert resolved.n_unmapped == 3
    by_ensembl = resolver.ensembl(["ENSG00000141510", "ENSG00000141510.17", "ENSG00000000000"])
    assert by_ensembl.entrez_ids.tolist()[:2] == [7157, 7157] and by_ensembl.n_unmapped == 1


def test_ambiguous_alias_is_not_resolved():
    catalog = pd.DataFrame(
        {
            "entrez_id": [1, 2, 3],
            "symbol": ["AAA", "BBB", "CCC"],
            "aliases": ["X1|SHARED", "SHARED", "AAA"],
            "ensembl_ids": ["ENSG1", None, "ENSG1"],
        }
    )
    resolver = GeneResolver(catalog)
    assert resolver.symbols(["X1", "SHARED", "AAA"]).entrez_ids.tolist() == [1, pd.NA, 1]
    assert resolver.ensembl(["ENSG1"]).n_unmapped == 1


def test_gene_info_extends_org_hs_cross_references():
    org_hs = pd.DataFrame(
        {
            "entrez_id": [1],
            "symbol": ["A"],
            "full_name": ["a"],
            "gene_type": ["protein-coding"],
            "chromosome": ["1"],
            "map_location": ["1p1"],
            "aliases": ["OLD"],
            "ensembl_ids": [None],
        }
    )
    info = pd.DataFrame(
        {
            "entrez_id": [1, 2],
            "symbol": ["A", "B"],
            "full_name": ["a", "b"],
            "gene_type": ["protein-coding", "ncRNA"],
            "chromosome": ["1", "2"],
            "map_location": ["1p1", "2q"],
            "aliases": ["OLD|OLDER", None],
            "ensembl_ids": ["ENSG9", None],
            "hgnc_id": ["5", None],
        }
    )
    catalog = build_catalog(org_hs, info).set_index("entrez_id")
    assert catalog.loc[1, "aliases"] == "OLD|OLDER" and catalog.loc[1, "ensembl_ids"] == "ENSG9"
    assert catalog.loc[2, "catalog_source"] == "ncbi_gene_info"
