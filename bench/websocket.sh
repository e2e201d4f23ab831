#!/usr/bin/env bash
# Websocket sessions, two tables.
#
# "websocket": N sessions open at once on one host, each sending a message
# every INTERVAL_MS and awaiting its echo for DURATION_SECS, against cyclone
# (examples/echo: /echo, one instance per session, and /hibernating, an
# instance per message) and Tornado (a WebSocketHandler echo), one after the
# other in the same run. Counts sessions opened, echoes and errors, echo
# latency, server CPU and the server's peak RSS.
#
# "websocket-idle": IDLE_SESSIONS chat sessions open at once and idle on one
# host, then one post fanned out to all of them, against cyclone
# (examples/chat, whose sessions hibernate) and Tornado's websocket chat
# demo (bench/tornado/chat.py). Memory per idle session, and delivery
# latency of the post.
#
# Writes both tables to bench/RESULTS.md and prints them.
#
# Usage: bench/websocket.sh      (env: SESSIONS=10000 INTERVAL_MS=3000 DURATION_SECS=30 IDLE_SESSIONS=15000)
# Needs python3 (Tornado is installed with pip when missing). Past ~10,000
# live sessions cyclone needs a larger vm.max_map_count (it says so at start-up).
set -euo pipefail

SESSIONS=${SESSIONS:-10000}
INTERVAL_MS=${INTERVAL_MS:-3000}
DURATION_SECS=${DURATION_SECS:-30}
IDLE_SESSIONS=${IDLE_SESSIONS:-15000}

source "$(dirname "$0")/lib.sh"
python3 -c 'import tornado' 2>/dev/null || python3 -m pip install --quiet tornado

cd "$root"
pool=$((SESSIONS + 100))
pooled_app echo "$pool" "max_memory_mb = 16" "websocket_max_sessions = $pool"

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

for name in cyclone cyclone-hibernating tornado; do
    port=$(free_port)
    path=/echo
    case $name in
        cyclone-hibernating) start cyclone "$port"; path=/hibernating ;;
        *) start "$name" "$port" ;;
    esac
    base=$(kib "$server_pid" VmRSS)
    cpu0=$(cpu_ticks "$server_pid")
    watch_memory "$server_pid" "$work/$name.memory" &
    watcher=$!
    line=$("$root/target/release/wsload" --url "ws://127.0.0.1:$port$path" --sessions "$SESSIONS" \
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
Client: \`bench/loadgen\`'s \`wsload\` (tokio-tungstenite) on the same machine, 256 handshakes in flight while opening, 10 s timeout per handshake and per echo. Peak RSS is the server's VmHWM; RSS per session divides its growth over the idle server by $SESSIONS. PSS is sampled once a second from \`/proc/PID/smaps_rollup\`: it counts a page shared by many mappings once, where RSS counts it once per mapping — in cyclone each instance maps its component's data pages (read-only ones shared by all instances, and the kernel maps a fault's neighbouring pages too), so RSS overstates what the instances cost. cyclone runs \`examples/echo\`, logging at \`warn\`: \`cyclone\` is its \`/echo\` (a cyclone-sdk \`WebSocketHandler\` looping on \`recv\` and \`send\`, one instance per session, 16 MiB memory cap), \`cyclone-hibernating\` its \`/hibernating\` (a \`HibernatingHandler\` whose \`on_message\` sends the message back: no instance between messages, a fresh one for each). Tornado $(python3 -c 'import tornado; print(tornado.version)'), one process, a \`WebSocketHandler\` that writes every message back. vm.max_map_count = $(cat /proc/sys/vm/max_map_count)."
write_section websocket "WebSocket sessions" "$header" "$table"
echo "$table"

# The idle chat sessions and the fan-out.
cargo build --quiet --profile guest --target wasm32-wasip2 -p chat
cat >"$work/chat.toml" <<EOF
[server]
max_instances = 4200
data_dir = "$work/chat-data"

[apps.chat]
component = "$root/target/wasm32-wasip2/guest/chat.wasm"
routes = ["/...", { route = "/chatsocket", max_instances = 64 }]
websocket_max_message_kb = 64
websocket_ping_secs = 10
websocket_max_sessions = $((IDLE_SESSIONS + 1000))
key_value_stores = ["default"]
EOF
: >"$work/idle"
for name in cyclone tornado; do
    port=$(free_port)
    case $name in
        cyclone) CYCLONE_LOG=warn exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/chat.toml" ;;
        tornado) exec python3 "$root/bench/tornado/chat.py" "$port" ;;
    esac >"$work/$name-chat.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/"
    # Warm up: sessions opened, sent a post and closed, so what the first
    # ones touch (pool slots, buffers) is in the idle figure, not in the
    # per-session one.
    "$root/target/release/fanout" --ws "ws://127.0.0.1:$port/chatsocket" --sessions 300 \
        --post "http://127.0.0.1:$port/a/message/new" >/dev/null
    sleep 2
    base=$(kib "$server_pid" VmRSS)
    line=$("$root/target/release/fanout" --ws "ws://127.0.0.1:$port/chatsocket" --sessions "$IDLE_SESSIONS" \
        --post "http://127.0.0.1:$port/a/message/new" --settle-secs 35 --pid "$server_pid" --timeout-secs 60)
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    echo "$name $base $line" | tee -a "$work/idle" >&2
done

idle_table=$(python3 - "$work/idle" "$IDLE_SESSIONS" <<'PY'
import sys
sessions = int(sys.argv[2])
print("| server | sessions opened | open errors | RSS idle server | RSS 5 s after opening | per session at 5 s | RSS after 35 s idle | per session at 35 s | delivered | missed | delivery p50 | p99 | max |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for line in open(sys.argv[1]):
    name, base, rest = line.split(maxsplit=2)
    f = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
    rss, early = int(f["rss_kib"]), int(f["rss_open_kib"])
    per = (rss - int(base)) / sessions
    per_early = (early - int(base)) / sessions
    errors = f" ({f['open_error_kinds'].strip('[]')})" if f["open_error_kinds"].strip("[]") else ""
    missed = f" ({f['missed_kinds'].strip('[]')})" if f["missed_kinds"].strip("[]") else ""
    print(f"| {name} | {int(f['opened']):,} | {int(f['open_errors']):,}{errors} | {int(base)/1024:,.0f} MiB | {early/1024:,.0f} MiB "
          f"| {per_early:,.1f} KiB | {rss/1024:,.0f} MiB | {per:,.1f} KiB | {int(f['delivered']):,} | {int(f['missed']):,}{missed} | {f['p50_ms']} ms | {f['p99_ms']} ms | {f['max_ms']} ms |")
PY
)
idle_header="$IDLE_SESSIONS chat sessions open at once and idle, then one message posted and fanned out to all of them: $(machine_line bench/websocket.sh).
Client: \`bench/loadgen\`'s \`fanout\`, 256 handshakes in flight while opening; it reads each session's kept messages, reads the server's VmRSS 5 s after all are open and again after 35 s (cyclone pings every session every 10 s meanwhile; Tornado's demo sends no pings), then posts one message and times its arrival at every session from just before the POST. The idle server's RSS is read after a warm-up of 300 sessions opened, sent a post and closed; each per-session figure divides the growth over it by $IDLE_SESSIONS. Where cyclone's first figure is the higher, the difference is memory the open storm freed that the allocator had not yet handed back, reclaimed once the workers allocate again (at the first round of pings). cyclone serves \`examples/chat\` (SQLite store, in-process pub/sub, logging at \`warn\`): its \`/chatsocket\` sessions hibernate and forward the room's topic, so the host writes the post to every socket without running a guest; opening runs \`connect\` and \`open\` in an instance (the route capped at 64 at once). Tornado $(python3 -c 'import tornado; print(tornado.version)'): its websocket chat demo (\`bench/tornado/chat.py\`), one process, a \`WebSocketHandler\` per session in a set that the post writes to."
write_section websocket-idle "Idle chat sessions and fan-out" "$idle_header" "$idle_table"
echo "$idle_table"
