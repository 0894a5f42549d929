"""Data directory errors, the annotation database fetcher, and the E-utilities client against a local server."""

import http.server
import json
import tarfile
import threading
import urllib.parse
from pathlib import Path

import pytest

from gene_assets.sources import bioconductor
from gene_assets.sources.bioconductor import AnnotationDatabaseError, AnnotationDatabases, AnnotationPackage
from gene_assets.sources.data_directory import DataDirectory, DataDirectoryError
from gene_assets.sources.ncbi_eutils import EutilsError, NcbiEutils
from gene_assets.storage import sha256_file


def test_missing_data_directory_names_path_and_contents(tmp_path):
    with pytest.raises(DataDirectoryError, match=str(tmp_path / "nope")) as err:
        DataDirectory(path=str(tmp_path / "nope")).root()
    assert "GENE_ASSETS_DATA_DIR" in str(err.value) and "PROVENANCE.md" in str(err.value)


def test_missing_data_file_names_file_and_what_it_holds(tmp_path):
    with pytest.raises(DataDirectoryError, match="human_genes_ncbi_refseq_summaries.parquet") as err:
        DataDirectory(path=str(tmp_path)).file("refseq_summaries")
    assert "refseq_summary" in str(err.value)


def test_real_data_directory_has_every_file(data_dir):
    directory = DataDirectory(path=str(data_dir))
    for name in ("refseq_summaries", "ncbi_gene_info", "geneformer_tasks"):
        assert directory.file(name).is_file()


@pytest.fixture
def tarball_package(tmp_path, monkeypatch):
    """A Bioconductor-style source tarball holding a small SQLite file, served from a file:// URL."""
    import sqlite3

    inner = tmp_path / "src" / "Tiny.db" / "inst" / "extdata" / "Tiny.sqlite"
    inner.parent.mkdir(parents=True)
    with sqlite3.connect(inner) as con:
        con.execute("CREATE TABLE genes (_id INTEGER, gene_id TEXT)")
        con.execute("INSERT INTO genes VALUES (1, '7157')")
    archive = tmp_path / "Tiny.db_1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "Tiny.db", arcname="Tiny.db")
    package = AnnotationPackage(
        name="Tiny.db",
        version="1.0",
        debian_package="r-bioc-tiny.db",
        debian_version="1.0-1",
        debian_path="usr/lib/R/site-library/Tiny.db/extdata/Tiny.sqlite",
        tarball_url=archive.as_uri(),
        tarball_path="Tiny.db/inst/extdata/Tiny.sqlite",
        sqlite_sha256=sha256_file(inner),
    )
    monkeypatch.setitem(bioconductor.PACKAGES, "Tiny.db", package)
    return package


def test_tarball_source_extracts_verifies_and_caches(tmp_path, tarball_package):
    databases = AnnotationDatabases(cache_dir=str(tmp_path / "cache"), source="bioconductor")
    path = databases.sqlite_path("Tiny.db")
    assert sha256_file(path) == tarball_package.sqlite_sha256
    with databases.connect("Tiny.db") as con:
        assert con.execute("SELECT gene_id FROM genes").fetchone() == ("7157",)


def test_checksum_mismatch_caches_nothing(tmp_path, tarball_package, monkeypatch):
    monkeypatch.setitem(
        bioconductor.PACKAGES, "Tiny.db", AnnotationPackage(**{**tarball_package.__dict__, "sqlite_sha256": "0" * 64})
    )
    databases = AnnotationDatabases(cache_dir=str(tmp_path / "cache"), source="bioconductor")
    with pytest.raises(AnnotationDatabaseError, match="expected 0000"):
        databases.sqlite_path("Tiny.db")
    assert not list((tmp_path / "cache").rglob("*.sqlite"))


def test_corrupted_cache_entry_is_fetched_again(tmp_path, tarball_package):
    databases = AnnotationDatabases(cache_dir=str(tmp_path / "cache"), source="bioconductor")
    path = databases.sqlite_path("Tiny.db")
    path.write_bytes(b"corrupted")
    assert sha256_file(databases.sqlite_path("Tiny.db")) == tarball_package.sqlite_sha256


def test_real_annotation_databases_are_verified(annotation_cache):
    databases = AnnotationDatabases(cache_dir=str(annotation_cache))
    with databases.connect("org.Hs.eg.db") as con:
        assert con.execute("SELECT symbol FROM gene_info JOIN genes USING(_id) WHERE gene_id = '7157'").fetchone() == (
            "TP53",
        )
    with databases.connect("GO.db") as con:
        assert con.execute("SELECT term FROM go_term WHERE go_id = 'GO:0006915'").fetchone() == ("apoptotic process",)


class _EutilsHandler(http.server.BaseHTTPRequestHandler):
    """Answers esummary POSTs in the E-utilities JSON format from a small table of genes."""

    genes = {
        7157: {
            "uid": "7157",
            "name": "TP53",
            "description": "tumor protein p53",
            "summary": "This gene encodes a tumor suppressor protein containing transcriptional activation domains.",
        },
        672: {
            "uid": "672",
            "name": "BRCA1",
            "description": "BRCA1 DNA repair associated",
            "summary": "This gene encodes a nuclear phosphoprotein that plays a role in maintaining genomic stability.",
        },
        1: {"uid": "1", "name": "A1BG", "description": "alpha-1-B glycoprotein", "summary": ""},
    }
    requests: list = []
    fail_first: int = 0

    def do_POST(self):
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        type(self).requests.append(form)
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(429)
            self.end_headers()
            return
        ids = [int(i) for i in form["id"][0].split(",")]
        result = {"uids": [str(i) for i in ids if i in self.genes]}
        for i in ids:
            result[str(i)] = self.genes.get(i, {"uid": str(i), "error": "cannot get document summary"})
        body = json.dumps({"header": {"type": "esummary", "version": "0.3"}, "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def eutils_server():
    _EutilsHandler.requests = []
    _EutilsHandler.fail_first = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EutilsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/entrez/eutils", _EutilsHandler
    server.shutdown()
    server.server_close()


def test_esummary_batches_and_parses(tmp_path, eutils_server):
    url, handler = eutils_server
    client = NcbiEutils(base_url=url, batch_size=2, cache_dir=str(tmp_path), api_key="k")
    table = client.gene_summaries([7157, 672, 1, 999999])
    assert len(handler.requests) == 2
    assert handler.requests[0]["db"] == ["gene"] and handler.requests[0]["api_key"] == ["k"]
    assert table.set_index("symbol").loc["TP53", "summary"].startswith("This gene encodes a tumor suppressor")
    assert table.set_index("symbol").loc["A1BG", "summary"] is None
    assert 999999 not in set(table["entrez_id"])


def test_esummary_uses_cache_on_second_call(tmp_path, eutils_server):
    url, handler = eutils_server
    client = NcbiEutils(base_url=url, cache_dir=str(tmp_path))
    first = client.gene_summaries([7157, 672])
    second = client.gene_summaries([7157, 672])
    assert len(handler.requests) == 1
    assert first.equals(second)


def test_esummary_retries_rate_limit_responses(tmp_path, eutils_server, monkeypatch):
    url, handler = eutils_server
    handler.fail_first = 2
    monkeypatch.setattr("gene_assets.sources.ncbi_eutils.time.sleep", lambda s: None)
    table = NcbiEutils(base_url=url, cache_dir=str(tmp_path)).gene_summaries([7157])
    assert len(handler.requests) == 3 and table["symbol"].tolist() == ["TP53"]


def test_esummary_unreachable_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("gene_assets.sources.ncbi_eutils.time.sleep", lambda s: None)
    client = NcbiEutils(
        base_url="http://127.0.0.1:9/entrez/eutils", cache_dir=str(tmp_path), max_retries=1, timeout_s=2
    )
    with pytest.raises(EutilsError, match="unreachable after 2 tries"):
        client.gene_summaries([7157])
    assert not list(Path(tmp_path).rglob("*.json"))


def test_rate_limit_depends_on_api_key():
    assert NcbiEutils().requests_per_second() == 3.0
    assert NcbiEutils(api_key="x").requests_per_second() == 10.0
