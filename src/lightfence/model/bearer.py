"""The `Authorization: Bearer` header every client of the verifier sends, built in one place.

An API token is printable ASCII without spaces (`lft_` + base64url). A token read from an env
file or a Kubernetes secret often carries a trailing newline; sent as is, the HTTP library
refuses the header with an error that quotes it, and that error text reached stderr and the gate's
decision log: the secret leaked where logs go. So surrounding white space is dropped, and a token
with any other character is refused with a message that never contains it.
"""

from __future__ import annotations


class BadApiToken(ValueError):
    """The API token cannot be sent; the message never quotes it."""


def bearer_headers(token: str | None) -> dict[str, str]:
    """{"Authorization": "Bearer TOKEN"}, or {} without a token; BadApiToken for a token with a
    space, a control or a non-ASCII character inside (its text is not repeated)."""
    if token is None:
        return {}
    text = token.strip()
    if not text:
        return {}
    if not all("!" <= c <= "~" for c in text):
        raise BadApiToken(
            f"the API token ({len(text)} characters) holds a space, a control or a non-ASCII "
            "character, which no lightfence token has: copy it again (`lft_...`)"
        )
    return {"Authorization": f"Bearer {text}"}
