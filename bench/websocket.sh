#!/usr/bin/env bash
# Websocket sessions: N sessions open at once on one host, each sending a
# message every INTERVAL_MS and awaiting its echo for DURATION_SECS, against
# cyclone (examples/echo, one instance per session) and
# Tornado (a WebSocketHandler echo), one after the other in the same run.
# Counts sessions opened, echoes and errors, echo latency, and the server's
# peak RSS. Writes the table to bench/RESULTS.md (between the "websocket"
# markers) and prints it.
#
# Usage: bench/websocket.sh      (env: SESSIONS=10000 INTERVAL_MS=3000 DURATION_SECS=30)
# Needs python3 (Tornado is installed with pip when missing). Past ~10,000
# sessions cyclone needs a larger vm.max_map_count (it says so at start-up).
set -euo pipefail

SESSIONS=${SESSIONS:-10000}
INTERVAL_MS=${INTERVAL_MS:-3000}
DURATION_SECS=${DURATION_SECS:-30}

source "$(dirname "$0")/lib.sh"
python3 -c 'import tornado' 2>/dev/null || python3 -m pip install --quiet tornado

cd "$root"
pool=$((SESSIONS + 100))
pooled_app echo "$pool" "max_memory_mb = 16"

# start NAME PORT: runs the server in the background, sets $server_pid.
start() {
    local port=$2
    case $1 in
        cyclone) CYCLONE_LOG=warn exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/cyclone.toml" ;;
        tornado) exec python3 "$root/bench/tornado/server.py" "$port" ;;
    esac >"$work/$1.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/"
}

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

for name in cyclone tornado; do
    port=$(free_port)
    start "$name" "$port"
    base=$(kib "$server_pid" VmRSS)
    cpu0=$(cpu_ticks "$server_pid")
    watch_memory "$server_pid" "$work/$name.memory" &
    watcher=$!
    line=$("$root/target/release/wsload" --url "ws://127.0.0.1:$port/echo" --sessions "$SESSIONS" \
        --interval-ms "$INTERVAL_MS" --duration-secs "$DURATION_SECS")
    peak=$(kib "$server_pid" VmHWM)
    cpu=$(( $(cpu_ticks "$server_pid") - cpu0 ))
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    echo "$name $base $peak $cpu $(pss_growth "$work/$name.memory") $line" | tee -a "$work/results" >&2
done

table=$(python3 - "$work/results" "$SESSIONS" "$(getconf CLK_TCK)" <<'PY'
import sys
sessions, hz = int(sys.argv[2]), int(sys.argv[3])
print("| server | sessions opened | open errors | echoes | echo errors | echo p50 | echo p99 | server CPU | peak RSS | RSS per session (peak − idle) | PSS per session (peak − idle) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for line in open(sys.argv[1]):
    name, base, peak, cpu, pss, rest = line.split(maxsplit=5)
    f = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
    def kinds(key):
        k = f[key].strip("[]")
        return f" ({k})" if k else ""
    per = (int(peak) - int(base)) / sessions
    print(f"| {name} | {int(f['opened']):,} | {int(f['open_errors']):,}{kinds('open_error_kinds')} | {int(f['echoes']):,} "
          f"| {int(f['echo_errors']):,}{kinds('echo_error_kinds')} | {f['p50_ms']} ms | {f['p99_ms']} ms "
          f"| {int(cpu) / hz:.1f} s | {int(peak)/1024:,.0f} MiB | {per:,.1f} KiB | {int(pss) / sessions:,.1f} KiB |")
PY
)
header="$SESSIONS websocket sessions open at once, each sending a text message every $INTERVAL_MS ms (phases spread evenly) and awaiting its echo, for $DURATION_SECS s: $(machine_line bench/websocket.sh).
Client: \`bench/loadgen\`'s \`wsload\` (tokio-tungstenite) on the same machine, 256 handshakes in flight while opening, 10 s timeout per handshake and per echo. Peak RSS is the server's VmHWM; RSS per session divides its growth over the idle server by $SESSIONS. PSS is sampled once a second from \`/proc/PID/smaps_rollup\`: it counts a page shared by many mappings once, where RSS counts it once per mapping — in cyclone each instance maps its component's data pages (read-only ones shared by all instances, and the kernel maps a fault's neighbouring pages too), so RSS overstates what the instances cost. cyclone runs \`examples/echo\` (a cyclone-sdk \`WebSocketHandler\` looping on \`recv\` and \`send\`, one instance per session, 16 MiB memory cap), logging at \`warn\`. Tornado $(python3 -c 'import tornado; print(tornado.version)'), one process, a \`WebSocketHandler\` that writes every message back. vm.max_map_count = $(cat /proc/sys/vm/max_map_count)."
write_section websocket "WebSocket sessions" "$header" "$table"
echo "$table"
