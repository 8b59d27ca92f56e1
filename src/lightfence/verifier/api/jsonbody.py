"""JSON request bodies parsed without ever answering 500.

Python's decoder raises RecursionError on deeply nested input and ValueError on integers longer
than `sys.get_int_max_str_digits()`; neither is a JSONDecodeError, so a naive handler turns them
into internal errors. Here every malformation is the client's (400), with a message.
"""

from __future__ import annotations

import json
from typing import Any

from lightfence.verifier.errors import NestedTooDeep, ServiceError


class BadJson(ServiceError):
    status = 400


def loads(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJson("body is not UTF-8 text; send JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadJson(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise NestedTooDeep(
            "JSON nested too deep; no request nests more than a few levels"
        ) from None
    except ValueError as exc:  # an integer literal longer than the interpreter converts
        raise NestedTooDeep(f"JSON number too long: {exc}") from None
