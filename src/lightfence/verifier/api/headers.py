"""Security headers on every response, and the Content-Security-Policy of the dashboard.

The dashboard runs only its own files: no inline script, no eval, no other origin, and it may
not be framed. Leaflet needs nothing more: it styles through the CSSOM (which `style-src` does
not restrict) and its stylesheet's images come from 'self'; `data:` is the page's empty icon.
Swagger UI (/docs) loads from its CDN and runs one inline script, allowed by its hash alone.
"""

from __future__ import annotations

import base64
import hashlib
import re

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SWAGGER_CDN = "https://cdn.jsdelivr.net"

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` plus each security header it does not set itself (a route may set its own
    CSP, as /docs does)."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *(h for h in HEADERS if h[0] not in present)]


def docs_csp(html: str) -> str:
    """A CSP for Swagger UI's page: its CDN, and its inline script(s) by hash."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    )
    return (
        f"default-src 'none'; script-src {SWAGGER_CDN} {hashes}; style-src {SWAGGER_CDN}; "
        "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
