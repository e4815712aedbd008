#!/usr/bin/env bash
# bench/throughput.sh [ROWS] — migrate against `psql \copy` of the same data, in one run.
#
# Generates the demo legacy database (SQLite) at about ROWS rows (default 2,100,000), then, RUNS
# times (default 3), each load into a fresh database made from a template:
#   - psql \copy of CSV exported beforehand (the export is not timed), one stream;
#   - the same, one stream per core (each table's CSV split into that many parts);
#   - pgloader (data only), when it is installed, from a copy of the source whose declared types
#     have no "(n)" (Debian's pgloader cannot parse "varchar2(100)");
#   - migrate with identity mappings (`migrate scaffold`), into the same tables, as it comes and
#     with --defer-indexes (each primary key built after its table's load);
#   - migrate with the demo mappings and their real transforms, into the demo target schema
#     (foreign keys in place), then the same with --defer-indexes;
#   - psql \copy of the demo target's end state (what migrate loaded, as CSV), one stream per
#     core, with the target's foreign keys and plain indexes dropped first and re-created (and
#     validated) after: the fastest raw load of that schema, the floor for the demo mappings;
#   - a LOB table (a 100 KB text and a 1 MB bytes column in every row, LOB_ROWS rows): psql
#     \copy of it against migrate, in MB/s.
# Every load is checked for its rows (and the demo loads for every foreign key validated). Prints
# the median seconds and rows/s of each, the ratio to the fastest \copy, and peak RSS
# (/usr/bin/time -v).
#
# Environment: RUNS (3), BENCH_PG (postgres://postgres@127.0.0.1:5432), MIGRATE_BIN
# (target/release/migrate, built if missing), MIGRATE_ARGS (extra arguments for migrate runs),
# JOBS (streams for the per-core \copy; default nproc), LOB_ROWS (100; 0 skips the LOB table),
# CASES (which groups to run: "copy ident fk demo lob", the default, or a part of it).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${1:-2100000}
RUNS=${RUNS:-3}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
BIN=${MIGRATE_BIN:-target/release/migrate}
JOBS=${JOBS:-$(nproc)}
EXTRA=${MIGRATE_ARGS:-}
LOB_ROWS=${LOB_ROWS:-100}
CASES=" ${CASES:-copy ident fk demo lob} "
want() { [[ "$CASES" == *" $1 "* ]]; }

if [ ! -x "$BIN" ]; then
    echo "building $BIN (cargo build --release) ..." >&2
    cargo build --release --quiet
fi
# Runs below start in the work directory: the binary's path must not depend on where.
BIN=$(realpath "$BIN")
for tool in psql sqlite3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/migrate-bench.XXXXXX")
DBS="bench_copy bench_ident bench_fk bench_fk_tmpl bench_demo bench_ident_tmpl bench_demo_tmpl bench_floor bench_pgl bench_lob bench_lob_tmpl"
cleanup() {
    for d in $DBS; do psql "$PG/postgres" -qXc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

export PGOPTIONS="-c client_min_messages=warning"
now() { date +%s.%N; }
say() { echo "$@" >&2; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }
rss_of() { awk '/Maximum resident/ { print $NF }' "$1"; }

# --- data (not timed) ------------------------------------------------------------------------
SCALE=$(awk -v r="$ROWS" 'BEGIN { printf "%.4f", r / 98438 }')
say "generating the demo source at scale $SCALE ..."
"$BIN" demo --out "$WORK/legacy.db" --scale "$SCALE" --force -q >/dev/null
TABLES=$(sqlite3 "$WORK/legacy.db" "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
TOTAL=0
for t in $TABLES; do
    n=$(sqlite3 "$WORK/legacy.db" "SELECT count(*) FROM $t")
    TOTAL=$((TOTAL + n))
done
NTABLES=$(echo "$TABLES" | wc -w)

say "scaffolding identity mappings and DDL, exporting CSV ..."
"$BIN" scaffold --source "sqlite://$WORK/legacy.db" --out "$WORK/identity" --ddl "$WORK/identity.sql" -q >/dev/null
mkdir -p "$WORK/csv"
for t in $TABLES; do
    sqlite3 -csv "$WORK/legacy.db" "SELECT * FROM $t" >"$WORK/csv/$t.csv"
    # Values hold newlines, so the parts are exported apart rather than split by line.
    for i in $(seq 0 $((JOBS - 1))); do
        sqlite3 -csv "$WORK/legacy.db" "SELECT * FROM $t WHERE rowid % $JOBS = $i" >"$WORK/csv/$t.part.$(printf "%02d" "$i")"
    done
done

# The same source with its foreign keys declared (so `scaffold --ddl` writes them) and the demo's
# deliberate orphans deleted (so every key validates): the identity + foreign keys case.
say "declaring foreign keys in a copy of the source, orphans deleted ..."
FKS="AB_COIL:CUSTOMER_ID:AB_CUSTOMER:CUSTOMER_ID AB_JOB:CUSTOMER_ID:AB_CUSTOMER:CUSTOMER_ID
AB_JOB:COIL_ID:AB_COIL:COIL_ID AB_SKID:JOB_ID:AB_JOB:JOB_ID AB_QA_RESULT:JOB_ID:AB_JOB:JOB_ID
AB_SHIPMENT:CUSTOMER_ID:AB_CUSTOMER:CUSTOMER_ID AB_SHIPMENT:CARRIER_ID:AB_CARRIER:CARRIER_ID"
{
    echo "ATTACH '$WORK/legacy.db' AS s;"
    # Parents before children, so each child keeps only rows whose parents were kept.
    for t in AB_CARRIER AB_LINE AB_CUSTOMER AB_COIL AB_JOB AB_SKID AB_QA_RESULT AB_SHIPMENT; do
        ddl=$(sqlite3 "$WORK/legacy.db" "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '$t'")
        refs="" cond="1"
        for fk in $FKS; do
            IFS=: read -r child col parent pcol <<<"$fk"
            [ "$child" = "$t" ] || continue
            refs="$refs,
  FOREIGN KEY ($col) REFERENCES $parent ($pcol)"
            cond="$cond AND ($col IS NULL OR $col IN (SELECT $pcol FROM main.$parent))"
        done
        ddl=${ddl%)}
        echo "${ddl%$'\n'}$refs
);"
        echo "INSERT INTO main.$t SELECT * FROM s.$t WHERE $cond;"
    done
} | sqlite3 "$WORK/fk.db"
FK_TOTAL=0
for t in $TABLES; do FK_TOTAL=$((FK_TOTAL + $(sqlite3 "$WORK/fk.db" "SELECT count(*) FROM $t"))); done
"$BIN" scaffold --source "sqlite://$WORK/fk.db" --out "$WORK/fk-identity" --ddl "$WORK/fk-identity.sql" -q >/dev/null
FK_COUNT=$(grep -c "FOREIGN KEY" "$WORK/fk-identity.sql")
mkdir -p "$WORK/fk-csv"
for t in $TABLES; do
    for i in $(seq 0 $((JOBS - 1))); do
        sqlite3 -csv "$WORK/fk.db" "SELECT * FROM $t WHERE rowid % $JOBS = $i" >"$WORK/fk-csv/$t.part.$(printf "%02d" "$i")"
    done
done

for d in $DBS; do psql "$PG/postgres" -qXc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null; done
psql "$PG/postgres" -qXc "CREATE DATABASE bench_fk_tmpl" >/dev/null
psql "$PG/bench_fk_tmpl" -qX -v ON_ERROR_STOP=1 -f "$WORK/fk-identity.sql" >/dev/null
psql "$PG/postgres" -qXc "CREATE DATABASE bench_ident_tmpl" >/dev/null
psql "$PG/bench_ident_tmpl" -qX -v ON_ERROR_STOP=1 -f "$WORK/identity.sql" >/dev/null
psql "$PG/postgres" -qXc "CREATE DATABASE bench_demo_tmpl" >/dev/null
"$BIN" demo --out "$WORK/schema-only.db" --scale 0.001 --force --create-target -q \
    --target "$PG/bench_demo_tmpl" >/dev/null

PGLOADER=$(command -v pgloader || true)
if [ -n "$PGLOADER" ]; then
    # The same rows under declared types without "(n)": CREATE TABLE AS keeps only affinities.
    { echo "ATTACH '$WORK/legacy.db' AS s;"; for t in $TABLES; do echo "CREATE TABLE $t AS SELECT * FROM s.$t;"; done; } |
        sqlite3 "$WORK/plain.db"
fi

DEMO_FKS=$(psql "$PG/bench_demo_tmpl" -qXAt -c "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace")
DEMO_INDEXES=$(psql "$PG/bench_demo_tmpl" -qXAt -c "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'")
DEMO_TABLES=$(psql "$PG/bench_demo_tmpl" -qXAt -c "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY 1")

fresh() { # fresh DB from template
    psql "$PG/postgres" -qXc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
    psql "$PG/postgres" -qXc "CREATE DATABASE $1 TEMPLATE $2" >/dev/null
}
count_all() { # rows in the identity tables of database $1
    local q="SELECT 0" t
    for t in $TABLES; do q="$q + (SELECT count(*) FROM $(echo "$t" | tr 'A-Z' 'a-z'))"; done
    psql "$PG/$1" -qXAt -c "$q"
}
indexes_of() { # indexes (keys included) in database $1
    psql "$PG/$1" -qXAt -c "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"
}
pks_of() { # primary keys in database $1
    psql "$PG/$1" -qXAt -c "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND connamespace = 'public'::regnamespace"
}
fks_valid() { # validated foreign keys in database $1
    psql "$PG/$1" -qXAt -c "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated AND connamespace = 'public'::regnamespace"
}

declare -A SECS RSS
record() { SECS[$1]="${SECS[$1]:-} $2"; }

migrate_run() { # key database template source mappings extra-args [more args]: migrate into a fresh database, timed, peak RSS kept
    local key=$1 db=$2 src=$4 maps=$5 flags=$6 t0
    fresh "$db" "$3"
    rm -f "$WORK/$db.json"
    t0=$(now)
    # shellcheck disable=SC2086
    (cd "$WORK" && /usr/bin/time -v -o "$WORK/$db.time" "$BIN" --yes -q $EXTRA $flags \
        --source "sqlite://$src" --target "$PG/$db" \
        --mappings "$maps" --checkpoint "$WORK/$db.json" "${@:7}" >/dev/null)
    record "$key" "$(since "$t0")"
    RSS[$key]="${RSS[$key]:-} $(rss_of "$WORK/$db.time")"
}

demo_run() { # key extra-args: migrate with the demo mappings into a fresh demo target
    local flags=$2 seen
    migrate_run "$1" bench_demo bench_demo_tmpl "$WORK/legacy.db" "$PWD/mappings" "$flags" --report "$WORK/demo-report.json"
    # Rows read plus rows the mappings' `where` leaves out: every source row.
    seen=$(echo "SELECT sum((e->>'read')::bigint + (e->>'skipped_by_where')::bigint) FROM json_array_elements((:'r')::json->'entities') e" |
        psql "$PG/bench_demo" -qXAt -v r="$(cat "$WORK/demo-report.json")")
    [ "$seen" = "$TOTAL" ] || { say "migrate (demo $flags) read $seen rows, expected $TOTAL"; exit 1; }
    # The end state counts: every foreign key back and validated, nothing left held.
    [ "$(fks_valid bench_demo)" = "$DEMO_FKS" ] ||
        { say "migrate (demo $flags) did not leave every foreign key validated"; exit 1; }
    [ "$(indexes_of bench_demo)" = "$DEMO_INDEXES" ] ||
        { say "migrate (demo $flags) did not leave every index and key in place"; exit 1; }
}

ident_run() { # key extra-args: migrate with the identity mappings into a fresh copy of the tables
    local flags=$2
    migrate_run "$1" bench_ident bench_ident_tmpl "$WORK/legacy.db" "$WORK/identity" "$flags"
    [ "$(count_all bench_ident)" = "$TOTAL" ] || { say "migrate (identity $flags) loaded $(count_all bench_ident) rows, expected $TOTAL"; exit 1; }
    # The end state counts: every primary key back.
    [ "$(pks_of bench_ident)" = "$NTABLES" ] || { say "migrate (identity $flags) did not leave every primary key in place"; exit 1; }
}

timed_streams() { # key database before-sql prefix after-sql: before, JOBS psql -f PREFIX.i.sql side by side, after; timed
    local t0 i p pids=()
    t0=$(now)
    psql "$PG/$2" -qX -v ON_ERROR_STOP=1 -c "$3" >/dev/null
    for i in $(seq 0 $((JOBS - 1))); do
        psql "$PG/$2" -qX -v ON_ERROR_STOP=1 -f "$4.$i.sql" >/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    psql "$PG/$2" -qX -v ON_ERROR_STOP=1 -c "$5" >/dev/null
    record "$1" "$(since "$t0")"
}

fk_copy_run() { # psql: drop the foreign keys, N streams of \copy, add them back (validated)
    local i t drop_fk add_fk
    fresh bench_fk bench_fk_tmpl
    add_fk=$(psql "$PG/bench_fk" -qXAt -c "SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s;', conrelid::regclass, conname, pg_get_constraintdef(oid)) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace")
    drop_fk=$(psql "$PG/bench_fk" -qXAt -c "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I;', conrelid::regclass, conname) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace")
    for i in $(seq 0 $((JOBS - 1))); do
        : >"$WORK/fkcopy.$i.sql"
        for t in $TABLES; do
            echo "\\copy $(echo "$t" | tr 'A-Z' 'a-z') FROM '$WORK/fk-csv/$t.part.$(printf "%02d" "$i")' WITH (FORMAT csv)" >>"$WORK/fkcopy.$i.sql"
        done
    done
    timed_streams fkcopy bench_fk "$drop_fk" "$WORK/fkcopy" "$add_fk"
    [ "$(count_all bench_fk)" = "$FK_TOTAL" ] || { say "psql \\copy (foreign keys) loaded $(count_all bench_fk) rows, expected $FK_TOTAL"; exit 1; }
    [ "$(fks_valid bench_fk)" = "$FK_COUNT" ] || { say "psql \\copy did not leave every foreign key validated"; exit 1; }
}

fk_run() { # key extra-args: migrate with identity mappings into tables with primary and foreign keys
    local flags=$2
    migrate_run "$1" bench_fk bench_fk_tmpl "$WORK/fk.db" "$WORK/fk-identity" "$flags"
    [ "$(count_all bench_fk)" = "$FK_TOTAL" ] || { say "migrate (identity + foreign keys $flags) loaded $(count_all bench_fk) rows, expected $FK_TOTAL"; exit 1; }
    [ "$(pks_of bench_fk)" = "$NTABLES" ] || { say "migrate (identity + foreign keys $flags) did not leave every primary key in place"; exit 1; }
    [ "$(fks_valid bench_fk)" = "$FK_COUNT" ] || { say "migrate (identity + foreign keys $flags) did not leave every foreign key validated"; exit 1; }
}

# The demo target's end state as CSV, for the floor reference (taken once, not timed).
export_demo_state() {
    local t i
    mkdir -p "$WORK/demo-csv"
    DEMO_ROWS=0
    for t in $DEMO_TABLES; do
        DEMO_ROWS=$((DEMO_ROWS + $(psql "$PG/bench_demo" -qXAt -c "SELECT count(*) FROM $t")))
        for i in $(seq 0 $((JOBS - 1))); do
            psql "$PG/bench_demo" -qX -c "\\copy (SELECT * FROM $t WHERE abs(hashtext(ctid::text)) % $JOBS = $i) TO '$WORK/demo-csv/$t.$i' WITH (FORMAT csv)"
        done
    done
}

floor_run() { # psql: drop FKs and plain indexes, N streams of \copy, re-create and validate
    local drop_fk add_fk drop_idx add_idx i t
    fresh bench_floor bench_demo_tmpl
    add_fk=$(psql "$PG/bench_floor" -qXAt -c "SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s;', conrelid::regclass, conname, pg_get_constraintdef(oid)) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace")
    drop_fk=$(psql "$PG/bench_floor" -qXAt -c "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I;', conrelid::regclass, conname) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace")
    add_idx=$(psql "$PG/bench_floor" -qXAt -c "SELECT pg_get_indexdef(indexrelid) || ';' FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace AND NOT indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)")
    drop_idx=$(psql "$PG/bench_floor" -qXAt -c "SELECT format('DROP INDEX %s;', indexrelid::regclass) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace AND NOT indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)")
    for i in $(seq 0 $((JOBS - 1))); do
        : >"$WORK/floor.$i.sql"
        for t in $DEMO_TABLES; do echo "\\copy $t FROM '$WORK/demo-csv/$t.$i' WITH (FORMAT csv)" >>"$WORK/floor.$i.sql"; done
    done
    timed_streams floor bench_floor "$drop_fk $drop_idx" "$WORK/floor" "$add_idx $add_fk"
    [ "$(fks_valid bench_floor)" = "$DEMO_FKS" ] || { say "the demo floor load did not validate every foreign key"; exit 1; }
}

# --- LOB table (not timed) -------------------------------------------------------------------
if [ "$LOB_ROWS" -gt 0 ]; then
    say "generating $LOB_ROWS LOB rows (100 KB text + 1 MB bytes each) ..."
    sqlite3 "$WORK/lob.db" "CREATE TABLE LOBS (ID INTEGER PRIMARY KEY, DOC TEXT, IMG BLOB);
        WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $LOB_ROWS)
        INSERT INTO LOBS SELECT i, hex(randomblob(51200)), randomblob(1048576) FROM c;"
    LOB_MB=$(sqlite3 "$WORK/lob.db" "SELECT printf('%.1f', (sum(length(DOC)) + sum(length(IMG))) / 1048576.0) FROM LOBS")
    sqlite3 -csv "$WORK/lob.db" "SELECT ID, DOC, '\\x' || hex(IMG) FROM LOBS" >"$WORK/lob.csv"
    psql "$PG/postgres" -qXc "CREATE DATABASE bench_lob_tmpl" >/dev/null
    psql "$PG/bench_lob_tmpl" -qXc "CREATE TABLE lobs (id bigint PRIMARY KEY, doc text, img bytea)" >/dev/null
    mkdir -p "$WORK/lob-mappings"
    printf 'source = "LOBS"\ntarget = "lobs"\n[[fields]]\nfrom = "ID"\nto = "id"\n[[fields]]\nfrom = "DOC"\nto = "doc"\n[[fields]]\nfrom = "IMG"\nto = "img"\n' \
        >"$WORK/lob-mappings/lobs.toml"
fi
lob_check() { # database: rows and bytes as loaded
    psql "$PG/$1" -qXAt -c "SELECT count(*) || ' ' || sum(length(doc) + length(img)) FROM lobs"
}

for run in $(seq 1 "$RUNS"); do
    say "run $run of $RUNS"
    if want copy; then
        # psql \copy, one stream.
        fresh bench_copy bench_ident_tmpl
        : >"$WORK/copy1.sql"
        for t in $TABLES; do
            echo "\\copy $(echo "$t" | tr 'A-Z' 'a-z') FROM '$WORK/csv/$t.csv' WITH (FORMAT csv)" >>"$WORK/copy1.sql"
        done
        t0=$(now)
        psql "$PG/bench_copy" -qX -v ON_ERROR_STOP=1 -f "$WORK/copy1.sql" >/dev/null
        record copy1 "$(since "$t0")"
        [ "$(count_all bench_copy)" = "$TOTAL" ] || { say "psql \\copy loaded $(count_all bench_copy) rows, expected $TOTAL"; exit 1; }

        # psql \copy, one stream per core.
        fresh bench_copy bench_ident_tmpl
        pids=()
        for i in $(seq 0 $((JOBS - 1))); do
            part=$(printf "%02d" "$i")
            : >"$WORK/copyN.$part.sql"
            for t in $TABLES; do
                echo "\\copy $(echo "$t" | tr 'A-Z' 'a-z') FROM '$WORK/csv/$t.part.$part' WITH (FORMAT csv)" >>"$WORK/copyN.$part.sql"
            done
        done
        t0=$(now)
        for i in $(seq 0 $((JOBS - 1))); do
            psql "$PG/bench_copy" -qX -v ON_ERROR_STOP=1 -f "$WORK/copyN.$(printf "%02d" "$i").sql" >/dev/null &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p"; done
        record copyN "$(since "$t0")"
        [ "$(count_all bench_copy)" = "$TOTAL" ] || { say "parallel \\copy loaded $(count_all bench_copy) rows, expected $TOTAL"; exit 1; }

        # pgloader, data only, into the same tables.
        if [ -n "$PGLOADER" ]; then
            fresh bench_pgl bench_ident_tmpl
            t0=$(now)
            /usr/bin/time -v -o "$WORK/pgl.time" "$PGLOADER" --with "data only" "sqlite://$WORK/plain.db" "$PG/bench_pgl" >"$WORK/pgl.log" 2>&1
            record pgl "$(since "$t0")"
            [ "$(count_all bench_pgl)" = "$TOTAL" ] || { say "pgloader loaded $(count_all bench_pgl) rows, expected $TOTAL (see its log below)"; tail -20 "$WORK/pgl.log" >&2; exit 1; }
            RSS[pgl]="${RSS[pgl]:-} $(rss_of "$WORK/pgl.time")"
        fi
    fi

    if want ident; then
        # migrate, identity mappings: as it comes, then with --defer-indexes (primary keys built
        # after the load).
        ident_run ident ""
        ident_run identdefer "--defer-indexes"
    fi

    if want fk; then
        # Identity mappings into tables with primary keys and foreign keys: psql with the foreign
        # keys dropped and re-added, then migrate as it comes and with --defer-indexes.
        fk_copy_run
        fk_run fk ""
        fk_run fkdefer "--defer-indexes"
    fi

    # migrate, demo mappings with their transforms (rows that break the target's rules are
    # rejects), with the target's foreign keys in place, then with --defer-indexes; then psql
    # loading the same end state.
    if want demo; then
        demo_run demo ""
        demo_run demodefer "--defer-indexes"
        [ "$run" = 1 ] && export_demo_state
        floor_run
    fi

    # The LOB table: psql \copy against migrate.
    if want lob && [ "$LOB_ROWS" -gt 0 ]; then
        fresh bench_lob bench_lob_tmpl
        t0=$(now)
        psql "$PG/bench_lob" -qX -v ON_ERROR_STOP=1 -c "\\copy lobs FROM '$WORK/lob.csv' WITH (FORMAT csv)" >/dev/null
        record lobcopy "$(since "$t0")"
        lob_want=$(lob_check bench_lob)
        fresh bench_lob bench_lob_tmpl
        rm -f "$WORK/lob.json"
        t0=$(now)
        # shellcheck disable=SC2086
        (cd "$WORK" && /usr/bin/time -v -o "$WORK/lob.time" "$BIN" --yes -q $EXTRA \
            --source "sqlite://$WORK/lob.db" --target "$PG/bench_lob" \
            --mappings "$WORK/lob-mappings" --checkpoint "$WORK/lob.json" >/dev/null)
        record lob "$(since "$t0")"
        [ "$(lob_check bench_lob)" = "$lob_want" ] || { say "migrate loaded '$(lob_check bench_lob)' of the LOB table, psql '$lob_want'"; exit 1; }
        RSS[lob]="${RSS[lob]:-} $(rss_of "$WORK/lob.time")"
    fi
done

median() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

best=""
if want copy; then
    best=$(median ${SECS[copyN]})
    b1=$(median ${SECS[copy1]})
    if awk -v a="$b1" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$b1; fi
fi
pgv=$(psql "$PG/postgres" -qXAt -c "SHOW server_version")
printf "\nbench/throughput.sh: %s rows in %s tables (demo scale %s), %s cores, PostgreSQL %s, %s run(s), medians\n" \
    "$TOTAL" "$NTABLES" "$SCALE" "$(nproc)" "$pgv" "$RUNS"
want copy || want ident || want demo && printf "%-58s %9s %11s %14s %10s\n" "load" "seconds" "rows/s" "vs best \\copy" "peak RSS"
line() { # name key [rows]: nothing when the case did not run
    local s rps ratio="-" rss="-" n=${3:-$TOTAL}
    [ -n "${SECS[$2]:-}" ] || return 0
    s=$(median ${SECS[$2]})
    rps=$(awk -v n="$n" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
    [ -z "$best" ] || ratio=$(awk -v s="$s" -v b="$best" -v n="$n" -v t="$TOTAL" 'BEGIN { printf "%.2f", (n / s) / (t / b) }')
    if [ -n "${RSS[$2]:-}" ]; then rss="$(awk -v k="$(median ${RSS[$2]})" 'BEGIN { printf "%.0f MB", k / 1024 }')"; fi
    printf "%-58s %9.2f %11s %13s× %10s\n" "$1" "$s" "$rps" "$ratio" "$rss"
}
line "psql \\copy CSV, 1 stream" copy1
line "psql \\copy CSV, $JOBS streams" copyN
if ! want copy; then
    :
elif [ -n "$PGLOADER" ]; then
    line "pgloader $("$PGLOADER" --version | awk 'NR == 1 { print $3 }' | tr -d '"'), data only" pgl
else
    echo "(pgloader: not installed; apt-get install pgloader to measure it)"
fi
line "migrate, identity mappings" ident
line "migrate, identity mappings, --defer-indexes" identdefer
vsline() { # name key amount base-key rate-format: median seconds, amount/s, ratio to base-key, peak RSS
    local s rate ratio rss="-"
    s=$(median ${SECS[$2]})
    rate=$(awk -v n="$3" -v s="$s" -v f="$5" 'BEGIN { printf f, n / s }')
    ratio=$(awk -v s="$s" -v b="$(median ${SECS[$4]})" 'BEGIN { printf "%.2f", b / s }')
    if [ -n "${RSS[$2]:-}" ]; then rss="$(awk -v k="$(median ${RSS[$2]})" 'BEGIN { printf "%.0f MB", k / 1024 }')"; fi
    printf "%-58s %9.2f %11s %13s× %10s\n" "$1" "$s" "$rate" "$ratio" "$rss"
}
fkline() { vsline "$1" "$2" "$FK_TOTAL" fkcopy "%.0f"; } # name key
if want fk; then
    printf "\nidentity mappings into tables with primary keys and %s foreign keys (orphans deleted): %s rows\n" "$FK_COUNT" "$FK_TOTAL"
    printf "%-58s %9s %11s %14s %10s\n" "load" "seconds" "rows/s" "vs \\copy" "peak RSS"
    fkline "psql \\copy CSV, $JOBS streams (FKs dropped, re-added)" fkcopy
    fkline "migrate, identity mappings, foreign keys in place" fk
    fkline "migrate, identity mappings, --defer-indexes" fkdefer
    echo
fi
if want demo; then
    line "migrate, demo mappings (transforms), foreign keys in place" demo
    line "migrate, demo mappings, --defer-indexes" demodefer
    line "psql \\copy of the demo end state, $JOBS streams (FKs re-added)" floor "$DEMO_ROWS"
    awk -v d="$(median ${SECS[demodefer]})" -v f="$(median ${SECS[floor]})" -v n="$TOTAL" -v m="$DEMO_ROWS" \
        'BEGIN { printf "demo mappings with --defer-indexes against psql loading the same end state: %.2f× (rows/s, every source row read against the rows it loaded)\n", (n / d) / (m / f) }'
fi
if want lob && [ "$LOB_ROWS" -gt 0 ]; then
    printf "\nLOB table: %s rows, a 100 KB text and a 1 MB bytes column each, %s MB\n" "$LOB_ROWS" "$LOB_MB"
    printf "%-58s %9s %11s %14s %10s\n" "load" "seconds" "MB/s" "vs \\copy" "peak RSS"
    lobline() { vsline "$1" "$2" "$LOB_MB" lobcopy "%.1f"; } # name key
    lobline "psql \\copy CSV (bytea as hex), 1 stream" lobcopy
    lobline "migrate" lob
fi
