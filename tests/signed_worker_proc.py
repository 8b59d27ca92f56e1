"""A signed-stream worker in its own process, for the crash tests: it SIGKILLs itself at a named
point of its Nth batch (a real kill: no cleanup, no flush, no offset commit), or, without a
kill point, runs until it has seen no message for `idle_s` and prints its stats as JSON.

usage: python signed_worker_proc.py DB_URL BOOTSTRAP TOPIC GROUP BATCH KILL_POINT KILL_AT IDLE_S
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from lightfence.fleet.signed_stream import SignedStreamConfig, SignedStreamWorker, worker_summary
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.service import Service


def main() -> None:
    db_url, bootstrap, topic, group, batch, kill_point, kill_at, idle_s = sys.argv[1:9]
    service = Service(VerifierConfig(db_url=db_url), migrate=False)  # the test migrated it
    seen: dict[str, int] = {}

    def fault(point: str) -> None:
        seen[point] = seen.get(point, 0) + 1
        if point == kill_point and seen[point] == int(kill_at):
            print(f"killing myself at {point} #{kill_at}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    config = SignedStreamConfig(
        bootstrap, topic, group, poll_batch=int(batch), session_timeout_ms=1500
    )
    worker = SignedStreamWorker(service, config, fault=fault)
    last = [time.monotonic(), 0]

    def should_stop() -> bool:
        if worker.stats.messages != last[1]:
            last[:] = [time.monotonic(), worker.stats.messages]
        return time.monotonic() - last[0] > float(idle_s)

    stats = worker.run(should_stop)
    service.close()
    print(json.dumps(worker_summary(stats)), flush=True)


if __name__ == "__main__":
    main()
