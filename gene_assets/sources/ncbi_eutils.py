"""NCBI E-utilities client for gene summaries: batched esummary, rate-limited, cached on disk."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from ..settings import gene_assets_home
from ..storage import write_bytes_atomic
from .http import HttpJsonError, request_json

EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"


class EutilsError(RuntimeError):
    """E-utilities returned an error or an unreadable response."""


class NcbiEutils(ConfigurableResource):
    """esummary for db=gene. Requests per second: 3 without an API key, 10 with one (NCBI's limits)."""

    base_url: str = Field(default=EUTILS_URL, description="E-utilities base URL.")
    api_key: str | None = Field(
        default=None,
        description="NCBI API key (from $NCBI_API_KEY); raises the limit from 3 to 10 requests per second.",
    )
    email: str | None = Field(
        default=None, description="Contact e-mail sent with each request, as NCBI asks (from $NCBI_EMAIL)."
    )
    tool: str = Field(default="gene_assets", description="Tool name sent with each request, as NCBI asks.")
    batch_size: int = Field(default=200, description="Gene ids per esummary request.")
    max_retries: int = Field(default=4, description="Retries of a failed request.")
    timeout_s: float = Field(default=30.0, description="Seconds a request may take.")
    cache_dir: str = Field(
        default=str(gene_assets_home() / "cache" / "ncbi_esummary"),
        description="Where each gene's esummary record is kept, so a rerun asks NCBI only for new genes.",
    )

    def requests_per_second(self) -> float:
        return 10.0 if self.api_key else 3.0

    def gene_summaries(
        self, entrez_ids: Iterable[int], progress: Callable[[int, int], None] | None = None
    ) -> pd.DataFrame:
        """One row per requested gene found by NCBI: entrez_id, symbol, full_name, summary, source."""
        ids = sorted({int(i) for i in entrez_ids})
        records: dict[int, dict] = {}
        missing = []
        for gene_id in ids:
            cached = self._cache_path(gene_id)
            if cached.exists():
                records[gene_id] = json.loads(cached.read_text())
            else:
                missing.append(gene_id)
        limiter = _RateLimiter(self.requests_per_second())
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            limiter.wait()
            result = self._esummary(batch)
            for gene_id in batch:
                doc = result.get(str(gene_id))
                if doc is None or "error" in doc:
                    continue
                write_bytes_atomic(self._cache_path(gene_id), json.dumps(doc).encode())
                records[gene_id] = doc
            if progress:
                progress(min(start + self.batch_size, len(missing)), len(missing))
        rows = [
            {
                "entrez_id": gene_id,
                "symbol": doc.get("name", ""),
                "full_name": doc.get("description", ""),
                "summary": (doc.get("summary") or "").strip() or None,
                "source": "ncbi_eutils_esummary",
            }
            for gene_id, doc in sorted(records.items())
        ]
        return pd.DataFrame(rows, columns=["entrez_id", "symbol", "full_name", "summary", "source"])

    def _cache_path(self, gene_id: int) -> Path:
        return Path(self.cache_dir) / f"{gene_id % 1000:03d}" / f"{gene_id}.json"

    def _esummary(self, ids: list[int]) -> dict:
        params = {"db": "gene", "id": ",".join(map(str, ids)), "retmode": "json", "tool": self.tool}
        if self.email:
            params["email"] = self.email
        if self.api_key:
            params["api_key"] = self.api_key
        body = urllib.parse.urlencode(params).encode()
        url = f"{self.base_url.rstrip('/')}/esummary.fcgi"
        try:
            payload = request_json(
                urllib.request.Request(url, data=body),
                f"esummary for {len(ids)} genes at {url}",
                self.max_retries,
                self.timeout_s,
            )
        except HttpJsonError as exc:
            raise EutilsError(str(exc)) from exc
        if "error" in payload:
            raise EutilsError(f"esummary at {url} answered with an error: {payload['error']}")
        if "result" not in payload:
            raise EutilsError(f"esummary at {url} returned no 'result' field")
        return payload["result"]


class _RateLimiter:
    def __init__(self, per_second: float):
        self.interval = 1.0 / per_second
        self.last = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            pause = self.last + self.interval - now
            if pause > 0:
                time.sleep(pause)
            self.last = time.monotonic()
