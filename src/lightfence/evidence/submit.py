"""POST records to a verifier over HTTP(S) with the standard library (no extra dependency).

The verifier takes `POST .../records` with one record's JSON or `{"records": [...]}`, and an
API token as `Authorization: Bearer TOKEN`. The token comes from the environment variable
LIGHTFENCE_VERIFIER_TOKEN or a token file, never from the command line (where `ps` shows it).
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

TOKEN_ENV = "LIGHTFENCE_VERIFIER_TOKEN"


def read_token(token_file: Path | None = None) -> str | None:
    """The verifier API token: from `token_file` if given, else $LIGHTFENCE_VERIFIER_TOKEN."""
    if token_file is not None:
        try:
            return token_file.read_text().strip() or None
        except OSError as exc:
            raise ValueError(f"cannot read token file {token_file}: {exc.strerror}") from None
    return os.environ.get(TOKEN_ENV) or None


def gpu_rounds_url(records_url: str) -> str:
    """The verifier's GPU-round endpoint beside its records endpoint (`.../records`)."""
    base = records_url.rstrip("/")
    if not base.endswith("/records"):
        raise ValueError(f"a verifier records URL ends with /records, got {records_url!r}")
    return base[: -len("/records")] + "/gpu-rounds"


def post_json(
    url: str, payload: object, token: str | None = None, timeout_s: float = 10.0
) -> bytes:
    """POST `payload` as JSON and return the response body.

    Raises OSError (urllib's URLError and HTTPError are OSErrors) on any network or HTTP failure,
    ValueError for a URL that is not http(s).
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"verifier URL must be http:// or https://, got {url!r}")
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        body: bytes = resp.read()
        return body
