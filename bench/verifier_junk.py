"""Storage per junk record: database growth when a writer token floods the verifier with records
that parse but name made-up landmarks and devices (issue 17, finding 5), this tree against a git
revision, both fed the same junk in the same run.

Each tree runs in its own process (the revision's from a temporary git worktree) on a fresh
SQLite file, through its HTTP app (FastAPI's in-process client, write budgets off where the tree
has them), and reports the growth in used database pages after the flood, per junk record.

    python -m bench.verifier_junk [--base main] [--records 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import software_identity
from lightfence.protocol.challenge import challenge_signing_bytes
from lightfence.protocol.record import MeasurementRecord, TimestampSource

REPO = Path(__file__).resolve().parent.parent
BATCH = 1000
LANDMARK_SEED = b"junk-bench-landmark".ljust(32, b"\0")

_CHILD = r"""
import json, sqlite3, sys, time, dataclasses
from pathlib import Path
from fastapi.testclient import TestClient
from lightfence.crypto.keys import SigningKey
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Principal, Role, create_token
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.registry import LandmarkSpec, put_landmark

db, junk_path, seed = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
fields = {f.name for f in dataclasses.fields(VerifierConfig)}
off = {k: 0 for k in ("write_requests_per_s", "records_per_s", "rejections_per_s") if k in fields}
app = create_app(VerifierConfig(db_url=f"sqlite:///{db}", **off), worker=False)
service = app.state.service
key = SigningKey.from_seed(seed)
with service.write() as s:
    put_landmark(s, LandmarkSpec("fra1", 50.11, 8.68, key.public_bytes.hex(), "lf"),
                 Principal("bench", Role.ADMIN), now_ns())
    secret = create_token(s, name="w", role=Role.ADMIN, owner=None, actor="b", now_ns=now_ns())

def used_bytes():
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    return (pages - free) * size

def rows():
    con = sqlite3.connect(db)
    out = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
           for t in ("rejections", "alerts", "audit_log")}
    con.close()
    return out

batches = json.loads(Path(junk_path).read_text())
before, rows_before = used_bytes(), rows()
started = time.perf_counter()
with TestClient(app) as client:
    for batch in batches:
        r = client.post("/records", json={"records": batch},
                        headers={"authorization": f"Bearer {secret}"})
        assert r.status_code == 200 and r.json()["rejected"] == len(batch), r.text[:300]
elapsed = time.perf_counter() - started
after, rows_after = used_bytes(), rows()
n = sum(len(b) for b in batches)
print(json.dumps({"records": n, "bytes": after - before, "seconds": elapsed,
                  "rows": {t: rows_after[t] - rows_before[t] for t in rows_after}}))
"""


def junk_batches(n: int) -> list[list[dict[str, object]]]:
    """Records signed by nobody the verifier knows: half name made-up landmarks, half the
    registered landmark with made-up devices; every one has a fresh session and device id."""
    landmark = SigningKey.from_seed(LANDMARK_SEED)
    device = SigningKey.generate()
    ident = software_identity(device)
    session = uuid.uuid4().bytes
    nonce = os.urandom(32)
    sig = device.sign(challenge_signing_bytes(nonce, "fra1", ident.device_id, session, 0))
    base = MeasurementRecord(
        landmark_id="fra1",
        landmark_key_id=landmark.key_id,
        device_id=ident.device_id,
        device_key_id=device.key_id,
        trust_level=ident.trust_level,
        session_id=session,
        rounds_sent=1,
        rtts_ns=(1_000_000,),
        fastest_round=0,
        fastest_nonce=nonce,
        device_signature=sig,
        timestamp_source=TimestampSource.MONOTONIC,
        measured_at_unix_ns=time.time_ns(),
        landmark_signature=bytes(64),
    ).to_json_dict()
    out: list[dict[str, object]] = []
    for i in range(n):
        made_up = {"device_id": uuid.uuid4().hex, "session_id": uuid.uuid4().hex}
        lid = "fra1" if i % 2 else f"junk-{uuid.uuid4().hex[:12]}"
        out.append({**base, **made_up, "landmark_id": lid})
    return [out[k : k + BATCH] for k in range(0, n, BATCH)]


def run_tree(src: Path, junk: Path, scratch: Path, label: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    db = scratch / f"{label}.db"
    cmd = [sys.executable, "-c", _CHILD, str(db), str(junk), LANDMARK_SEED.hex()]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{label} tree failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lightfence-junk-") as tmp:
        scratch = Path(tmp)
        junk = scratch / "junk.json"
        junk.write_text(json.dumps(junk_batches(args.records)))
        base_tree = scratch / "base"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), args.base],
            check=True,
            capture_output=True,
        )
        try:
            base = run_tree(base_tree / "src", junk, scratch, "base")
            this = run_tree(REPO / "src", junk, scratch, "this")
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)],
                check=False,
                capture_output=True,
            )
    print(f"junk records: {args.records} in batches of {BATCH}, SQLite, one writer token")
    for label, r in ((f"base ({args.base})", base), ("this tree", this)):
        n, grown = int(str(r["records"])), int(str(r["bytes"]))
        print(
            f"{label:>16}: grew {grown:>10,} bytes = {grown / n:7.1f} bytes/record, "
            f"{n / float(str(r['seconds'])):6.0f} records/s, rows added {r['rows']}"
        )
    print(
        "growth is in used SQLite pages (page_count - freelist_count) after a WAL checkpoint; "
        "rows that fit in pages already allocated add 0"
    )


if __name__ == "__main__":
    main()
