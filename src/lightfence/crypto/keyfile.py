"""A pinned public key as an operator hands it over: one parser for every `--verifier-key`.

Accepted, so that what `GET /verifier/key` serves can be pinned as it is:

    3b6a27bc...(64 hex digits)                     the key itself, on the command line
    a file holding 64 hex digits per line          several lines for a key rotation; `#` comments
    a file holding {"public_key": HEX, "key_id": ID}   the JSON that GET /verifier/key serves
    a file holding a JSON list of such objects     (or of hex strings)

A `key_id` given with a key must match it, so a pasted answer from another verifier is caught.
Pure apart from reading the one file it is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightfence.crypto.keys import PUBLIC_KEY_LEN, key_id, parse_public_key_hex

MAX_KEY_FILE_BYTES = 64 * 1024
"""A key file is a few lines; anything larger is not one."""


class KeyFileError(ValueError):
    """The value names no usable public key; the message says what was expected."""


def _is_hex_key(text: str) -> bool:
    t = text.strip()
    return len(t) == 2 * PUBLIC_KEY_LEN and all(c in "0123456789abcdefABCDEF" for c in t)


def _from_json_item(item: object, where: str) -> bytes:
    if isinstance(item, str):
        return parse_public_key_hex(item)
    if not isinstance(item, dict) or not isinstance(item.get("public_key"), str):
        raise KeyFileError(
            f'{where}: expected {{"public_key": "<64 hex digits>", "key_id": ...}} '
            "(what GET /verifier/key serves)"
        )
    raw = parse_public_key_hex(item["public_key"])
    claimed = item.get("key_id")
    if claimed is not None and claimed != key_id(raw):
        raise KeyFileError(f"{where}: key_id {claimed!r} does not belong to its public_key")
    return raw


def parse_public_keys(text: str, source: str = "key") -> list[bytes]:
    """Raw Ed25519 public keys from a key file's text (any form of the module docstring)."""
    stripped = text.strip()
    try:
        if stripped.startswith(("{", "[")):
            try:
                doc = json.loads(stripped)
            except ValueError as exc:
                raise KeyFileError(f"{source}: not valid JSON ({exc})") from None
            items = doc if isinstance(doc, list) else [doc]
            keys = [_from_json_item(item, source) for item in items]
        else:
            keys = []
            for n, line in enumerate(text.splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if line:
                    if not _is_hex_key(line):
                        # Never quote the line: the path may name some other, secret file.
                        raise KeyFileError(
                            f"{source}:{n} is not 64 hex digits: the file holds neither 64 hex "
                            "digits nor the JSON of GET /verifier/key"
                        )
                    try:
                        keys.append(parse_public_key_hex(line))
                    except ValueError as exc:
                        raise KeyFileError(f"{source}:{n}: {exc}") from None
    except KeyFileError:
        raise
    except ValueError as exc:
        raise KeyFileError(f"{source}: {exc}") from None
    if not keys:
        raise KeyFileError(
            f"{source} holds no public key: give 64 hex digits, or the JSON of GET /verifier/key"
        )
    return keys


def read_public_keys(value: str | Path) -> list[bytes]:
    """The keys a `--verifier-key` value names: 64 hex digits are the key itself; anything
    else is a file path (module docstring). KeyFileError saying what is wrong otherwise."""
    text = str(value)
    if _is_hex_key(text):
        try:
            return [parse_public_key_hex(text)]
        except ValueError as exc:
            raise KeyFileError(f"--verifier-key: {exc}") from None
    path = Path(text)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyFileError(
            f"cannot read verifier key file {path}: the value is neither 64 hex digits nor an "
            "existing file"
        ) from None
    except OSError as exc:
        raise KeyFileError(
            f"cannot read verifier key file {path}: {exc.strerror or exc} "
            "(give the key as 64 hex digits, or a file holding it)"
        ) from None
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not text: not a key file") from None
    return parse_public_keys(content, str(path))


def read_verifier_key(value: str | Path) -> bytes:
    """The one key a `--verifier-key` value names (what signs the landmark registry); a file
    with several keys is refused, since a registry is checked against one pinned key."""
    keys = read_public_keys(value)
    if len(keys) != 1:
        raise KeyFileError(f"--verifier-key names {len(keys)} keys; pin exactly one")
    return keys[0]
