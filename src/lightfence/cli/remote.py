"""The CLI's client for a remote verifier: `--verifier URL --token-file F`, one request per call.

Every way a request can fail becomes one `RemoteError` whose message is the whole line the user
sees (after `error: `): a wrong URL, a verifier that is down or unreachable, a timeout, a token
it refuses, and each 4xx/5xx with the verifier's own `detail`, which says what to change.
No redirects are followed and proxy settings from the environment are ignored: the token goes
to the host the operator named and nowhere else.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlsplit

import typer

from lightfence.cli.errors import refused
from lightfence.crypto.tls import CA_FILE_ENV, TlsConfigError, verifier_tls
from lightfence.model.bearer import BadApiToken, bearer_headers

if TYPE_CHECKING:
    import httpx

VERIFIER_ENV = "LIGHTFENCE_VERIFIER_URL"
TOKEN_ENV = "LIGHTFENCE_VERIFIER_TOKEN"
"""The one variable every command reads a verifier API token from (agent, gate, report, these)."""
VERIFIER_KEY_ENV = "LIGHTFENCE_VERIFIER_KEY"
DEFAULT_TIMEOUT_S = 30.0
"""Generous: a verifier's first licence check loads the region geometry (seconds on a busy
host); a verifier that is down is refused at once, not timed out."""
MAX_TOKEN_FILE_BYTES = 4096
"""A token file is one short line; a larger file is something else."""
MAX_DETAIL_CHARS = 300
"""An error line quotes at most this much of the verifier's answer."""

VerifierOpt = Annotated[
    str | None,
    typer.Option(
        "--verifier",
        envvar=VERIFIER_ENV,
        help=f"Verifier base URL, e.g. http://10.0.0.1:8080. Env: {VERIFIER_ENV}.",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token-file",
        help="File holding the API token (bearer) with the role this needs; else "
        f"${TOKEN_ENV}. Never the token itself on the command line: any local user can read "
        "a process's arguments.",
        show_default=False,
    ),
]
VerifierKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--verifier-key",
        envvar=VERIFIER_KEY_ENV,
        help="The verifier's public key to pin: 64 hex, or a file holding the hex or the JSON "
        f"that GET /verifier/key serves. Env: {VERIFIER_KEY_ENV}.",
    ),
]


class RemoteError(Exception):
    """A request to the verifier failed; the message is one line saying why and what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def check_base_url(url: str) -> str:
    """The verifier's base URL without a trailing slash; RemoteError unless it is plain
    http(s)://host[:port][/path]."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise RemoteError(f"--verifier {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(
            f"--verifier must be http:// or https://HOST[:PORT], got {url!r} "
            "(e.g. http://10.0.0.1:8080)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise RemoteError("--verifier must carry no query, fragment or credentials")
    return text.rstrip("/")


@dataclass
class Remote:
    """One verifier, one token (None for public routes). Use as a context manager."""

    base_url: str
    token: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    _client: httpx.Client | None = field(default=None, init=False, repr=False)
    _headers: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_url = check_base_url(self.base_url)
        try:
            self._headers = bearer_headers(self.token)
        except BadApiToken as exc:
            raise RemoteError(f"--token-file / ${TOKEN_ENV}: {exc}") from None

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _http(self) -> httpx.Client:
        import httpx

        if self._client is None:
            try:
                verify = verifier_tls()
            except TlsConfigError as exc:
                raise RemoteError(str(exc)) from None
            self._client = httpx.Client(
                timeout=self.timeout_s,
                follow_redirects=False,
                trust_env=False,
                headers=self._headers,
                verify=verify,
            )
        return self._client

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: object) -> Any:
        return self.request("POST", path, body=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """The answer's JSON; RemoteError with one line saying why otherwise."""
        import httpx

        url = self.base_url + path
        try:
            resp = self._http().request(
                method, url, json=body if method != "GET" else None, params=params
            )
        except httpx.TimeoutException:
            raise RemoteError(
                f"the verifier at {self.base_url} did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.ConnectError as exc:
            raise RemoteError(connect_problem(self.base_url, exc)) from None
        except httpx.HTTPError as exc:
            raise RemoteError(
                f"talking to {self.base_url} failed ({type(exc).__name__}: {exc}); is it a "
                "lightfence verifier?"
            ) from None
        if resp.is_success:
            try:
                return resp.json()
            except ValueError:
                raise RemoteError(
                    f"{url} answered with something that is not JSON: is {self.base_url} a "
                    "lightfence verifier?"
                ) from None
        raise RemoteError(http_problem(self.base_url, method, path, resp), resp.status_code)


def connect_problem(base_url: str, exc: Exception) -> str:
    """Why a connection failed, told apart: a name that does not resolve, or nothing listening."""
    host = urlsplit(base_url).hostname or base_url
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the verifier's host name {host!r} (--verifier {base_url})"
        if isinstance(cause, ConnectionRefusedError):
            break
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text:
        return f"cannot resolve the verifier's host name {host!r} (--verifier {base_url})"
    if "refused" in text.lower() or isinstance(cause, ConnectionRefusedError):
        return (
            f"cannot connect to the verifier at {base_url}: connection refused (is it running, "
            "and on this address? `lightfence serve` prints where it listens)"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"cannot connect to the verifier at {base_url}: its TLS certificate does not verify "
            f"({text}); for a private CA set ${CA_FILE_ENV} to its PEM file"
        )
    return f"cannot connect to the verifier at {base_url}: {text or type(exc).__name__}"


def _detail(resp: httpx.Response) -> str | None:
    """The verifier's own `detail`, one line (pydantic's 422 list as `field: message; ...`)."""
    try:
        doc = resp.json()
    except ValueError:
        return None
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if isinstance(detail, list):
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        detail = "; ".join(parts) or None
    if detail is None:
        return None
    text = " ".join(str(detail).split())
    return text[:MAX_DETAIL_CHARS]


def http_problem(base_url: str, method: str, path: str, resp: httpx.Response) -> str:
    status = resp.status_code
    if 300 <= status < 400:
        where = resp.headers.get("location", "elsewhere")
        return (
            f"the verifier at {base_url} redirects {path} to {where} ({status}); give the URL it "
            "redirects to as --verifier (the token is not sent on to another address)"
        )
    detail = _detail(resp)
    if status == 401:
        return (
            f"the verifier refused the token (401: {detail or 'unauthorised'}); check --token-file "
            f"or ${TOKEN_ENV}"
        )
    if status == 403:
        return f"not allowed with this token (403): {detail or 'forbidden'}"
    if status == 404 and detail in (None, "Not Found"):  # no such route: the framework's 404
        return (
            f"{base_url}{path} not found (404): is {base_url} a lightfence verifier, and the "
            "id right?"
        )
    if status >= 500 and detail is None:
        return f"the verifier at {base_url} failed ({status}) on {method} {path}; see its log"
    return f"{detail or resp.reason_phrase} ({status})"


def read_token(token_file: str | None) -> str | None:
    """The API token: the first line of `token_file` if given, else ${TOKEN_ENV}, else None.
    RemoteError (without quoting the file) when the file cannot be read."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV, "").strip() or None
    path = Path(token_file).expanduser()
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise RemoteError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    lines = raw.decode("utf-8", "replace").strip().splitlines()
    if len(raw) > MAX_TOKEN_FILE_BYTES or len(lines) != 1 or not lines[0].strip():
        raise RemoteError(f"token file {path} must hold one token on one line")
    return lines[0].strip()


def require_remote(
    verifier: str | None, token_file: str | None, *, need_token: bool = True
) -> Remote:
    """The client for --verifier/--token-file, or RemoteError naming what is missing."""
    if not verifier:
        raise RemoteError(f"give the verifier's URL: --verifier URL (or ${VERIFIER_ENV})")
    token = read_token(token_file)
    if need_token and not token:
        raise RemoteError(f"give an API token: --token-file FILE (or ${TOKEN_ENV})")
    return Remote(verifier, token)


def segment(value: str) -> str:
    """`value` quoted as one URL path segment (an id may hold '/', '?' or '..')."""
    return quote(value, safe="")


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2)


def call_verifier(
    verifier: str | None, token_file: str | None, method: str, path: str, body: Any = None
) -> Any:
    """One request to the verifier for a CLI command: its JSON answer, or exit 1 with the one
    `error:` line of the RemoteError."""
    try:
        with require_remote(verifier, token_file) as remote:
            return remote.request(method, path, body=body)
    except RemoteError as exc:
        raise refused(str(exc)) from None
