"""The verifier's API fuzzed from its own OpenAPI schema (schemathesis), in process over ASGI:
no generated request, valid or not, may get a 500; every answer must match its documented
status codes and response schema. Few examples per operation, so it stays quick."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from verifier_support import make_fleet, token

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 8


def _schema() -> Any:
    """The app over a fresh SQLite file (made at collection: schemathesis parametrizes from
    the loaded schema; its fixture-based loader does not run under this pytest)."""
    scratch = Path(tempfile.mkdtemp(prefix="lightfence-fuzz-"))
    atexit.register(shutil.rmtree, scratch, True)
    url = f"sqlite:///{scratch}/fuzz.db"
    make_fleet(url).service.close()
    config = VerifierConfig(
        db_url=url,
        signing_key_path=str(scratch / "verifier.key"),
        write_requests_per_s=0,  # budgets off: fuzz the handlers, not the 429
        records_per_s=0,
        rejections_per_s=0,
    )
    app = create_app(config, worker=False)
    ADMIN_TOKEN.append(token(app.state.service, "fuzz-admin", Role.ADMIN))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


ADMIN_TOKEN: list[str] = []
schema = _schema()


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_generated_request_gets_a_500(case: Any) -> None:
    headers = {"authorization": f"Bearer {ADMIN_TOKEN[0]}"}
    case.call_and_validate(
        headers=headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
