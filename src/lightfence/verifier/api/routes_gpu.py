"""POST /gpu-rounds: landmark-signed GPU round records with the GPU's evidence (docs/verifier.md).

Parsed here, as /records is, so that every malformation gets protocol.gpu_round's own message and
nothing reaches the database before every round in the request parses.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lightfence.protocol.gpu_round import GpuRoundError, round_from_json
from lightfence.verifier.api import jsonbody
from lightfence.verifier.api.deps import ServiceDep, WriterDep
from lightfence.verifier.api.responses import ERRORS, BatchOut
from lightfence.verifier.errors import BadInput, RateLimited
from lightfence.verifier.gpu_ingest import GpuRound

router = APIRouter(tags=["records"])


def _parse(body: bytes, max_rounds: int) -> list[GpuRound]:
    doc = jsonbody.loads(body)
    if not isinstance(doc, dict) or set(doc) != {"gpu_rounds"}:
        raise BadInput('send {"gpu_rounds": [{"record": {...}, "evidence": {...}}, ...]}')
    items: Any = doc["gpu_rounds"]
    if not isinstance(items, list) or not items:
        raise BadInput("'gpu_rounds' must be a non-empty list")
    if len(items) > max_rounds:
        raise BadInput(f"{len(items)} GPU rounds in one request; send at most {max_rounds}")
    rounds: list[GpuRound] = []
    for i, item in enumerate(items):
        try:
            rounds.append(round_from_json(item, f"gpu_rounds[{i}]"))
        except GpuRoundError as exc:
            raise BadInput(str(exc)) from None
    return rounds


@router.post(
    "/gpu-rounds",
    summary="Submit landmark-signed GPU rounds with the GPU's evidence",
    response_model=BatchOut,
    responses={**ERRORS, 200: {"model": BatchOut, "description": "one result per round"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "description": '{"gpu_rounds": [{"record": GpuRoundRecord JSON, '
                        '"evidence": {"report": base64, "chain": base64}}]} (docs/protocol.md)',
                        "type": "object",
                    }
                }
            },
        }
    },
)
async def submit_gpu_rounds(request: Request, service: ServiceDep, who: WriterDep) -> JSONResponse:
    """Each round is checked as a record is (landmark, signature, freshness, replay), its evidence
    appraised under the verifier's GPU root, its GPU compared with the device's enrolled one;
    rejections keep their reason, as for records. Answers 200 with one result per round."""
    body = await request.body()
    rounds = _parse(body, service.config.max_batch_records)
    refused = service.limits.admit_records(who.name, len(rounds))
    if refused is not None:
        why, wait_s = refused
        raise RateLimited(f"rate limited: {why}; retry in {wait_s:.0f} s", wait_s)
    outcomes = await run_in_threadpool(service.ingest_gpu, rounds, who)
    service.limits.rejections.charge(who.name, sum(o.status == "rejected" for o in outcomes))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("stored", "duplicate", "rejected")}
    return JSONResponse({**counts, "results": [o.to_dict() for o in outcomes]})
