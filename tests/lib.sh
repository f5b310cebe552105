# tests/lib.sh - what the test scripts share (sourced, not run): a work folder
# that goes away, ok/FAIL lines and the closing count, the tutorial's
# certificates, and a server of their own on a free port.
#
# SERVER picks another build (make asan: SERVER=./server-asan); SERVER_WRAPPER
# runs the server under another program (make valgrind); KEEP_WORK=1 keeps the
# work folder (certificates, the server's log) for a look afterwards.
# LONG=1 runs the long forms of the checks that make test cuts short or
# leaves out (make soak, asan, tsan and valgrind set it; test.sh says which).
# shellcheck shell=bash

SERVER=${SERVER:-./server}
LONG=${LONG:-}
work=$(mktemp -d)
certs=$work/certs
log=$work/server.log
server_pid=
mounted=()      # file systems a test mounted under $work: unmounted at the end
passed=0
failed=0

# long: true under LONG=1
long() { [ "$LONG" = 1 ]; }

stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    server_pid=
}
cleanup() {
    stop_server
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null; done
    [ -n "${KEEP_WORK:-}" ] && { echo "work folder kept: $work"; return; }
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    shift
    printf '       %s\n' "$@"
}
# finish: the closing line, and the exit status
finish() {
    echo
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# need TOOL...: fail loudly, never skip, when a tool is missing
need() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null ||
            { echo "${0##*/}: $tool is needed (.ci/run installs it; README.md says why)" >&2; exit 1; }
    done
}

make_certs() {
    ./gencerts.sh "$certs" >"$work/gencerts.log" 2>&1 || {
        cat "$work/gencerts.log" >&2
        echo "${0##*/}: gencerts.sh failed" >&2
        exit 1
    }
}

# start_server [FLAGS...]: run the server in the background on a free port and
# wait until it says it listens; sets $port.
start_server() {
    [ -x "$SERVER" ] || { echo "${0##*/}: $SERVER is not built (see the Makefile)" >&2; exit 1; }
    # the last server's output is kept in servers.log; $log is the new one's,
    # emptied first: until the new server opens it, the old "listening on"
    # line would give the old port (seen once on a loaded machine)
    [ -f "$log" ] && cat "$log" >>"$work/servers.log"
    : >"$log"
    # shellcheck disable=SC2086   # SERVER_WRAPPER is a command line to split
    ${SERVER_WRAPPER:-} "$SERVER" --port 0 --certs "$certs" "$@" 2>"$log" &
    server_pid=$!
    port=
    for _ in $(seq 1500); do
        port=$(sed -n 's|^server: listening on https://localhost:\([0-9]*\)/.*|\1|p' "$log")
        [ -n "$port" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.02
    done
    echo "${0##*/}: the server did not start; its output:" >&2
    cat "$log" >&2
    exit 1
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# process_cpu_ns PID: the CPU time (user + system) of a process, all its
# threads together, finished ones too (/proc/PID/stat; the main thread's
# schedstat alone misses the connection threads).  Its unit is the clock
# tick (10 ms here), so measure over a second or more.
process_cpu_ns() {
    local ticks
    ticks=$(sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}')
    echo $((ticks * 1000000000 / $(getconf CLK_TCK)))
}
