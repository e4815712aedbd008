#!/bin/bash
# Run by the gvenzl Oracle image on first start (mounted into /container-entrypoint-initdb.d by
# docker-compose.yml): seeds the ABIS schema as the app user the image has just created.
set -euo pipefail
service=XE   # 11g XE has no pluggable database
sqlplus -s -L "${APP_USER}/${APP_USER_PASSWORD}@//localhost:1521/${service}" @/opt/migrate/seed.sql </dev/null
