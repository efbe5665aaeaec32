"""What every provider door's HTTP client reads the same way (fal_client, replicate_client,
acedata_client): which answers to a create prove nothing was made, an answer's body, a URL's origin."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

# Statuses that answer a create and prove the provider made nothing (nothing billed), by what they mean.
REFUSED = frozenset({400, 404, 405, 413, 422})
ACCOUNT = frozenset({401, 402, 403})
THROTTLED = 429


def origin(url: str) -> str:
    """scheme://host[:port], lower-cased and without credentials: where a stored URL would send our key."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()


def json_or_text(response: httpx.Response) -> Any:
    """An answer's JSON, or the first 500 characters of a body that is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
