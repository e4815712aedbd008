#!/usr/bin/env bash
# Installs Oracle Instant Client 19 (basic + sqlplus) into ./ic on Ubuntu 24.04 for the
# oracle-smoke workflow, and adds it to GITHUB_ENV / GITHUB_PATH. 19 is pinned: the newest client
# that connects to 11.2 servers, and it also connects to 21c and 23ai. Oracle removes old 19.x
# zips from its download page now and then, so several releases are tried, newest first.
set -euo pipefail
sudo apt-get update -q
sudo apt-get install -y -q libaio1t64 unzip postgresql-client
base=https://download.oracle.com/otn_software/linux/instantclient
for v in 1929000:19.29.0.0.0 1928000:19.28.0.0.0 1927000:19.27.0.0.0 1926000:19.26.0.0.0 1925000:19.25.0.0.0; do
    num=${v%%:*}; ver=${v#*:}
    if curl -fsSLo basic.zip "$base/$num/instantclient-basic-linux.x64-${ver}dbru.zip" &&
       curl -fsSLo sqlplus.zip "$base/$num/instantclient-sqlplus-linux.x64-${ver}dbru.zip"; then
        echo "Instant Client $ver"; break
    fi
done
test -s basic.zip && test -s sqlplus.zip
unzip -q basic.zip -d ic -x "META-INF/*"
unzip -qo sqlplus.zip -d ic -x "META-INF/*"
IC=$PWD/$(ls -d ic/instantclient_*)
ln -sf /usr/lib/x86_64-linux-gnu/libaio.so.1t64 "$IC/libaio.so.1"
echo "LD_LIBRARY_PATH=$IC" >> "$GITHUB_ENV"
echo "$IC" >> "$GITHUB_PATH"
