#!/usr/bin/env bash
# Start a PostgreSQL 15 cluster for the verifier's storage tests, on 127.0.0.1 only. Idempotent:
# installs the server when missing, creates the cluster, role and database once, starts it if it
# is down, and prints the SQLAlchemy URL on stdout (everything else goes to stderr).
# No systemd here: the cluster is managed with pg_createcluster / pg_ctlcluster.
set -euo pipefail

PG_VERSION="${LIGHTFENCE_PG_VERSION:-15}"
CLUSTER="${LIGHTFENCE_PG_CLUSTER:-lightfence}"
PORT="${LIGHTFENCE_PG_PORT:-54329}"
ROLE="${LIGHTFENCE_PG_ROLE:-lightfence}"
PASSWORD="${LIGHTFENCE_PG_PASSWORD:-lightfence}"
DB="${LIGHTFENCE_PG_DB:-lightfence}"

log() { echo "start-postgres: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null || [ ! -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ]; then
    log "installing postgresql-$PG_VERSION"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "postgresql-$PG_VERSION" >&2
fi

if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $CLUSTER"; then
    log "creating cluster $PG_VERSION/$CLUSTER on port $PORT"
    pg_createcluster "$PG_VERSION" "$CLUSTER" --port "$PORT" \
        -- --auth-local=peer --auth-host=scram-sha-256 >&2
    conf="/etc/postgresql/$PG_VERSION/$CLUSTER/postgresql.conf"
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "max_connections = 300"
        echo "shared_buffers = 128MB"
    } >>"$conf"
fi

status="$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}')"
if [ "$status" != "online" ]; then
    log "starting cluster $PG_VERSION/$CLUSTER"
    pg_ctlcluster "$PG_VERSION" "$CLUSTER" start >&2
fi

for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$PORT"; then break; fi
    sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$PORT" >&2

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -q -p $PORT -d postgres -tAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname='$ROLE'")" != "1" ]; then
    log "creating role $ROLE"
    psql_admin "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname='$DB'")" != "1" ]; then
    log "creating database $DB"
    psql_admin "CREATE DATABASE $DB OWNER $ROLE"
fi

echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
