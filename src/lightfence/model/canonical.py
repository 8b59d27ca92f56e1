"""Canonical JSON: the one byte-exact encoding that is signed or hashed (gate tokens, audit chain).

Keys sorted, no whitespace, ASCII only: two implementations that agree on the value agree on the
bytes, so a signature or hash made by one checks with the other.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
