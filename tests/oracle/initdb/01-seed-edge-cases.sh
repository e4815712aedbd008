#!/bin/bash
# Run by the gvenzl Oracle image on first start (mounted into /container-entrypoint-initdb.d by
# docker-compose.yml): seeds the edge-case tables (EC_*) as the app user the image has just
# created. The ABIS demo itself is seeded from the host: tests/oracle/seed_abis.sh.
set -euo pipefail
service=XE   # 11g XE has no pluggable database
# The seed creates a synonym and a view: grant what the image's app user may lack.
echo "GRANT CREATE SYNONYM, CREATE VIEW TO ${APP_USER};" | sqlplus -s / as sysdba
sqlplus -s -L "${APP_USER}/${APP_USER_PASSWORD}@//localhost:1521/${service}" @/opt/migrate/edge_cases.sql </dev/null
# The compose health check waits for this file: the image is healthy before its init scripts end.
touch /tmp/migrate-seeded
