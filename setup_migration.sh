#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine with Rust to a finished demo migration, in one command:
# installs what is missing (C compiler, PostgreSQL), starts PostgreSQL, builds the release
# binary, creates the demo legacy database and the target schema, writes .env, and runs the
# demo migration with validation.
#
#   ./setup_migration.sh              # the demo's own database: postgres://postgres@127.0.0.1:5432/migrate_demo
#   MIGRATE_DEMO_URL=postgres://u:p@host/demo_db ./setup_migration.sh
#   ./setup_migration.sh --install    # no demo: build and install `migrate` on PATH (cargo install)
#
# DATABASE_URL is NOT used: it may point at a real migration's target, and the demo drops its
# tables and the migrate schema in the database it is given (migrate demo --create-target
# refuses a database that holds anything else anyway).
set -euo pipefail
cd "$(dirname "$0")"

DEMO_URL=${MIGRATE_DEMO_URL:-postgres://postgres@127.0.0.1:5432/migrate_demo}
SOURCE=sqlite:demo/legacy.db
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
step() { printf '\n==> %s\n' "$*"; }
INSTALL=0
case "${1:-}" in
  "") ;;
  --install) INSTALL=1 ;;
  -h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 0 ;;
  *) echo "error: unknown option $1 (use --install, or nothing for the demo)" >&2; exit 2 ;;
esac

step "checking the build tools"
if ! command -v cargo >/dev/null; then
  echo "error: cargo is missing. Install Rust (https://rustup.rs), then run this script again." >&2
  exit 1
fi
missing=()
command -v cc >/dev/null || missing+=(build-essential)
if [ "$INSTALL" = 1 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
  fi
  step "building and installing migrate (cargo install --path . --locked)"
  cargo install --path . --locked
  bin="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
  if command -v migrate >/dev/null; then
    echo "installed: $(command -v migrate) ($(migrate --version))"
  else
    echo "installed in $bin, which is not on PATH: export PATH=\"$bin:\$PATH\""
  fi
  exit 0
fi
command -v psql >/dev/null || missing+=(postgresql-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

step "PostgreSQL"
admin_url="${DEMO_URL%/*}/postgres"
dbname="${DEMO_URL##*/}"
dbname="${dbname%%\?*}"
if psql "$admin_url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  echo "reachable at $(echo "$admin_url" | sed -E 's#//([^:/@]+):[^@]*@#//\1:***@#')"
else
  bash scripts/ensure_postgres.sh
fi
if [ "$(psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$dbname'")" != 1 ]; then
  psql "$admin_url" -qc "CREATE DATABASE \"$dbname\""
  echo "created database $dbname"
fi

step "building the release binary (first build takes a few minutes)"
cargo build --release
MIGRATE=${CARGO_TARGET_DIR:-./target}/release/migrate

step "creating the demo legacy database and the target tables"
"$MIGRATE" demo --out demo/legacy.db --force --create-target --target "$DEMO_URL"

if [ ! -f .env ]; then
  printf 'MIGRATE_SOURCE=%s\nDATABASE_URL=%s\n' "$SOURCE" "$DEMO_URL" > .env
  chmod 600 .env
  echo "wrote .env"
else
  echo ".env exists: left as it is"
fi

step "running the demo migration with validation"
"$MIGRATE" --source "$SOURCE" --target "$DEMO_URL" --yes --validate --report demo/report.html

step "done"
cat <<MSG
The demo data is in PostgreSQL. The report: open demo/report.html in a browser. Look at the data:
  psql "$DEMO_URL" -c 'SELECT * FROM customers_customer LIMIT 5'
  psql "$DEMO_URL" -c 'SELECT entity, row_key, column_name, reason FROM migrate.rejects'
The legacy system lives on; move what changed (README: Running old and new side by side):
  target/release/migrate demo --mutate --out demo/legacy.db
  target/release/migrate sync --source $SOURCE --target "$DEMO_URL"
  target/release/migrate validate --deep --source $SOURCE --target "$DEMO_URL"
Run the tests:  bash .ci/run   (or just: cargo test)
MSG
