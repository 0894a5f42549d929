"""gene_assets: GenePT-style gene embeddings as Dagster assets, and a Python API on their releases:
`load_embeddings`, `list_embeddings` and the tools in `gene_assets.tl` (imported when first used, so that importing
the package stays cheap)."""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING

warnings.filterwarnings(
    "ignore",
    message=r"(Function `(multi_)?observable_source_asset`|Class `Multi(ToSingleDimension)?PartitionMapping`) is "
    r"currently in beta",
)
"""The Dagster features this package uses while they are in beta (observable source assets, multi-partition
mappings) are used on purpose; their warnings would reach every command's and every run process's stderr."""

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
