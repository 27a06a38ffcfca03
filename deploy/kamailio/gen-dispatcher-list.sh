#!/bin/sh
# gen-dispatcher-list.sh: write the front door's dispatcher.list from the agents' addresses.
#
#   gen-dispatcher-list.sh [-s SETID] [-m MAXLOAD] [-t udp|tcp] AGENT... > dispatcher.list
#   AGENTS="10.0.0.11:5060 10.0.0.12:5060/2" gen-dispatcher-list.sh > dispatcher.list
#
# AGENT is IPv4:PORT (the front door does no DNS), optionally /MAXLOAD to override -m for
# that agent. MAXLOAD is how many calls the agent takes at once: its sip.max_calls (4 by
# default). Each line gets
#   duid=<unique id>   what call-load dispatching (algorithm 10) counts calls against
#   maxload=<n>        algorithm 10 never gives the agent more than n calls in progress
#   weight=<n>         read by algorithm 9 only: equal shares summing to 100
# A running Kamailio reads the new file on: kamcmd -s <ctl socket> dispatcher.reload
set -eu
SETID=1
MAXLOAD=4
TRANSPORT=udp
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
fail() { echo "gen-dispatcher-list.sh: $*" >&2; exit 2; }
while getopts s:m:t:h opt; do
	case $opt in
	s) SETID=$OPTARG ;;
	m) MAXLOAD=$OPTARG ;;
	t) TRANSPORT=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
# shellcheck disable=SC2086 # AGENTS is a space-separated list on purpose
[ $# -gt 0 ] || set -- ${AGENTS:-}
[ $# -gt 0 ] || fail "no agent address given (arguments or \$AGENTS)"
case $SETID$MAXLOAD in *[!0-9]*) fail "-s and -m take numbers" ;; esac
case $TRANSPORT in udp | tcp) ;; *) fail "-t is udp or tcp" ;; esac

for a in "$@"; do
	addr=${a%%/*}
	case $addr in
	*[!0-9.:]* | :* | *: | *:*:*) fail "'$a' is not IPv4:PORT[/MAXLOAD]" ;;
	*:*) ;;
	*) fail "'$a' is not IPv4:PORT[/MAXLOAD]" ;;
	esac
	case $a in */*) case ${a#*/} in '' | *[!0-9]*) fail "bad maxload in '$a'" ;; esac ;; esac
done

n=$#
weight=$((100 / n))
echo "# dispatcher.list, written by gen-dispatcher-list.sh"
echo "# setid destination flags priority attributes"
echo "# flags 0: active at start (the keep-alives take an agent out when it does not answer)"
i=0
for a in "$@"; do
	i=$((i + 1))
	addr=${a%%/*}
	load=$MAXLOAD
	case $a in */*) load=${a#*/} ;; esac
	host=${addr%:*}
	port=${addr##*:}
	params=""
	[ "$TRANSPORT" = udp ] || params=";transport=$TRANSPORT"
	# the last agent takes the rounding remainder, so that the weights sum to 100
	w=$weight
	[ $i -lt $n ] || w=$((100 - weight * (n - 1)))
	echo "$SETID sip:$host:$port$params 0 0 duid=agent-$host-$port;maxload=$load;weight=$w"
done
