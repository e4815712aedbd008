#!/usr/bin/env bash
# The ABIS demo with the shipped mappings/, unchanged, as a user would run it:
#   seed the source; pre-flight; a full load killed with SIGKILL mid-run, resumed and validated
#   row by row; the same load from the SQLite demo into a second database must hold the same
#   rows (one ABIS, two sources); then the legacy system lives on (demo --mutate), one
#   `migrate sync` pass moves the changes, and `validate --deep` finds every row equal.
#
#   tests/oracle/abis_smoke.sh oracle USER/PASSWORD@//HOST:PORT/SERVICE   (the oracle-smoke workflow)
#   tests/oracle/abis_smoke.sh sqlite                                      (the same steps on SQLite)
#
# Environment: PG (a PostgreSQL server URL without database, default
# postgres://postgres@127.0.0.1:5432), SCALE (default 1), MIGRATE_BIN (default
# target/release/migrate), ARTIFACTS (a directory to copy the report, the changes and the logs
# into). For oracle, MIGRATE_SOURCE is the oracle:// URL of the same user.
# Creates the databases abis_smoke and abis_smoke_sqlite (dropped first) and works in a temporary
# directory; run from the repository root.
set -euo pipefail
kind=${1:?usage: tests/oracle/abis_smoke.sh oracle CONNECT | sqlite}
connect=${2:-}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
SCALE=${SCALE:-1}
repo=$PWD
m=$(realpath "${MIGRATE_BIN:-target/release/migrate}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r mappings "$work/mappings"
cd "$work"
step() { printf '\n==> %s\n' "$*"; }

for db in abis_smoke abis_smoke_sqlite; do
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    psql -v ON_ERROR_STOP=1 -q "$PG/$db" -f "$repo/demo/target_schema.sql" 2>&1 | grep -v NOTICE || true
done
export DATABASE_URL=$PG/abis_smoke
"$m" demo --out legacy.db --scale "$SCALE"
if [ "$kind" = oracle ]; then
    step "seeding Oracle from the demo's generator (scale $SCALE)"
    MIGRATE_BIN=$m bash "$repo/tests/oracle/seed_abis.sh" "$connect" "$SCALE"
    : "${MIGRATE_SOURCE:?set MIGRATE_SOURCE to the oracle:// URL of $connect}"
else
    export MIGRATE_SOURCE=sqlite:legacy.db
fi

step "pre-flight with the shipped mappings/"
"$m" --check-only

step "full load, killed with SIGKILL once 2,000 rows are committed"
"$m" --yes --batch-size 200 --jobs 1 -q &
pid=$!
loaded=0
for _ in $(seq 1200); do
    loaded=$(psql -tAq "$DATABASE_URL" -c "SELECT coalesce(sum(rows_loaded), 0) FROM migrate.progress" 2>/dev/null || echo 0)
    [ "${loaded:-0}" -ge 2000 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
if ! kill -9 "$pid" 2>/dev/null; then
    echo "the load ended before it could be killed ($loaded rows committed): nothing was proven" >&2
    exit 1
fi
wait "$pid" || true
psql "$DATABASE_URL" -c 'SELECT entity, rows_loaded, status FROM migrate.progress ORDER BY entity'

step "resume, then validate every row"
"$m" --yes --resume --validate --deep --report report.json

step "the same load from the SQLite demo: the targets must hold the same rows and rejects"
DATABASE_URL=$PG/abis_smoke_sqlite MIGRATE_SOURCE=sqlite:legacy.db \
    "$m" --yes -q --checkpoint sqlite_checkpoint.json
differ=0
# Per table, the columns its mapping fills (the others take defaults such as now() at load time).
for f in mappings/*.toml; do
    t=$(sed -n 's/^target = "\(.*\)"/\1/p' "$f")
    cols=$(sed -n 's/^to = "\(.*\)"/\1/p' "$f" | paste -sd, -)
    sql="SELECT count(*) || ' ' || md5(coalesce(string_agg(row($cols)::text, '|' ORDER BY id), '')) FROM $t"
    a=$(psql -tAq "$DATABASE_URL" -c "$sql")
    b=$(psql -tAq "$PG/abis_smoke_sqlite" -c "$sql")
    if [ "$a" = "$b" ]; then echo "$t: same ($a)"; else echo "$t: $kind $a, sqlite $b" >&2; differ=1; fi
done
rejects="SELECT count(*) || ' ' || md5(coalesce(string_agg(entity || ':' || row_key || ':' || coalesce(column_name, ''), '|' ORDER BY entity, row_key, column_name), '')) FROM migrate.rejects"
a=$(psql -tAq "$DATABASE_URL" -c "$rejects")
b=$(psql -tAq "$PG/abis_smoke_sqlite" -c "$rejects")
if [ "$a" = "$b" ]; then echo "rejects: same ($a)"; else echo "rejects: $kind $a, sqlite $b" >&2; differ=1; fi
[ "$differ" = 0 ]

step "the legacy system lives on: demo --mutate"
if [ "$kind" = oracle ]; then
    "$m" demo --mutate --oracle-sql changes.sql --scale "$SCALE" --round 1 | tee mutate.txt
    sqlplus -s -L "$connect" @changes.sql </dev/null
else
    "$m" demo --mutate --out legacy.db | tee mutate.txt
fi
bad=$(sed -n 's/^QA result \([0-9]*\) given.*/\1/p' mutate.txt)

step "one sync pass, then every row validated"
"$m" sync
"$m" status
"$m" validate --deep
n=$(psql -tAq "$DATABASE_URL" -c "SELECT count(*) FROM migrate.rejects WHERE entity = 'qa' AND row_key = '$bad' AND column_name = 'passed'")
if [ "$n" != 1 ]; then
    echo "QA result $bad, made invalid, is not among the rejects" >&2
    exit 1
fi
echo "QA result $bad, made invalid, moved to the rejects"
if [ -n "${ARTIFACTS:-}" ]; then
    mkdir -p "$ARTIFACTS" && cp report.json mutate.txt migration_*.log "$ARTIFACTS/" 2>/dev/null || true
fi
printf '\nABIS smoke (%s, scale %s): passed\n' "$kind" "$SCALE"
