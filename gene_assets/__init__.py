"""gene_assets: GenePT-style gene embeddings as Dagster assets, and a Python API on their releases:
`load_embeddings`, `list_embeddings` and the tools in `gene_assets.tl` (imported when first used, so that importing
the package stays cheap)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import tl
    from .release.published import list_embeddings, load_embeddings

__all__ = ["list_embeddings", "load_embeddings", "tl"]


def __getattr__(name: str):
    if name in ("list_embeddings", "load_embeddings"):
        return getattr(importlib.import_module(".release.published", __name__), name)
    if name == "tl":
        return importlib.import_module(".tl", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
