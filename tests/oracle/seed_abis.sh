#!/usr/bin/env bash
# Seeds Oracle with the ABIS demo: the same 8 tables and the same rows as the SQLite demo, in
# Oracle's own types (NUMBER, DATE with times, TIMESTAMP, VARCHAR2, CHAR, CLOB) and with foreign
# keys, written by `migrate demo --oracle-sql` from the one generator both sources share.
#
#   tests/oracle/seed_abis.sh USER/PASSWORD@//HOST:PORT/SERVICE [SCALE]
#
# SCALE (default 1: the document's 98,438 rows) must match a later `migrate demo --mutate
# --oracle-sql … --scale SCALE`. Runs sqlplus from PATH, or else the one inside the
# docker compose `oracle` service. MIGRATE_BIN picks the binary (default target/release/migrate).
set -euo pipefail
connect=${1:?usage: tests/oracle/seed_abis.sh USER/PASSWORD@//HOST:PORT/SERVICE [SCALE]}
scale=${2:-1}
migrate=${MIGRATE_BIN:-target/release/migrate}
sql=$(mktemp --suffix=.sql)
trap 'rm -f "$sql"' EXIT
"$migrate" demo --oracle-sql "$sql" --scale "$scale"
if command -v sqlplus >/dev/null; then
    sqlplus -s -L "$connect" @"$sql" </dev/null
else
    docker compose exec -T oracle sqlplus -s -L "$connect" <"$sql"
fi
echo "ABIS seeded at scale $scale"
