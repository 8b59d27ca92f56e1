"""POST /records: signed measurement records, one or a batch, as their JSON form.

The body is parsed here rather than by pydantic so that every malformation gets the record
module's own message (it knows the format) and nothing reaches the database before all records
in the request parse.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lightfence.protocol.record import MeasurementRecord, RecordError
from lightfence.verifier.api import jsonbody
from lightfence.verifier.api.deps import ServiceDep, WriterDep
from lightfence.verifier.api.responses import ERRORS, BatchOut, ErrorOut, OutcomeOut
from lightfence.verifier.errors import BadInput, RateLimited

router = APIRouter(tags=["records"])


def _parse(body: bytes, max_records: int) -> tuple[list[MeasurementRecord], bool]:
    doc = jsonbody.loads(body)
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
    response_model=OutcomeOut | BatchOut,
    responses={
        **ERRORS,
        201: {"model": OutcomeOut, "description": "stored"},
        200: {"model": OutcomeOut | BatchOut, "description": "duplicate, or a batch result"},
        422: {
            "model": OutcomeOut | ErrorOut,
            "description": "rejected (the outcome, reason kept), or a malformed record (error)",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "description": "One record's JSON form (docs/protocol.md), or "
                        '{"records": [...]}',
                        "type": "object",
                    }
                }
            },
        }
    },
)
async def submit_records(request: Request, service: ServiceDep, who: WriterDep) -> JSONResponse:
    """One record object, or `{"records": [...]}` (up to `max_batch_records`).

    A single record answers 201 when stored, 200 when it was already stored, and 422 with the
    reason when rejected (the rejection is kept as possible spoofing evidence). A batch answers
    200 with one result per record.
    """
    body = await request.body()
    records, batch = _parse(body, service.config.max_batch_records)
    refused = service.limits.admit_records(who.name, len(records))
    if refused is not None:
        why, wait_s = refused
        raise RateLimited(f"rate limited: {why}; retry in {wait_s:.0f} s", wait_s)
    outcomes = await run_in_threadpool(service.ingest, records, who)
    service.limits.rejections.charge(who.name, sum(o.status == "rejected" for o in outcomes))
    if batch:
        counts = {
            s: sum(o.status == s for o in outcomes) for s in ("stored", "duplicate", "rejected")
        }
        return JSONResponse({**counts, "results": [o.to_dict() for o in outcomes]})
    out = outcomes[0]
    if out.status == "rejected":
        reason = out.reason.value if out.reason else "rejected"
        return JSONResponse(
            {**out.to_dict(), "detail": f"record rejected ({reason}): {out.detail}"},
            status_code=422,
        )
    return JSONResponse(out.to_dict(), status_code=201 if out.status == "stored" else 200)
