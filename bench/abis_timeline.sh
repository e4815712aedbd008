#!/usr/bin/env bash
# bench/abis_timeline.sh [SCALE] — the ABIS document's expected timeline next to what migrate
# measures for the same record counts, in one run.
#
# Generates the demo (SQLite) at SCALE (default 1: the document's 98,438 rows), then RUNS times
# (default 3), each into freshly created demo target tables (demo/target_schema.sql, foreign keys
# in place): `migrate --check-only` (the pre-checks), `migrate --yes --jobs 1` (one entity after
# the other, as the document's timeline has them; seconds per entity from --report),
# `migrate validate` and `migrate validate --deep` (post-validation). As the reference, measured
# in the same run: `psql \copy` of the very rows migrate stored (exported as CSV beforehand, not
# timed) into the same empty tables, in the same order. Prints the medians.
#
# Environment: RUNS (3), BENCH_PG (postgres://postgres@127.0.0.1:5432), MIGRATE_BIN
# (target/release/migrate, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${1:-1}
RUNS=${RUNS:-3}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
BIN=$(realpath -m "${MIGRATE_BIN:-target/release/migrate}")
if [ ! -x "$BIN" ]; then
    echo "building $BIN (cargo build --release) ..." >&2
    cargo build --release --quiet
fi
command -v psql >/dev/null || { echo "bench: psql is required" >&2; exit 2; }

REPO=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/migrate-timeline.XXXXXX")
DB=abis_timeline
cleanup() {
    psql "$PG/postgres" -qXc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export PGOPTIONS="-c client_min_messages=warning"
export DATABASE_URL=$PG/$DB MIGRATE_SOURCE=sqlite:legacy.db
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
fresh_target() { psql -qX -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$REPO/demo/target_schema.sql" >/dev/null; }

psql "$PG/postgres" -qXc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
cp -r mappings "$WORK/mappings"
cd "$WORK"
"$BIN" demo --out legacy.db --scale "$SCALE" >/dev/null

# entity, Django table, the document's records and seconds (its timeline for 100K records)
DOC="carrier shipping_carrier 25 5
line production_line 10 3
customer customers_customer 1234 30
coil inventory_coil 45678 300
job production_job 23456 180
skid inventory_skid 8901 60
qa quality_qaresult 12345 120
shipment shipping_shipment 6789 60"

for run in $(seq "$RUNS"); do
    fresh_target
    t=$(now); "$BIN" --check-only >/dev/null; echo "check $(since "$t")" >>"times.$run"
    t=$(now); "$BIN" --yes --jobs 1 -q --report "report.$run.json" >/dev/null; echo "load $(since "$t")" >>"times.$run"
    t=$(now); "$BIN" validate -q >/dev/null; echo "validate $(since "$t")" >>"times.$run"
    t=$(now); "$BIN" validate --deep -q >/dev/null; echo "deep $(since "$t")" >>"times.$run"
    # per entity: rows in the source table (in scope + left out by `where`), loaded, seconds
    sed -n 's/.*"entity": *"\([a-z]*\)".*"source_rows": *\([0-9]*\).*"skipped_by_where": *\([0-9]*\).*"loaded": *\([0-9]*\).*"seconds": *\([0-9.e-]*\).*/\1 \2 \3 \4 \5/p' \
        <(tr -d '\n' <"report.$run.json" | sed 's/},/}\n/g') | awk '{ print $1, $2 + $3, $4, $5 }' >"entities.$run"
    # the reference: psql \copy of the rows migrate stored, into the same empty tables
    if [ "$run" = 1 ]; then
        while read -r _ table _ _; do
            psql -qX "$DATABASE_URL" -c "\\copy $table TO '$WORK/$table.csv' CSV"
        done <<<"$DOC"
    fi
    fresh_target
    t=$(now)
    while read -r _ table _ _; do
        psql -qX "$DATABASE_URL" -c "\\copy $table FROM '$WORK/$table.csv' CSV"
    done <<<"$DOC"
    echo "copy $(since "$t")" >>"times.$run"
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
step() { for run in $(seq "$RUNS"); do awk -v k="$1" '$1 == k { print $2 }' "times.$run"; done | median; }
entity() { for run in $(seq "$RUNS"); do awk -v k="$1" -v f="$2" '$1 == k { print $f }' "entities.$run"; done | median; }

echo
echo "ABIS at --scale $SCALE: the document's timeline against migrate on $(nproc) cores, median of $RUNS runs"
printf '%-18s %10s %10s   %10s %10s %10s\n' "step" "doc rows" "doc secs" "rows" "loaded" "secs"
printf '%-18s %10s %10s   %10s %10s %10.2f\n' "pre-checks" "" 10 "" "" "$(step check)"
total_rows=0
total_loaded=0
while read -r name _ doc_rows doc_secs; do
    rows=$(entity "$name" 2)
    loaded=$(entity "$name" 3)
    total_rows=$((total_rows + rows))
    total_loaded=$((total_loaded + loaded))
    printf '%-18s %10s %10s   %10s %10s %10.2f\n' "$name" "$doc_rows" "$doc_secs" "$rows" "$loaded" "$(entity "$name" 4)"
done <<<"$DOC"
printf '%-18s %10s %10s   %10s %10s %10.2f\n' "post-validation" "" 30 "" "" "$(step validate)"
printf '%-18s %10s %10s   %10s %10s %10.2f\n' "  validate --deep" "" "" "" "" "$(step deep)"
load=$(step load)
total=$(awk -v a="$(step check)" -v b="$load" -v c="$(step validate)" 'BEGIN { printf "%.2f", a + b + c }')
printf '%-18s %10s %10s   %10s %10s %10s\n' "total" 98438 "720-900" "$total_rows" "$total_loaded" "$total"
copy=$(step copy)
echo
awk -v r="$total_loaded" -v l="$load" -v c="$copy" 'BEGIN {
    printf "whole load (migrate --jobs 1, wall): %.2f s, %.0f rows/s\n", l, r / l
    printf "psql \\copy of the same stored rows into the same tables: %.2f s, %.0f rows/s\n", c, r / c
    printf "migrate / psql \\copy: %.2f of the rows/s\n", c / l
}'
