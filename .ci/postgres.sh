#!/usr/bin/env bash
# A local PostgreSQL server on 127.0.0.1 for the test run (the two-worker `imgclf sweep` test).
#
# Idempotent: installs Debian's postgresql only when missing, creates the cluster, role and
# database only when missing, and leaves a running server running. Needs root (apt-get and
# switching to the postgres user). Everything it says goes to stderr; stdout is one line for
# the caller to eval:
#
#     eval "$(.ci/postgres.sh)"   # exports IMGCLF_TEST_POSTGRES_URL
set -euo pipefail

DB_USER="${IMGCLF_PG_USER:-imgclf}"
DB_NAME="${IMGCLF_PG_DB:-imgclf_test}"
DB_PASSWORD="${IMGCLF_PG_PASSWORD:-imgclf-ci-pw}"
PORT="${IMGCLF_PG_PORT:-5432}"

say() { echo "postgres.sh: $*" >&2; }

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
    say "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {found=1} END {exit !found}'; then
    say "creating cluster $VERSION/main on port $PORT"
    pg_createcluster "$VERSION" main --port "$PORT" >&2
fi
PORT="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')"

if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" && $4 == "online" {found=1} END {exit !found}'; then
    say "starting cluster $VERSION/main"
    pg_ctlcluster "$VERSION" main start >&2
fi
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || { say "server on 127.0.0.1:$PORT did not become ready"; exit 1; }

psql_admin() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtAX "$@"; }

if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != "1" ]; then
    say "creating role $DB_USER"
    psql_admin -c "CREATE ROLE \"$DB_USER\" LOGIN PASSWORD '$DB_PASSWORD'" >&2
else
    psql_admin -c "ALTER ROLE \"$DB_USER\" LOGIN PASSWORD '$DB_PASSWORD'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != "1" ]; then
    say "creating database $DB_NAME"
    psql_admin -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\"" >&2
fi

say "ready on 127.0.0.1:$PORT (database $DB_NAME, user $DB_USER)"
echo "export IMGCLF_TEST_POSTGRES_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$PORT/$DB_NAME"
