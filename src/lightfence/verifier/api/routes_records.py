"""POST /records: signed measurement records, one or a batch, as their JSON form.

The body is parsed here rather than by pydantic so that every malformation gets the record
module's own message (it knows the format) and nothing reaches the database before all records
in the request parse.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lightfence.protocol.record import MeasurementRecord, RecordError
from lightfence.verifier.api.deps import PrincipalDep, ServiceDep
from lightfence.verifier.errors import BadInput, ServiceError

router = APIRouter(tags=["records"])


class BadJson(ServiceError):
    status = 400


def _parse(body: bytes, max_records: int) -> tuple[list[MeasurementRecord], bool]:
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise BadJson("body is not UTF-8 text; send JSON") from None
    except json.JSONDecodeError as exc:
        raise BadJson(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    batch = isinstance(doc, dict) and set(doc) == {"records"}
    items: Any = doc["records"] if batch else [doc]
    if not isinstance(items, list):
        raise BadInput("'records' must be a list of record objects")
    if not items:
        raise BadInput("'records' is empty; send at least one record")
    if len(items) > max_records:
        raise BadInput(f"{len(items)} records in one request; send at most {max_records}")
    records = []
    for i, item in enumerate(items):
        try:
            records.append(MeasurementRecord.from_json_dict(item))
        except RecordError as exc:
            where = f"records[{i}]: " if batch else ""
            raise BadInput(f"{where}{exc}") from None
    return records, batch


@router.post(
    "/records",
    summary="Submit signed measurement records",
    responses={
        201: {"description": "stored"},
        200: {"description": "duplicate, or a batch result"},
        400: {"description": "body is not JSON"},
        403: {"description": "the token may not submit this record"},
        413: {"description": "body too large"},
        422: {"description": "malformed record, or rejected (reason kept)"},
    },
)
async def submit_records(request: Request, service: ServiceDep, who: PrincipalDep) -> JSONResponse:
    """One record object, or `{"records": [...]}` (up to `max_batch_records`).

    A single record answers 201 when stored, 200 when it was already stored, and 422 with the
    reason when rejected (the rejection is kept as possible spoofing evidence). A batch answers
    200 with one result per record.
    """
    body = await request.body()
    records, batch = _parse(body, service.config.max_batch_records)
    outcomes = await run_in_threadpool(service.ingest, records, who)
    if batch:
        counts = {
            s: sum(o.status == s for o in outcomes) for s in ("stored", "duplicate", "rejected")
        }
        return JSONResponse({**counts, "results": [o.to_dict() for o in outcomes]})
    out = outcomes[0]
    if out.status == "rejected":
        reason = out.reason.value if out.reason else "rejected"
        return JSONResponse(
            {"error": f"record rejected ({reason}): {out.detail}", **out.to_dict()},
            status_code=422,
        )
    return JSONResponse(out.to_dict(), status_code=201 if out.status == "stored" else 200)
