#!/usr/bin/env bash
# tests/netns.sh ADDRESS... -- COMMAND...: run COMMAND in a network of its own
# (a new network namespace: unshare --net, as root or in a user namespace),
# where the loopback interface is up and has these IPv6 addresses besides
# ::1, so that a test can connect from many IPv6 addresses, and from the
# same /64, without touching this machine's own network.  Not part of the
# lesson; test.sh runs tests/crowd.sh this way.
set -eu
if [ "${NETNS_INSIDE:-}" != 1 ]; then
    command -v ip >/dev/null ||
        { echo "netns.sh: ip is needed (Debian iproute2; .ci/run installs it)" >&2; exit 1; }
    NETNS_INSIDE=1 exec unshare --net --map-root-user "$0" "$@"
fi
ip link set lo up
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    ip -6 addr add "$1/128" dev lo nodad
    shift
done
[ $# -gt 0 ] && shift
exec "$@"
