#!/bin/sh
# Installs the system tools the tests drive for real, when run as root and
# missing. A tool is looked up by its command, not its package name (the
# machine's node may come from NodeSource, which bundles npm).
#   required (capture tests): iptables, ip
#   optional (skipped with a message when absent): nginx (+ its stream module),
#   haproxy, node, npm, wrk
set -u
need=""
want=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have iptables || need="$need iptables"
have ip || need="$need iproute2"
have nginx || want="$want nginx-light"
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || want="$want libnginx-mod-stream"
have haproxy || want="$want haproxy"
have node || want="$want nodejs"
have npm || want="$want npm"
have wrk || want="$want wrk"
[ -z "$need$want" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: not root; missing:$need$want (tests needing them skip)"
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || echo "deps: apt-get update failed"
if [ -n "$need" ]; then
	echo "deps: installing$need"
	apt-get install -y -qq --no-install-recommends $need >/dev/null || { echo "deps: cannot install$need"; exit 1; }
fi
for p in $want; do
	echo "deps: installing $p"
	apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 || echo "deps: $p not installed (its tests will skip)"
done
# Debian starts nginx/haproxy services on install; the tests start their own.
for s in nginx haproxy; do
	if command -v systemctl >/dev/null 2>&1; then systemctl stop "$s" >/dev/null 2>&1; fi
	[ -f "/run/$s.pid" ] && kill "$(cat /run/$s.pid)" 2>/dev/null
done
exit 0
