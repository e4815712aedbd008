#!/usr/bin/env bash
# Waits until USER/PASSWORD@//HOST:PORT/SERVICE accepts a SQL*Plus login (the gvenzl images
# create the app user right after the database opens), at most 5 minutes.
set -euo pipefail
for _ in $(seq 60); do
    if echo exit | sqlplus -s -L "$1" >/dev/null; then exit 0; fi
    sleep 5
done
echo "Oracle did not accept a login as ${1%%/*} within 5 minutes" >&2
exit 1
