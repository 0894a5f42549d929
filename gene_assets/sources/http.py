"""JSON over HTTP with retries on rate limits and server errors (exponential backoff)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

RETRY_STATUSES = (429, 500, 502, 503, 504)


class HttpJsonError(RuntimeError):
    """The service answered with an error, was unreachable, or returned something that is not JSON."""


def request_json(request: urllib.request.Request, what: str, max_retries: int = 4, timeout_s: float = 30.0) -> Any:
    """The decoded JSON answer to `request`; `what` names the call in error messages."""
    attempt, delay = 0, 1.0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRY_STATUSES or attempt == max_retries:
                raise HttpJsonError(f"{what} failed: HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            if attempt == max_retries:
                raise HttpJsonError(f"{what} unreachable after {attempt + 1} tries: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise HttpJsonError(f"{what} returned a response that is not JSON: {exc}") from exc
        time.sleep(delay)
        attempt, delay = attempt + 1, delay * 2
