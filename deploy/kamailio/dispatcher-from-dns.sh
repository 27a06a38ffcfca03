#!/bin/sh
# dispatcher-from-dns.sh: keep the front door's agent list in step with a DNS name.
#
#   dispatcher-from-dns.sh [--once] NAME PORT MAXLOAD LISTFILE [CTL_SOCK]
#
# NAME is a name whose A records are the agents (in Kubernetes, a headless Service: its
# records are the ready pods, so an agent whose /readyz fails drops out). Every INTERVAL
# seconds (default 5) the records are read with getent, the list is written with
# gen-dispatcher-list.sh (PORT and MAXLOAD for every agent) and, when it changed, Kamailio is
# told through CTL_SOCK (kamcmd dispatcher.reload). --once writes the list and exits (an
# init container, before Kamailio starts). No record at all writes a list without agents,
# which Kamailio accepts: every call then gets 503 until agents appear.
set -eu
once=0
if [ "${1:-}" = --once ]; then once=1; shift; fi
[ $# -ge 4 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
name=$1 port=$2 maxload=$3 list=$4 ctl=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
interval=${INTERVAL:-5}

render() {
	addrs=$(getent ahostsv4 "$name" 2>/dev/null | awk '{print $1}' | sort -u -t. -k1,1n -k2,2n -k3,3n -k4,4n)
	if [ -z "$addrs" ]; then
		echo "# dispatcher.list: no agent behind $name yet"
		return
	fi
	set --
	for a in $addrs; do set -- "$@" "$a:$port"; done
	"$here/gen-dispatcher-list.sh" -m "$maxload" "$@"
}

while :; do
	render >"$list.new"
	if ! cmp -s "$list.new" "$list"; then
		mv "$list.new" "$list"
		echo "dispatcher-from-dns: $(grep -c '^[0-9]' "$list" || true) agent(s) behind $name" >&2
		if [ $once -eq 0 ] && [ -n "$ctl" ]; then
			kamcmd -s "$ctl" dispatcher.reload >/dev/null || echo "dispatcher-from-dns: reload failed" >&2
		fi
	else
		rm -f "$list.new"
	fi
	[ $once -eq 0 ] || exit 0
	sleep "$interval"
done
