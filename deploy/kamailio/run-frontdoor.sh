#!/bin/sh
# run-frontdoor.sh: Kamailio with this directory's kamailio.cfg, in the foreground, logging to
# stderr: how a container, a systemd unit and `voice-agent cluster` all start the front door.
#
#   LISTEN=udp:10.0.0.5:5060 AGENTS="10.0.0.11:5060 10.0.0.12:5060" ALLOW=203.0.113.0/24 \
#       run-frontdoor.sh [kamailio options, e.g. -A DS_ALG=4, or -c to check and exit]
#
#   LISTEN           the SIP socket (default udp:127.0.0.1:5060); behind NAT append
#                    " advertise PUBLIC_IP:PORT"
#   AGENTS           "IP:PORT[/MAXLOAD] ...": the agent list is written from it; without it
#                    DISPATCHER_LIST must name a list written elsewhere (dispatcher-from-dns.sh)
#   MAXLOAD          calls per agent, its sip.max_calls (default 4)
#   ALLOW            "CIDR ...": the trunk allowlist is written from it; without it
#                    ADDRESS_LIST must name an address.list
#   RUN_DIR          runtime files: the lists written here, kamcmd's socket kamailio_ctl
#                    (default /tmp/voice-agent-frontdoor)
# The shell is replaced by Kamailio (exec): signals reach it; SIGTERM stops it, status 0.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
run=${RUN_DIR:-/tmp/voice-agent-frontdoor}
mkdir -p "$run"
list=${DISPATCHER_LIST:-$run/dispatcher.list}
addresses=${ADDRESS_LIST:-$run/address.list}
if [ -n "${AGENTS:-}" ]; then
	# shellcheck disable=SC2086 # a space-separated list on purpose
	"$here/gen-dispatcher-list.sh" -m "${MAXLOAD:-4}" $AGENTS >"$list"
fi
if [ -n "${ALLOW:-}" ]; then
	{
		echo "# address.list, written by run-frontdoor.sh from \$ALLOW"
		i=0
		for cidr in $ALLOW; do
			i=$((i + 1))
			bits=32
			case $cidr in */*) bits=${cidr#*/} ;; esac
			echo "1 ${cidr%/*} $bits 0 allow-$i"
		done
	} >"$addresses"
fi
[ -f "$list" ] || { echo "run-frontdoor.sh: no agent list: set AGENTS or DISPATCHER_LIST" >&2; exit 2; }
[ -f "$addresses" ] || { echo "run-frontdoor.sh: no allowlist: set ALLOW or ADDRESS_LIST" >&2; exit 2; }
kamailio=$(command -v kamailio || echo /usr/sbin/kamailio)
exec "$kamailio" -DD -E -f "$here/kamailio.cfg" -Y "$run" \
	-A "LISTEN=${LISTEN:-udp:127.0.0.1:5060}" \
	-A "DISPATCHER_LIST=\"$list\"" \
	-A "ADDRESS_LIST=\"$addresses\"" \
	-A "CTL_SOCK=\"unix:$run/kamailio_ctl\"" \
	"$@"
