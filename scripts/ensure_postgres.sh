#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 (or $PGHOST:$PGPORT): start the local
# Debian/Ubuntu cluster if it is installed but stopped; install it (apt-get) if it is missing.
# A server this script installs gets trust authentication for 127.0.0.1 and ::1 only, so the
# tests and the demo can connect as `postgres` without a password: a developer machine setting.
set -euo pipefail
host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

ready() { pg_isready -h "$host" -p "$port" -q 2>/dev/null; }

if command -v pg_isready >/dev/null && ready; then
  exit 0
fi

installed_now=no
if ! ls -d /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "==> PostgreSQL is not installed: installing it with apt-get"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q postgresql postgresql-client
  installed_now=yes
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ "$installed_now" = yes ]; then
  hba=/etc/postgresql/$version/main/pg_hba.conf
  printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' | $SUDO sh -c "cat - '$hba' > '$hba.new' && mv '$hba.new' '$hba'"
fi
echo "==> starting PostgreSQL $version"
$SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
for _ in $(seq 60); do
  if ready; then exit 0; fi
  sleep 1
done
echo "error: PostgreSQL did not come up on $host:$port" >&2
exit 1
