"""POST JSON to a verifier over HTTP(S) with the standard library (no extra dependency)."""

from __future__ import annotations

import json
import urllib.request


def post_json(url: str, payload: object, timeout_s: float = 10.0) -> bytes:
    """POST `payload` as JSON and return the response body.

    Raises OSError (urllib's URLError and HTTPError are OSErrors) on any network or HTTP failure,
    ValueError for a URL that is not http(s).
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"verifier URL must be http:// or https://, got {url!r}")
    req = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        body: bytes = resp.read()
        return body
