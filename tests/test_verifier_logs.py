"""JSON logs keep the whole traceback of an error, as one parseable line."""

from __future__ import annotations

import json
import logging
import sys

from lightfence.verifier.logs import JsonFormatter


def _inner() -> None:
    raise ValueError("boom")


def _record_of_failure() -> logging.LogRecord:
    try:
        _inner()
    except ValueError:
        return logging.getLogger("lightfence.verifier").makeRecord(
            "lightfence.verifier",
            logging.ERROR,
            __file__,
            1,
            "unhandled error on %s %s",
            ("GET", "/x"),
            exc_info=sys.exc_info(),
        )
    raise AssertionError("unreachable")


def test_error_log_keeps_the_whole_traceback_on_one_line() -> None:
    line = JsonFormatter().format(_record_of_failure())
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["event"] == "unhandled error on GET /x"
    assert doc["error"] == "ValueError: boom"
    assert doc["traceback"].startswith("Traceback (most recent call last):")
    assert "_inner" in doc["traceback"] and "_record_of_failure" in doc["traceback"]


def test_fields_pass_through_and_no_traceback_without_an_error() -> None:
    record = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "ev", (), None)
    record.fields = {"device": "d1", "rtt_ns": 5}
    doc = json.loads(JsonFormatter().format(record))
    assert doc["device"] == "d1" and doc["rtt_ns"] == 5
    assert "traceback" not in doc and "error" not in doc
