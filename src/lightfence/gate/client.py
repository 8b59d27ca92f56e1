"""The gate's I/O: fetch a token, keep the last one, log every decision. Thin over `decision`.

Network: one GET to `{verifier_url}/devices/{device_id}/token`, nothing else. No redirects are
followed and proxy settings from the environment are ignored, so the gate never talks to a
host other than the one it was given. Timeouts are short: a verifier that is slow to answer is
down, and the operator's policy (fail-closed or fail-open) decides what that means.

State, under one directory (`--state-dir`):
- `decisions.jsonl`: append-only, one JSON object per decision, each with the token it rested
  on so an auditor can re-check the signature offline. Written with O_APPEND under an flock
  and fsynced before the answer is given; a decision that cannot be logged is not given.
- `tokens/<device_id>.token`: the newest authentic token seen for the device, replaced
  atomically. It is re-authenticated on every read, so editing it can forge nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from lightfence.crypto.keyfile import KeyFileError, read_public_keys
from lightfence.crypto.tls import verifier_tls
from lightfence.gate.decision import Decision, Fetched, GatePolicy, SourceStatus, decide
from lightfence.gate.token import MAX_TOKEN_CHARS
from lightfence.model.bearer import bearer_headers
from lightfence.protocol.challenge import id_bytes

DEFAULT_CONNECT_TIMEOUT_S = 2.0
DEFAULT_READ_TIMEOUT_S = 3.0
MAX_RESPONSE_BYTES = 16 * 1024
"""A token answer is well under 1 kB; anything much larger is not one."""
DECISION_LOG_NAME = "decisions.jsonl"
TOKEN_DIR_NAME = "tokens"


class GateStateError(Exception):
    """The state directory, decision log or token cache cannot be used. The gate answers unknown."""


def check_verifier_url(url: str) -> str:
    """The base URL without a trailing slash; ValueError unless it is plain http(s)://host[/path]."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"verifier URL must be http:// or https://host[:port][/path], got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("verifier URL must carry no query, fragment or credentials")
    return url.strip().rstrip("/")


def check_device_id(device_id: str) -> str:
    try:
        id_bytes(device_id)
    except (ValueError, TypeError):
        raise ValueError(
            f"device id must be 32 lowercase hex digits (lightfence device id), got {device_id!r}"
        ) from None
    return device_id


def _token_from_body(body: str) -> str:
    """The token text from a 200 body: JSON `{"token": ...}` or the bare compact form."""
    body = body.strip()
    if not body.startswith("{"):
        return body
    try:
        obj = json.loads(body)
    except ValueError:
        return body
    token = obj.get("token") if isinstance(obj, dict) else None
    return token if isinstance(token, str) else ""


class VerifierClient:
    """Fetches tokens from one verifier; reuse it for several devices (one TLS setup).

    Never raises for network trouble: an unreachable, slow or failing verifier gives an
    UNAVAILABLE result, and the operator's policy decides what that means.
    """

    def __init__(
        self,
        verifier_url: str,
        *,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        api_token: str | None = None,
    ) -> None:
        """`api_token`: the verifier API token (an operator's, for its own devices)."""
        import httpx  # here, not at the top: every other `lightfence` command would pay for it

        self.base = check_verifier_url(verifier_url)
        self.source = f"verifier:{self.base}"
        # httpx's read timeout is per read; this bounds a verifier that drips bytes slowly.
        self.total_timeout_s = connect_timeout_s + 2 * read_timeout_s
        self._client = httpx.Client(
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            follow_redirects=False,
            trust_env=False,
            headers=bearer_headers(api_token),  # BadApiToken (a ValueError) never quotes it
            verify=verifier_tls(),  # TlsConfigError (a ValueError) for an unreadable CA file
        )

    def __enter__(self) -> VerifierClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch(self, device_id: str) -> Fetched:
        import httpx

        url = f"{self.base}/devices/{check_device_id(device_id)}/token"
        deadline = time.monotonic() + self.total_timeout_s
        try:
            with self._client.stream("GET", url, headers={"Accept": "application/json"}) as resp:
                body = b""
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        break
                    if time.monotonic() > deadline:
                        return self._unavailable(f"answer took over {self.total_timeout_s:.0f} s")
                status = resp.status_code
        except httpx.HTTPError as exc:
            return self._unavailable(f"{type(exc).__name__}: {exc}")
        if status == 404:
            return Fetched(SourceStatus.NO_VERDICT, self.source, detail="HTTP 404: no verdict")
        if status != 200:
            return self._unavailable(f"HTTP {status}")
        if len(body) > MAX_RESPONSE_BYTES:
            return Fetched(SourceStatus.TOKEN, self.source, token_text="", detail="too large")
        text = _token_from_body(body.decode("utf-8", "replace"))
        return Fetched(SourceStatus.TOKEN, self.source, token_text=text)

    def _unavailable(self, detail: str) -> Fetched:
        return Fetched(SourceStatus.UNAVAILABLE, self.source, detail=detail)


def fetch_token(
    verifier_url: str,
    device_id: str,
    *,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> Fetched:
    """Ask the verifier once for one device's token (see VerifierClient)."""
    with VerifierClient(
        verifier_url, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s
    ) as client:
        return client.fetch(device_id)


def read_token_file(path: Path) -> Fetched:
    """A token from a file (compact form, or the verifier's JSON answer). Missing = unavailable."""
    source = f"file:{path}"
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TOKEN_CHARS * 4 + 1)
    except FileNotFoundError:
        return Fetched(SourceStatus.UNAVAILABLE, source, detail="token file not found")
    except OSError as exc:
        return Fetched(SourceStatus.UNAVAILABLE, source, detail=f"cannot read: {exc.strerror}")
    return Fetched(
        SourceStatus.TOKEN, source, token_text=_token_from_body(raw.decode("utf-8", "replace"))
    )


def load_verifier_keys(value: str | Path) -> list[bytes]:
    """Trusted verifier public keys from a `--verifier-key` value: 64 hex digits, or a file of
    hex lines (several for rotation) or of the JSON GET /verifier/key serves (crypto.keyfile)."""
    try:
        return read_public_keys(value)
    except KeyFileError as exc:
        raise GateStateError(str(exc)) from None


class GateState:
    """The decision log and token cache under one directory (created 0700 if absent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_path = directory / DECISION_LOG_NAME
        self.token_dir = directory / TOKEN_DIR_NAME
        try:
            self.token_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise GateStateError(
                f"cannot create gate state directory {directory}: {exc.strerror}; "
                "pass --state-dir or set LIGHTFENCE_GATE_STATE"
            ) from None

    def cached_token(self, device_id: str) -> str | None:
        try:
            return (self.token_dir / f"{check_device_id(device_id)}.token").read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return None  # unreadable cache is no evidence; the decision does not need it

    def store_token(self, device_id: str, text: str) -> None:
        final = self.token_dir / f"{check_device_id(device_id)}.token"
        tmp = final.with_suffix(f".tmp{os.getpid()}")
        try:
            tmp.write_text(text)
            os.replace(tmp, final)
        except OSError as exc:
            raise GateStateError(f"cannot write token cache {final}: {exc.strerror}") from None

    def append(self, decision: Decision) -> None:
        """Append one JSON line and fsync; GateStateError if it cannot be made durable."""
        line = (json.dumps(decision.to_json_dict(), sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise GateStateError(
                f"cannot open decision log {self.log_path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.write(fd, line) != len(line):
                raise GateStateError(f"short write to decision log {self.log_path}")
            os.fsync(fd)
        except OSError as exc:
            raise GateStateError(
                f"cannot write decision log {self.log_path}: {exc.strerror}"
            ) from None
        finally:
            os.close(fd)  # closing releases the lock


def read_decision_log(path: Path) -> Iterable[dict[str, object]]:
    """The logged decisions, oldest first (for tests and audits)."""
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError(f"{path}:{n}: not a JSON object")
                yield entry


def check_device(
    device_id: str,
    fetch: Callable[[], Fetched],
    *,
    verifier_public_keys: list[bytes],
    policy: GatePolicy,
    state: GateState,
    clock: Callable[[], float] = time.time,
) -> Decision:
    """Fetch, decide, remember the newest authentic token, log. Raises GateStateError only."""
    fetched = fetch()
    cached = state.cached_token(device_id)
    decision = decide(
        device_id,
        fetched,
        cached_text=cached,
        verifier_public_keys=verifier_public_keys,
        policy=policy,
        now_unix_s=clock(),
    )
    if decision.token_text is not None and decision.token_text != cached:
        state.store_token(device_id, decision.token_text)
    state.append(decision)
    return decision
