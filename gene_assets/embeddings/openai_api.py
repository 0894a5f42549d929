"""The OpenAI embeddings API as an encoder (GenePT's text-embedding-ada-002); the key comes from the environment only."""

from __future__ import annotations

import json
import os
import urllib.request

import numpy as np

from ..sources.http import HttpJsonError, request_json
from .backbone import Backbone
from .weights import BackboneUnavailableError

BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
BATCH_SIZE = 256
"""Texts per request (the API accepts up to 2,048 inputs)."""


class OpenAIEncoder:
    def __init__(self, backbone: Backbone):
        self.backbone = backbone
        self.key_env = backbone.api_key_env or "OPENAI_API_KEY"
        self.api_key = os.environ.get(self.key_env)
        if not self.api_key:
            raise BackboneUnavailableError(
                f"Backbone {backbone.name!r} calls the OpenAI embeddings API ({backbone.model_id}) and needs an API "
                f"key: set {self.key_env} in the environment (it is read from there only), or leave this backbone "
                "out of the run."
            )
        self.url = os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL).rstrip("/") + "/embeddings"

    def embed(self, texts, progress=None):
        strings = texts["text"].tolist()
        vectors = np.zeros((len(strings), self.backbone.dims), dtype=np.float32)
        for start in range(0, len(strings), BATCH_SIZE):
            batch = strings[start : start + BATCH_SIZE]
            vectors[start : start + len(batch)] = self._request(batch)
            if progress:
                progress(start + len(batch), len(strings))
        return vectors

    def _request(self, batch: list[str]) -> np.ndarray:
        body = json.dumps({"model": self.backbone.model_id, "input": batch}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        )
        try:
            answer = request_json(
                request, f"OpenAI embeddings ({self.backbone.model_id}, {len(batch)} texts) at {self.url}"
            )
        except HttpJsonError as exc:
            raise BackboneUnavailableError(
                f"Backbone {self.backbone.name!r}: {exc}. Check {self.key_env} and the network."
            ) from exc
        rows = sorted(answer.get("data", []), key=lambda item: item["index"])
        matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        if matrix.shape != (len(batch), self.backbone.dims):
            raise BackboneUnavailableError(
                f"Backbone {self.backbone.name!r}: the API returned vectors of shape {matrix.shape} for {len(batch)} "
                f"texts, expected ({len(batch)}, {self.backbone.dims})."
            )
        return matrix
