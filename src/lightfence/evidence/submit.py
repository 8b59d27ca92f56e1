"""POST records to a verifier over HTTP(S) with httpx, the project's one HTTP client.

The verifier takes `POST .../records` with one record's JSON or `{"records": [...]}`, and an
API token as `Authorization: Bearer TOKEN`. The token comes from the environment variable
LIGHTFENCE_VERIFIER_TOKEN or a token file, never from the command line (where `ps` shows it).
`post_json` serves a one-off submission (the agent); the landmark keeps one `httpx.AsyncClient`
and calls `post_json_async`. Both raise `SubmitError` for any network or HTTP failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lightfence.crypto.tls import TlsConfigError, verifier_tls
from lightfence.model.bearer import BadApiToken, bearer_headers

if TYPE_CHECKING:
    import httpx

MAX_ERROR_BODY_CHARS = 300
"""Of an error answer's body kept in the exception (it goes to a log line)."""


class SubmitError(OSError):
    """The verifier could not be reached, or answered with an error status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status of an error answer; None when no answer came."""

    @property
    def refused(self) -> bool:
        """A 4xx: the verifier refused the request itself (bad token, bad record); a retry of
        the same request would be refused again. Not 408 or 429 (a timeout, or the token's write
        budget spent for now): those are retried like a network failure, later."""
        return (
            self.status is not None and 400 <= self.status < 500 and self.status not in (408, 429)
        )


TOKEN_ENV = "LIGHTFENCE_VERIFIER_TOKEN"


def read_token(token_file: Path | None = None) -> str | None:
    """The verifier API token: from `token_file` if given, else $LIGHTFENCE_VERIFIER_TOKEN."""
    if token_file is not None:
        try:
            return token_file.read_text().strip() or None
        except OSError as exc:
            raise ValueError(f"cannot read token file {token_file}: {exc.strerror}") from None
    return os.environ.get(TOKEN_ENV) or None


def check_url(url: str) -> str:
    """`url` if it is http(s); ValueError otherwise (file:// and friends are never fetched)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"verifier URL must be http:// or https://, got {url!r}")
    return url


def _headers(token: str | None) -> dict[str, str]:
    try:
        return bearer_headers(token)
    except BadApiToken as exc:  # its message never quotes the token
        raise SubmitError(str(exc)) from None


def _answer(resp: httpx.Response) -> bytes:
    if resp.is_success:
        return resp.content
    detail = resp.text[:MAX_ERROR_BODY_CHARS]
    raise SubmitError(f"HTTP {resp.status_code}: {detail}", status=resp.status_code)


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

    Raises SubmitError (an OSError) on any network or HTTP failure, ValueError for a URL that
    is not http(s).
    """
    import httpx

    check_url(url)
    try:
        verify = verifier_tls()
    except TlsConfigError as exc:
        raise SubmitError(str(exc)) from None
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, verify=verify) as client:
            return _answer(client.post(url, json=payload, headers=_headers(token)))
    except httpx.HTTPError as exc:
        raise SubmitError(f"{type(exc).__name__}: {exc}") from exc


async def post_json_async(
    client: httpx.AsyncClient, url: str, payload: object, token: str | None = None
) -> bytes:
    """`post_json` on the caller's client (its connection pool and timeouts)."""
    import httpx

    check_url(url)
    try:
        return _answer(await client.post(url, json=payload, headers=_headers(token)))
    except httpx.HTTPError as exc:
        raise SubmitError(f"{type(exc).__name__}: {exc}") from exc
