#!/usr/bin/env bash
# Key-value stores under load, in one run:
#  1. `POST /count/NAME` (examples/counter: one atomic increment) on SQLite
#     and on Redis, next to `GET /hello` on the same host, against Tornado
#     doing the same increment (sqlite3 in a thread pool; redis-py asyncio);
#  2. `/hello` latency while another route hammers the store, for cyclone
#     (store calls run off the event loop) and Tornado;
#  3. chat fan-out across two hosts on one Redis: 2 × FANOUT_SESSIONS
#     websocket clients, one message posted, delivery p50/p99 to all.
# Writes the tables to bench/RESULTS.md (the "kv" and "kv-fanout" sections).
#
# Usage: bench/kv.sh   (env: ROUNDS=3 DURATION=10 CONNECTIONS=32 FANOUT_SESSIONS=2000)
# Needs wrk and redis-server (installed with apt-get when missing and run as
# root), python3 with Tornado and redis-py (installed with pip when missing).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
FANOUT_SESSIONS=${FANOUT_SESSIONS:-2000}

source "$(dirname "$0")/lib.sh"
need_apt wrk wrk
need_apt redis-server redis-server
python3 -c 'import tornado' 2>/dev/null || python3 -m pip install --quiet tornado
python3 -c 'import redis' 2>/dev/null || python3 -m pip install --quiet redis

cd "$root"
cargo build --quiet --release -p cyclone-host -p loadgen
cargo build --quiet --profile guest --target wasm32-wasip2 -p counter -p hello -p chat
guests="$root/target/wasm32-wasip2/guest"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
redis_url="redis://127.0.0.1:$redis_port"
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

# manifest BACKEND PORT: the counter at /count/... and hello at /hello, the
# store `default` on BACKEND (SQLite in a folder of its own for each start).
manifest() {
    cat <<EOF
[server]
data_dir = "$work/data-$2"

[apps.counter]
component = "$guests/counter.wasm"
routes = ["/count/..."]
key_value_stores = ["default"]

[apps.hello]
component = "$guests/hello.wasm"
routes = ["/hello"]
EOF
    if [ "$1" = redis ]; then
        printf '\n[key_value.default]\nbackend = "redis"\nurl = "%s"\n' "$redis_url"
    fi
}
printf 'wrk.method = "POST"\n' >"$work/post.lua"

# start NAME PORT: runs the server in the background, sets $server_pid.
start() {
    local port=$2
    case $1 in cyclone-*) manifest "${1#cyclone-}" "$port" >"$work/$1-$port.toml" ;; esac
    case $1 in
        cyclone-*) CYCLONE_LOG=warn exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/$1-$port.toml" ;;
        tornado-sqlite) exec python3 "$root/bench/tornado/server.py" "$port" --sqlite "$work/tornado-$RANDOM.sqlite" ;;
        tornado-redis) exec python3 "$root/bench/tornado/server.py" "$port" --redis "$redis_url" ;;
    esac >"$work/$1.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/hello"
}

# measure LABEL URL [post]: one wrk run; appends a result line.
measure() {
    local label=$1 url=$2 script=()
    [ "${3:-}" = post ] && script=(-s "$work/post.lua")
    wrk -t2 -c"$CONNECTIONS" -d"${WARMUP}s" "${script[@]}" "$url" >/dev/null
    local cpu_before redis_before cpu_after redis_after
    cpu_before=$(cpu_ticks "$server_pid")
    redis_before=$(cpu_ticks "$redis_pid")
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${script[@]}" "$url" >"$work/wrk.out"
    cpu_after=$(cpu_ticks "$server_pid")
    redis_after=$(cpu_ticks "$redis_pid")
    local requests rps p50 p99 errors
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out" | tr '\n' ' ' | tr -s ' ')
    local tick
    tick=$(getconf CLK_TCK)
    local cpu_us redis_us
    cpu_us=$(python3 -c "print(f'{($cpu_after - $cpu_before) * 1e6 / $tick / $requests:.1f}')")
    redis_us=$(python3 -c "print(f'{($redis_after - $redis_before) * 1e6 / $tick / $requests:.1f}')")
    echo "$label|$rps|$p50|$p99|$cpu_us|$redis_us|${errors:-none}" | tee -a "$work/results" >&2
}

for round in $(seq 1 "$ROUNDS"); do
    for name in cyclone-sqlite cyclone-redis tornado-sqlite tornado-redis; do
        port=$(free_port)
        start "$name" "$port"
        base="http://127.0.0.1:$port"
        redis-cli -p "$redis_port" flushall >/dev/null
        [ "$(curl -s -X POST "$base/count/check")" = 1 ] || { echo "bench: $name counted wrong" >&2; exit 1; }
        measure "$name POST /count" "$base/count/bench" post
        case $name in cyclone-*) measure "$name GET /hello" "$base/hello" ;; esac
        kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    done
done

# /hello while another client hammers POST /count on the same host (SQLite).
hammered() {
    local name=$1 port
    port=$(free_port)
    start "$name" "$port"
    local base="http://127.0.0.1:$port"
    wrk -t1 -c4 -d"${DURATION}s" --latency "$base/hello" >"$work/alone.out"
    wrk -t1 -c"$CONNECTIONS" -d"$((DURATION + 2))s" -s "$work/post.lua" "$base/count/hammer" >"$work/hammer.out" &
    local hammer=$!
    sleep 1
    wrk -t1 -c4 -d"${DURATION}s" --latency "$base/hello" >"$work/during.out"
    wait "$hammer"
    for run in alone during; do
        echo "$name|$run|$(awk '/^Requests\/sec/ {print $2}' "$work/$run.out")|$(awk '$1 == "50%" {print $2}' "$work/$run.out")|$(awk '$1 == "99%" {print $2}' "$work/$run.out")|$(awk '/^Requests\/sec/ {print $2}' "$work/hammer.out")"
    done | tee -a "$work/hammered" >&2
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
}
hammered cyclone-sqlite
hammered tornado-sqlite

table=$(python3 - "$work/results" "$work/hammered" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    label, rps, p50, p99, cpu, redis, err = line.rstrip("\n").split("|")
    rows.setdefault(label, []).append((float(rps), p50, p99, float(cpu), float(redis), err.strip()))
print("| server and route | req/s (median) | p50 | p99 | server CPU per request | redis-server CPU per request | all rounds (req/s) | errors |")
print("|---|---:|---:|---:|---:|---:|---|---|")
for label, runs in rows.items():
    runs = sorted(runs, key=lambda r: r[0])
    med = runs[len(runs) // 2]
    redis = f"{med[4]:.1f} µs" if "redis" in label else "-"
    print(f"| {label} | {med[0]:,.0f} | {med[1]} | {med[2]} | {med[3]:.1f} µs | {redis} | {', '.join(f'{r[0]:,.0f}' for r in rows[label])} | {med[5]} |")
print()
print("`GET /hello` (wrk -t1 -c4) alone, and while another wrk hammers `POST /count` on the same host's SQLite store:")
print()
print("| server | /hello | req/s | p50 | p99 | hammer's POST /count req/s |")
print("|---|---|---:|---:|---:|---:|")
for line in open(sys.argv[2]):
    name, run, rps, p50, p99, hammer = line.rstrip("\n").split("|")
    hammer = f"{float(hammer):,.0f}" if run == "during" else "-"
    print(f"| {name} | {run} | {float(rps):,.0f} | {p50} | {p99} | {hammer} |")
PY
)
header="\`POST /count/NAME\` (one atomic increment) and \`GET /hello\` on one host: $(machine_line bench/kv.sh).
wrk -t2 -c$CONNECTIONS, ${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS rounds alternating the servers, all requests on one counter; client, servers and redis-server share the machine's cores. cyclone serves \`examples/counter\` and \`examples/hello\` from one manifest, the store \`default\` on SQLite (embedded, WAL, synchronous=NORMAL, calls batched per transaction on the store's thread) or on Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) (HINCRBY, no persistence). Tornado $(python3 -c 'import tornado; print(tornado.version)'), one process: sqlite3 (WAL, synchronous=NORMAL) in a one-thread pool, or redis-py $(python3 -c 'import redis; print(redis.__version__)') asyncio (HINCRBY). Server CPU per request = the server process's user + system time / requests answered; Redis's own CPU is counted apart."
write_section kv "Key-value stores" "$header" "$table"
echo "$table"

# Chat fan-out across two hosts on one Redis.
redis-cli -p "$redis_port" flushall >/dev/null
hosts=()
for _ in 1 2; do
    port=$(free_port)
    CYCLONE_LOG=warn CYCLONE_REDIS_URL="$redis_url" "$root/target/release/cyclone" serve \
        --listen "127.0.0.1:$port" examples/chat/cyclone-redis.toml >"$work/chat-$port.log" 2>&1 &
    wait_url "http://127.0.0.1:$port/"
    hosts+=("$port")
done
fanout=$("$root/target/release/fanout" --sessions "$FANOUT_SESSIONS" \
    --ws "ws://127.0.0.1:${hosts[0]}/chatsocket" --ws "ws://127.0.0.1:${hosts[1]}/chatsocket" \
    --post "http://127.0.0.1:${hosts[1]}/a/message/new")
echo "$fanout" >&2
fanout_table=$(python3 - "$fanout" <<'PY'
import sys
f = dict(kv.split("=", 1) for kv in sys.argv[1].split())
print("| sessions | opened | delivered | missed | post answered | delivery p50 | p99 | max |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {int(f['sessions']):,} | {int(f['opened']):,} | {int(f['delivered']):,} | {f['missed']} {f['missed_kinds']} | {f['post_status']} in {f['post_ms']} ms | {f['p50_ms']} ms | {f['p99_ms']} ms | {f['max_ms']} ms |")
PY
)
fanout_header="One chat message fanned out across two hosts: $(machine_line bench/kv.sh).
Two \`cyclone\` hosts serve \`examples/chat/cyclone-redis.toml\` on one redis-server; \`bench/loadgen\`'s \`fanout\` opens $FANOUT_SESSIONS websockets to each, then posts one message to the second host and times its arrival at every session, from just before the POST is sent. Each host forwards it from its one Redis subscription to its sessions' instances, which write it to their sockets. Client, hosts and Redis share the machine's cores."
write_section kv-fanout "Chat fan-out across hosts" "$fanout_header" "$fanout_table"
echo "$fanout_table"
