"""Which certificates a client of the verifier trusts over https://.

The verifier's clients (remote CLI, agent, gate, the landmark's submitter) ignore the
environment's proxy settings (`trust_env=False`, so the API token goes only to the host named),
which also made httpx ignore SSL_CERT_FILE and SSL_CERT_DIR: a verifier behind a TLS proxy with a
private CA could not be reached at all. Certificates are always verified;
this says against what: $LIGHTFENCE_CA_FILE (a PEM bundle: a private CA, or the proxy's own
certificate to pin), else SSL_CERT_FILE / SSL_CERT_DIR as httpx reads them, else certifi's roots.
"""

from __future__ import annotations

import os
import ssl
from typing import Literal

CA_FILE_ENV = "LIGHTFENCE_CA_FILE"


class TlsConfigError(ValueError):
    """The configured CA bundle cannot be loaded; the message names the variable and file."""


def verifier_tls() -> ssl.SSLContext | Literal[True]:
    """The `verify` argument for an httpx client that talks to the verifier."""
    for name, kind in (
        (CA_FILE_ENV, "cafile"),
        ("SSL_CERT_FILE", "cafile"),
        ("SSL_CERT_DIR", "capath"),
    ):
        path = os.environ.get(name)
        if path:
            try:
                if kind == "cafile":
                    return ssl.create_default_context(cafile=path)
                return ssl.create_default_context(capath=path)
            except (OSError, ssl.SSLError) as exc:
                raise TlsConfigError(
                    f"${name} {path}: cannot load the CA certificates ({exc})"
                ) from None
    return True
