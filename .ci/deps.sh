#!/bin/sh
# Installs the system packages the tests use, when run as root and missing.
# Without root it only reports what is missing; tests that need a package
# then skip with a message saying so.
set -e
pkgs="iptables iproute2 nginx-light haproxy nodejs npm wrk"
missing=""
for p in $pkgs; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "not root: missing packages$missing (tests needing them will skip)"
	exit 0
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts nginx/haproxy services on install; the tests start their own.
for s in nginx haproxy; do
	if command -v systemctl >/dev/null 2>&1; then systemctl stop "$s" >/dev/null 2>&1 || true; fi
	if [ -f "/run/$s.pid" ]; then kill "$(cat /run/$s.pid)" 2>/dev/null || true; fi
done
exit 0
