"""The persisted registry of discovered backbones: one JSON file, rewritten atomically, entries never removed.

Models found by discovery (`gene_assets/automation/discovery.py`) are kept here with their original model name and
revision; `registry.get_backbone` consults this file after the built-in entries, so a discovered partition keeps
working after the source that listed it drops the model."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from ..errors import GeneAssetsError
from ..settings import DISCOVERED_REGISTRY_ENV, gene_assets_home
from ..storage import write_bytes_atomic
from .backbone import Backbone, FastPathSettings

FORMAT_VERSION = 1


class DiscoveredRegistryError(GeneAssetsError, ValueError):
    """The discovered-backbones file cannot be read."""


def discovered_registry_path() -> Path:
    """$GENE_ASSETS_DISCOVERED_REGISTRY, else gene_assets_home()/registry/discovered_backbones.json."""
    return Path(
        os.environ.get(DISCOVERED_REGISTRY_ENV, gene_assets_home() / "registry" / "discovered_backbones.json")
    ).resolve()


def partition_key(model_name: str, revision: str | None) -> str:
    """A stable, valid partition key for (model name, revision): `org__model--rev8`, shortened with a digest if long."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name.replace("/", "__")).strip("-._") or "model"
    suffix = f"--{re.sub(r'[^A-Za-z0-9]', '', revision or '')[:8] or 'norev'}"
    key = slug + suffix
    if len(key) > 128:
        digest = hashlib.sha256(f"{model_name}@{revision}".encode()).hexdigest()[:8]
        key = f"{slug[: 128 - len(suffix) - 9]}-{digest}{suffix}"
    return key


def _to_record(backbone: Backbone, discovered_at: str) -> dict:
    return {**dataclasses.asdict(backbone), "discovered_at": discovered_at}


def _from_record(record: dict, path: Path) -> Backbone:
    fields = {f.name for f in dataclasses.fields(Backbone)}
    values = {k: v for k, v in record.items() if k in fields}
    try:
        fast_path = dict(values.get("fast_path", {}))
        legacy = fast_path.pop("precision", "fp32")  # entries written when the registry fixed one CPU precision
        precisions = fast_path.pop("precisions", None) or ["fp32", legacy]
        values["fast_path"] = FastPathSettings(precisions=tuple(dict.fromkeys(precisions)), **fast_path)
        return Backbone(**values)
    except (TypeError, ValueError) as exc:
        raise DiscoveredRegistryError(
            f"{path}: entry {record.get('name')!r} is malformed ({exc}). Fix or remove the entry; discovery re-adds "
            "models still listed by its source."
        ) from exc


class DiscoveredRegistry:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else discovered_registry_path()

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            content = json.loads(self.path.read_text())
            return list(content["backbones"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DiscoveredRegistryError(
                f"{self.path} is not a discovered-backbones file ({type(exc).__name__}: {exc}). Restore it from a "
                "backup or move it away; discovery then starts a new one."
            ) from exc

    def load(self) -> dict[str, Backbone]:
        return {r["name"]: _from_record(r, self.path) for r in self.records()}

    def add(self, backbones: list[Backbone]) -> list[Backbone]:
        """Append the entries whose name is not in the file yet; existing entries are never changed or removed."""
        records = self.records()
        known = {r["name"] for r in records}
        new = [b for b in backbones if b.name not in known]
        if new:
            now = datetime.now(UTC).isoformat(timespec="seconds")
            records += [_to_record(b, now) for b in new]
            content = {"format": FORMAT_VERSION, "backbones": records}
            write_bytes_atomic(self.path, json.dumps(content, indent=1, sort_keys=True).encode())
        return new
