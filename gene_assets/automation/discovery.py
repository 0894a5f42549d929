"""Which models discovery turns into backbones: mteb's model registry, optionally a Hugging Face Hub search, filtered
by the rules of the `model_discovery` resource."""

from __future__ import annotations

import re

from dagster import ConfigurableResource
from pydantic import Field

from ..embeddings.backbone import Backbone
from ..embeddings.discovered import partition_key
from ..embeddings.registry import BACKBONES

MAX_DISCOVERED_LENGTH = 8192
"""Token limit given to discovered models whose own limit is longer (or unknown)."""


def built_in_models() -> set[tuple[str, str | None]]:
    """(model id, revision) of the built-in entries: discovery never adds these a second time."""
    return {(b.model_id, b.revision) for b in BACKBONES.values() if b.model_id}


def full_dims(embed_dim) -> int | None:
    """mteb gives one size, or the Matryoshka sizes of a model (its full output is the largest)."""
    if isinstance(embed_dim, (list, tuple)):
        return max(embed_dim) if embed_dim else None
    return embed_dim


def backbone_from_mteb(meta) -> Backbone:
    """A backbone entry for an mteb ModelMeta; the original name and revision are its model_id and revision."""
    import mteb

    max_length = int(min(meta.max_tokens or MAX_DISCOVERED_LENGTH, MAX_DISCOVERED_LENGTH))
    return Backbone(
        name=partition_key(meta.name, meta.revision),
        kind="sentence_transformers",
        dims=int(full_dims(meta.embed_dim)),
        model_id=meta.name,
        revision=meta.revision,
        max_length=max_length,
        n_parameters=meta.n_parameters,
        origin="mteb",
        description=f"Found in mteb {mteb.__version__}'s model registry (released {meta.release_date}, "
        f"license {meta.license}).",
    )


class ModelDiscovery(ConfigurableResource):
    """Rules for adding models as backbones. Defaults: dense, text-only, English models with open weights that
    sentence-transformers loads, at most 1B parameters, with a known embedding size."""

    languages: list[str] = Field(
        default=["eng"],
        description="ISO 639-3 codes; a model qualifies when it covers one of them (gene texts are English).",
    )
    model_types: list[str] = Field(
        default=["dense"], description="mteb model types that qualify (dense: one vector per text)."
    )
    frameworks: list[str] = Field(
        default=["Sentence Transformers"],
        description=(
            "mteb frameworks of which one must load the model (the project embeds with sentence-transformers)."
        ),
    )
    open_weights_only: bool = Field(default=True, description="Only models whose weights can be downloaded.")
    min_parameters: int | None = Field(
        default=None, description="Smallest parameter count that qualifies; None: no lower bound."
    )
    max_parameters: int | None = Field(
        default=1_000_000_000,
        description=(
            "Largest parameter count that qualifies; None: no upper bound (a bound excludes models of unknown size)."
        ),
    )
    require_embed_dim: bool = Field(
        default=True, description="Only models whose embedding size is known (it sizes the partition's table)."
    )
    exclude_patterns: list[str] = Field(
        default=[], description="Regular expressions on the model name; a match is never added."
    )
    views: list[str] = Field(default=["summary"], description="Text views embedded for each new backbone.")
    max_new_per_tick: int = Field(
        default=50,
        description=(
            "New backbones added per evaluation; the rest wait for the next one (their runs queue in the gpu pool)."
        ),
    )
    huggingface_hub_search: bool = Field(
        default=False, description="Also search the Hub for MTEB-tagged sentence-transformers models (needs network)."
    )
    hub_search_limit: int = Field(default=100, description="Hub models looked at per search, most downloaded first.")

    def allowed(self, name: str, n_parameters: int | None, dims: int | None) -> bool:
        low, high = self.min_parameters, self.max_parameters
        if (low is not None or high is not None) and n_parameters is None:
            return False
        return not (
            (low is not None and n_parameters < low)
            or (high is not None and n_parameters > high)
            or (self.require_embed_dim and not dims)
            or any(re.search(pattern, name) for pattern in self.exclude_patterns)
        )

    def mteb_candidates(self) -> list[Backbone]:
        import mteb

        metas = mteb.get_model_metas(
            languages=self.languages or None,
            open_weights=True if self.open_weights_only else None,
            frameworks=self.frameworks,
            model_types=self.model_types,
            modalities=["text"],
            exclusive_modality_filter=True,
        )
        return [
            backbone_from_mteb(m)
            for m in metas
            if m.revision and full_dims(m.embed_dim) and self.allowed(m.name, m.n_parameters, full_dims(m.embed_dim))
        ]

    def hub_candidates(self, api=None) -> list[Backbone]:
        """MTEB-tagged sentence-transformers models on the Hub, most downloaded first, with their current commit,
        parameter count (safetensors) and hidden size (config.json) as embedding size."""
        from huggingface_hub import HfApi

        api = api or HfApi()
        found = []
        for model in api.list_models(
            filter="mteb",
            library="sentence-transformers",
            sort="downloads",
            limit=self.hub_search_limit,
            expand=["sha", "safetensors"],
        ):
            n_parameters = model.safetensors.total if model.safetensors else None
            config = api.model_info(model.id, revision=model.sha, expand=["config"]).config or {}
            dims = config.get("hidden_size")
            if model.sha and dims and self.allowed(model.id, n_parameters, dims):
                found.append(
                    Backbone(
                        name=partition_key(model.id, model.sha),
                        kind="sentence_transformers",
                        dims=int(dims),
                        model_id=model.id,
                        revision=model.sha,
                        max_length=512,
                        n_parameters=n_parameters,
                        origin="huggingface_hub",
                        description="Found by a Hugging Face Hub search for MTEB-tagged models.",
                    )
                )
        return found

    def candidates(self) -> list[Backbone]:
        """Every model the rules admit, built-in entries left out, one entry per partition key (mteb first)."""
        found = self.mteb_candidates() + (self.hub_candidates() if self.huggingface_hub_search else [])
        built_in = built_in_models()
        unique: dict[str, Backbone] = {}
        for backbone in found:
            if (backbone.model_id, backbone.revision) not in built_in:
                unique.setdefault(backbone.name, backbone)
        return list(unique.values())
